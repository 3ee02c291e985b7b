"""Check the course site in a real browser: headless Chromium loads every page from a local server.

Usage:  make test-site     (or  .venv/bin/python scripts/check_site.py [--install] [--no-build] [--out DIR])

Steps: (optionally) install Chromium, build the site (scripts/build_site.py), serve
it on 127.0.0.1 from a thread, start headless Chromium with a fresh profile and,
page by page (index.html, then every chapter), check that

* the page loads (HTTP 200) and has a title and a first heading;
* chapter pages show at least one figure: every ``<img>`` decoded (naturalWidth > 0),
  as many as the notebook's image outputs; 00 (the welcome page) may have none;
* formulas were typeset by MathJax when the page loads MathJax and has any (no MathJax
  error, and not every ``$...$`` left as text);
* there is no console error, uncaught exception, failed request or HTTP error,
  and no request leaves the local server (the site must work offline: such a request
  is reported and aborted, never sent);
* the contents / previous / next links point at pages that exist.

It prints one row per page and exits non-zero if any page fails.

The browser is driven with Playwright (the ``playwright`` Python package, in the
``dev`` extra; its own browser download is not used) on the system's Chromium,
started with ``--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
--disable-background-networking --disable-component-update --disable-sync`` and a
fresh profile. ``$CHROMIUM`` names another binary.

``--install`` runs ``apt-get install -y --no-install-recommends`` for whichever of
``chromium`` and ``libjs-mathjax`` is missing (Debian/Ubuntu; through sudo unless
root). ``libjs-mathjax`` gives the site a local MathJax, so formulas render
offline; without it the checked site is built with ``--mathjax none`` (a CDN
MathJax could only fail offline) and the formulas are not checked.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_site  # noqa: E402

CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
# Playwright adds --headless and its own fresh --user-data-dir.
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1280, "height": 900}
LOCAL_SCHEMES = ("data:", "blob:", "about:")

PAGE_REPORT_JS = r"""
() => {
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
    mathjax: !!document.querySelector('script[src*="MathJax.js"], script[src*="mathjax"]'),
    math: math, mathErrors: mathErrors, rawMath: rawMath,
    links: Array.from(document.querySelectorAll('nav.course-nav a, table a')).map(a => a.getAttribute('href')),
  };
}
"""

MATHJAX_IDLE_JS = r"""
() => {
  if (!window.MathJax) return true;
  if (!MathJax.Hub || !MathJax.Hub.queue) return false;
  return MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0;
}
"""


# --------------------------------------------------------------------------- set-up


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in CHROMIUM_NAMES:
        if shutil.which(name):
            return shutil.which(name)
    return None


def playwright_missing() -> str | None:
    """Why Playwright cannot be used (None when it can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (make venv installs the dev extra)"
    return None


def apt_install(packages: list[str]) -> bool:
    """apt-get install packages (Debian/Ubuntu; through sudo unless root). True if it worked."""
    if not packages:
        return True
    if shutil.which("apt-get") is None:
        print(f"apt-get is not available to install {', '.join(packages)}", file=sys.stderr)
        return False
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"Installing {' '.join(packages)} (apt-get install --no-install-recommends) ...", flush=True)
    start = time.perf_counter()
    try:
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                       check=True, env=env)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"Could not install {', '.join(packages)}: {exc}", file=sys.stderr)
        return False
    print(f"Installed in {time.perf_counter() - start:.0f} s", flush=True)
    return True


def install_missing(mathjax: bool = True) -> None:
    """Install what is missing of Chromium and (if ``mathjax``) a local MathJax."""
    wanted = [("chromium", find_chromium())]
    if mathjax:
        wanted.append(("libjs-mathjax", build_site.find_mathjax()))
    apt_install([pkg for pkg, present in wanted if not present])


def launch(playwright, binary: str):
    """Headless system Chromium through Playwright, with the course's flags and a fresh profile."""
    return playwright.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_FLAGS)


# --------------------------------------------------------------------------- server


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the report readable
        pass


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# --------------------------------------------------------------------------- one page


