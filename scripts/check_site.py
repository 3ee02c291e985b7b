"""Check the course site in a real browser: headless Chromium loads every page from a local server.

Usage:  make test-site     (or  .venv/bin/python scripts/check_site.py [--install] [--no-build] [--out DIR])

Steps: (optionally) install Chromium, build the site (scripts/build_site.py), serve
it on 127.0.0.1 from a thread, start headless Chromium with a fresh profile and,
page by page (index.html, then every chapter), check that

* the page loads (HTTP 200) and has a title and a first heading;
* chapter pages show at least one figure: every ``<img>`` decoded (naturalWidth > 0),
  as many as the notebook's image outputs; 00 (the welcome page) may have none;
* formulas were typeset by MathJax when the page has any;
* there is no console error, uncaught exception, failed request or HTTP error,
  and no request leaves the local server (the site must work offline);
* the contents / previous / next links point at pages that exist.

It prints one row per page and exits non-zero if any page fails.

The browser is driven through the Chrome DevTools Protocol over a WebSocket
(``websocket-client``, already installed with JupyterLab), not Selenium:
no extra Python dependency and no ``chromium-driver`` needed, and CDP reports
exactly what a console shows (console calls, exceptions, failed loads).
Chromium is started with ``--headless --no-sandbox --disable-gpu --disable-quic
--no-first-run --disable-background-networking --disable-component-update
--disable-sync`` and a fresh ``--user-data-dir``.

``--install`` runs ``apt-get install -y --no-install-recommends`` for whichever of
``chromium`` and ``libjs-mathjax`` is missing (Debian/Ubuntu; through sudo unless
root). ``libjs-mathjax`` gives the site a local MathJax, so formulas render
offline; without it the checked site is built with ``--mathjax none`` (a CDN
MathJax could only fail offline) and the formulas are not checked.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_site  # noqa: E402

CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
    "--window-size=1280,900",
]

PAGE_REPORT_JS = r"""
(() => {
  const imgs = Array.from(document.querySelectorAll('img'));
  const h1 = document.querySelector('h1');
  const math = document.querySelectorAll('.MathJax_CHTML, .MathJax, mjx-container').length;
  const mathErrors = document.querySelectorAll('.MathJax_Error, merror, mjx-merror').length;
  const rawMath = Array.from(document.querySelectorAll('.jp-RenderedMarkdown'))
      .some(el => /\$[^$\n]+\$/.test(el.innerText));
  return {
    title: document.title,
    h1: h1 ? h1.innerText.replace(/¶$/, '').trim() : '',
    images: imgs.length,
    imagesLoaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    math: math, mathErrors: mathErrors, rawMath: rawMath,
    links: Array.from(document.querySelectorAll('nav.course-nav a, table a')).map(a => a.getAttribute('href')),
  };
})()
"""

MATHJAX_IDLE_JS = r"""
(() => {
  if (!window.MathJax) return true;
  if (!MathJax.Hub || !MathJax.Hub.queue) return false;
  return MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0;
})()
"""


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if shutil.which(explicit) else None
    for name in CHROMIUM_NAMES:
        if shutil.which(name):
            return shutil.which(name)
    return None


def install_missing() -> None:
    """apt-get install what is missing of Chromium and a local MathJax (Debian/Ubuntu; sudo unless root)."""
    missing = [pkg for pkg, present in (("chromium", find_chromium()), ("libjs-mathjax", build_site.find_mathjax()))
               if not present]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        print(f"apt-get is not available to install {', '.join(missing)}", file=sys.stderr)
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"Installing {' '.join(missing)} (apt-get install --no-install-recommends) ...", flush=True)
    start = time.perf_counter()
    try:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"Could not install {', '.join(missing)}: {exc}", file=sys.stderr)
        return
    print(f"Installed in {time.perf_counter() - start:.0f} s", flush=True)


# --------------------------------------------------------------------------- server


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the report readable
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------- browser


class Browser:
    """Headless Chromium with a fresh profile, driven over the DevTools protocol."""

    def __init__(self, binary: str, timeout: float = 60.0):
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="course-chromium-")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + timeout
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited ({self.proc.returncode}): {self.proc.stderr.read().decode()[-2000:]}")
            if time.time() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port in time")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        self.timeout = timeout
        self._id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.version = self.call("Browser.getVersion").get("product", "?")

    def _recv(self) -> dict:
        message = json.loads(self.ws.recv())
        if "method" in message:
            self.events.append(message)
        return message

    def call(self, method: str, **params) -> dict:
        self._id += 1
        call_id = self._id
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = self._recv()
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_event(self, method: str) -> None:
        deadline = time.time() + self.timeout
        start = len(self.events)
        while time.time() < deadline:
            if any(e["method"] == method for e in self.events[start:]):
                return
            self._recv()
        raise TimeoutError(f"no {method} within {self.timeout:.0f} s")

    def load(self, url: str) -> tuple[dict, list[dict]]:
        """Navigate, wait for load and MathJax, return (page report, events during the load)."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_event("Page.loadEventFired")
        deadline = time.time() + self.timeout
        while not self.evaluate(MATHJAX_IDLE_JS):
            if time.time() > deadline:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # late requests (fonts) and their errors
        report = self.evaluate(PAGE_REPORT_JS)
        # drain events that arrived meanwhile
        self.ws.settimeout(0.2)
        try:
            while True:
                self._recv()
        except Exception:
            pass
        finally:
            self.ws.settimeout(self.timeout)
        return report, list(self.events)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def problems_from_events(events: list[dict], origin: str) -> tuple[list[str], int]:
    """Console errors, exceptions, failed or external requests, HTTP errors; and a warning count."""
    problems, warnings = [], 0
    requests: dict[str, str] = {}
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            if params.get("type") in ("error", "assert"):
                problems.append(f"console.{params['type']}: {text[:200]}")
            elif params.get("type") == "warning":
                warnings += 1
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            problems.append(f"uncaught exception: {text[:200]}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            if entry.get("level") == "error":
                problems.append(f"{entry.get('source', 'log')} error: {entry.get('text', '')[:200]} {entry.get('url', '')}")
            elif entry.get("level") == "warning":
                warnings += 1
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            requests[params.get("requestId")] = url
            if not url.startswith((origin, "data:", "blob:", "about:")):
                problems.append(f"external request: {url[:200]}")
        elif method == "Network.loadingFailed":
            problems.append(f"failed to load {requests.get(params.get('requestId'), '?')[:200]}: {params.get('errorText')}")
        elif method == "Network.responseReceived":
            response = params.get("response", {})
            if response.get("status", 200) >= 400:
                problems.append(f"HTTP {response.get('status')} for {response.get('url', '')[:200]}")
    return list(dict.fromkeys(problems)), warnings


# --------------------------------------------------------------------------- the check


def check(out: Path, chapters: list[dict], binary: str, timeout: float = 60.0,
          screenshots: Path | None = None) -> list[dict]:
    server, origin = serve(out)
    browser = Browser(binary, timeout=timeout)
    print(f"Browser: {browser.version}; site served at {origin}", flush=True)
    pages = [{"href": "index.html", "number": None, "figures": 0, "title": "Contents"}, *chapters]
    rows = []
    try:
        for page in pages:
            start = time.perf_counter()
            report, events = browser.load(f"{origin}/{page['href']}")
            problems, warnings = problems_from_events(events, origin)
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                png = browser.call("Page.captureScreenshot", format="png")["data"]
                (screenshots / f"{Path(page['href']).stem}.png").write_bytes(base64.b64decode(png))
            if not report["title"] or not report["h1"]:
                problems.append("no title or no heading")
            if report["imagesLoaded"] < report["images"]:
                problems.append(f"{report['images'] - report['imagesLoaded']} image(s) did not load")
            if page["number"] is not None:
                if report["imagesLoaded"] < page["figures"]:
                    problems.append(f"{report['imagesLoaded']} figure(s) shown, the notebook has {page['figures']}")
                if report["imagesLoaded"] == 0 and page["number"] != "00":
                    problems.append("no figure on the page (is the notebook executed with outputs stored?)")
            if report["mathErrors"]:
                problems.append(f"{report['mathErrors']} MathJax error(s)")
            for href in report["links"]:
                if href and not href.startswith(("http:", "https:", "#", "mailto:")) and not (out / href.split("#")[0]).exists():
                    problems.append(f"broken link {href}")
            if page["number"] is None:
                missing = [c["href"] for c in chapters if c["href"] not in report["links"]]
                if missing:
                    problems.append(f"contents lacks {', '.join(missing)}")
            rows.append({
                "page": page["href"], "title": report["h1"] or report["title"],
                "figures": f"{report['imagesLoaded']}/{page['figures'] if page['number'] else report['images']}",
                "math": report["math"], "raw_math": report["rawMath"], "warnings": warnings,
                "seconds": time.perf_counter() - start, "problems": problems,
            })
    finally:
        browser.close()
        server.shutdown()
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'page':<36} {'figures':>7} {'math':>5} {'warn':>4} {'s':>5}  result  title")
    for r in rows:
        status = "ok" if not r["problems"] else "FAIL"
        title = r["title"] if len(r["title"]) <= 60 else r["title"][:57] + "..."
        print(f"{r['page']:<36} {r['figures']:>7} {r['math']:>5} {r['warnings']:>4} {r['seconds']:>5.1f}  {status:<6}  {title}")
        for p in r["problems"]:
            print(f"    - {p}")
        if r["raw_math"] and not r["problems"]:
            print("    note: some $...$ is still shown as text (no MathJax, or a literal dollar sign)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=build_site.DEFAULT_OUT, help="site folder (default build/html)")
    parser.add_argument("--no-build", action="store_true", help="check the site already in --out")
    parser.add_argument("--install", action="store_true", help="apt-get install chromium (and libjs-mathjax) if missing")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per page (default 60)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="also save a PNG of the top of every page into this folder")
    args = parser.parse_args(argv)

    if args.install:
        install_missing()
    binary = find_chromium()
    if binary is None:
        print("Chromium not found: run with --install (Debian/Ubuntu, root) or set CHROMIUM=/path/to/chrome",
              file=sys.stderr)
        return 2
    if args.no_build:
        chapters = _chapters_from_site(args.out)
    else:
        start = time.perf_counter()
        # Offline, a CDN MathJax could only fail: without a local copy, formulas are left as LaTeX.
        mathjax = "local" if build_site.find_mathjax() else "none"
        if mathjax == "none":
            print("No local MathJax (apt-get install libjs-mathjax): formulas are not typeset or checked.")
        chapters = build_site.build(args.out, mathjax)
        print(f"Site built in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    rows = check(args.out, chapters, binary, args.timeout, args.screenshots)
    print(f"Browser check took {time.perf_counter() - start:.1f} s")
    print_table(rows)
    failed = [r["page"] for r in rows if r["problems"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} pages pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _chapters_from_site(out: Path) -> list[dict]:
    """Chapter list for --no-build: the pages present, figures expected from the notebooks."""
    import nbformat

    chapters = []
    for html_path in sorted(out.glob("[0-9][0-9]_*.html")):
        nb_path = ROOT / "notebooks" / html_path.with_suffix(".ipynb").name
        figures = build_site.image_outputs(nbformat.read(nb_path, as_version=4)) if nb_path.exists() else 0
        chapters.append({"href": html_path.name, "number": html_path.name[:2], "figures": figures})
    return chapters


if __name__ == "__main__":
    sys.exit(main())