class PageWatch:
    """Collects, for one page load, what a console would show and which requests failed."""

    def __init__(self, page, origin: str):
        self.origin, self.problems, self.warnings = origin, [], 0
        self.external: set[str] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.add(f"uncaught exception: {str(error)[:200]}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.route(lambda url: not url.startswith((origin, *LOCAL_SCHEMES)), self._external)

    def add(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def reset(self) -> None:
        self.problems, self.warnings = [], 0

    def _console(self, message) -> None:
        if message.type in ("error", "assert"):
            where = message.location.get("url", "") if message.location else ""
            self.add(f"console.{message.type}: {message.text[:200]} {where}".rstrip())
        elif message.type == "warning":
            self.warnings += 1

    def _external(self, route) -> None:
        self.external.add(route.request.url)
        self.add(f"external request: {route.request.url[:200]}")
        route.abort()

    def _failed(self, request) -> None:
        if request.url not in self.external:
            self.add(f"failed to load {request.url[:200]}: {request.failure}")

    def _response(self, response) -> None:
        if response.status >= 400:
            self.add(f"HTTP {response.status} for {response.url[:200]}")


def load(page, watch: PageWatch, url: str, timeout: float) -> dict:
    """Navigate, wait for load and MathJax, return the page report (with the HTTP status)."""
    watch.reset()
    response = page.goto(url, wait_until="load", timeout=timeout * 1000)
    try:
        page.wait_for_function(MATHJAX_IDLE_JS, timeout=timeout * 1000, polling=200)
    except Exception:
        watch.add(f"MathJax still busy after {timeout:.0f} s")
    page.wait_for_timeout(500)  # late requests (fonts) and their errors
    report = page.evaluate(PAGE_REPORT_JS)
    report["status"] = response.status if response else None
    return report


def page_problems(report: dict, page: dict, chapters: list[dict], out: Path) -> list[str]:
    """What is wrong with one page, from its report (the console's problems are added by the caller)."""
    problems = []
    if report["status"] != 200:
        problems.append(f"HTTP status {report['status']}")
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
    if report["mathjax"] and report["rawMath"] and not report["math"]:
        problems.append("MathJax is loaded but typeset no formula")
    for href in report["links"]:
        if href and not href.startswith(("http:", "https:", "#", "mailto:")) and not (out / href.split("#")[0]).exists():
            problems.append(f"broken link {href}")
    if page["number"] is None:
        missing = [c["href"] for c in chapters if c["href"] not in report["links"]]
        if missing:
            problems.append(f"contents lacks {', '.join(missing)}")
    return problems


# --------------------------------------------------------------------------- the check


def check(out: Path, chapters: list[dict], binary: str, timeout: float = 60.0,
          screenshots: Path | None = None) -> list[dict]:
    from playwright.sync_api import sync_playwright

    server, origin = serve(out)
    pages = [{"href": "index.html", "number": None, "figures": 0, "title": "Contents"}, *chapters]
    rows = []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, binary)
            print(f"Browser: Chromium {browser.version} (Playwright); site served at {origin}", flush=True)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            watch = PageWatch(page, origin)
            for spec in pages:
                rows.append(_check_page(page, watch, spec, chapters, out, origin, timeout, screenshots))
            browser.close()
    finally:
        server.shutdown()
    return rows


def _check_page(page, watch, spec, chapters, out, origin, timeout, screenshots) -> dict:
    start = time.perf_counter()
    report = load(page, watch, f"{origin}/{spec['href']}", timeout)
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshots / f"{Path(spec['href']).stem}.png"))
    problems = [*watch.problems, *page_problems(report, spec, chapters, out)]
    return {
        "page": spec["href"], "title": report["h1"] or report["title"],
        "figures": f"{report['imagesLoaded']}/{spec['figures'] if spec['number'] else report['images']}",
        "math": report["math"], "raw_math": report["rawMath"], "warnings": watch.warnings,
        "seconds": time.perf_counter() - start, "problems": problems,
    }


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=build_site.DEFAULT_OUT, help="site folder (default build/html)")
    parser.add_argument("--no-build", action="store_true", help="check the site already in --out")
    parser.add_argument("--install", action="store_true", help="apt-get install chromium (and libjs-mathjax) if missing")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per page (default 60)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="also save a PNG of the top of every page into this folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install:
        install_missing()
    binary = find_chromium()
    if binary is None:
        print("Chromium not found: run with --install (Debian/Ubuntu, root) or set CHROMIUM=/path/to/chrome",
              file=sys.stderr)
        return 2
    if playwright_missing():
        print(f"Cannot drive the browser: {playwright_missing()}", file=sys.stderr)
        return 2
    chapters = _chapters_from_site(args.out) if args.no_build else _build(args.out)
    start = time.perf_counter()
    rows = check(args.out, chapters, binary, args.timeout, args.screenshots)
    print(f"Browser check took {time.perf_counter() - start:.1f} s")
    print_table(rows)
    failed = [r["page"] for r in rows if r["problems"]]
    print(f"{len(rows) - len(failed)}/{len(rows)} pages pass" + (f"; failing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def mathjax_mode() -> str:
    """The build's MathJax mode for a checked site: offline, a CDN MathJax could only fail."""
    return "local" if build_site.find_mathjax() else "none"


def _build(out: Path) -> list[dict]:
    start = time.perf_counter()
    mathjax = mathjax_mode()  # without a local copy, formulas are left as LaTeX
    if mathjax == "none":
        print("No local MathJax (apt-get install libjs-mathjax): formulas are not typeset or checked.")
    chapters = build_site.build(out, mathjax)
    print(f"Site built in {time.perf_counter() - start:.1f} s", flush=True)
    return chapters


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
