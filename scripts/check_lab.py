"""Check the live course in a real JupyterLab: run notebooks through the UI and use their widgets.

Usage:  make test-lab     (or  .venv/bin/python scripts/check_lab.py [--install] [--out DIR] [NOTEBOOK ...])

Steps: (optionally) apt-get install Chromium; copy notebooks/ to a temporary folder (the
repository's notebooks are never touched); start JupyterLab as ``make lab`` does (the
.venv's ``jupyter lab``, ``--notebook-dir=notebooks``, ``--ServerApp.ip=127.0.0.1``, token
authentication on, the token read from the URL the server prints), on a free port, with
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; drive headless system Chromium with Playwright
(see scripts/check_site.py). For each notebook (default: 06 and 08) it checks that

* Run > Run All Cells runs every code cell and no output is an error (a traceback);
* the widgets render as controls (``.jupyter-widgets``), not as their text fallback
  (``VBox(children=...``) nor "Error displaying widget";
* using the widget (06: one step of the γ slider; 08: a new seed, then "Generate") changes
  the figure: the ``src`` of the last image in the widget cell's output, twice. The time from
  the key press / click to the new image is printed (first and second use);
* with the widget manager's ``saveState`` on, the notebook saved with Ctrl+S holds the widget
  state, and reopened in a fresh page with a new kernel it shows controls (drawn from the saved
  state, marked disconnected until the cell runs again), not "Error displaying widget: model
  not found".

``saveState`` is a JupyterLab default written into the environment
(``.venv/share/jupyter/lab/settings/overrides.d/conditional-diffusion.json``, by ``make lab``
and by this check; ``--write-settings`` writes it and exits); a learner's own setting still
wins. The server also gets a temporary user-settings folder (no news pop-up over the
notebook) and workspace folder, so a learner's open tabs are not restored into the check.
The times printed are from the key press / click to the new image, with the span the kernel
was busy (REST API) and the widget's own status line when it has one ("done in 1.2 s").

Screenshots and the server log (token redacted) go to build/lab/: after Run All, after the
interaction, after reopening. The server and its kernels are stopped at the end, also on
failure or SIGTERM. It prints a table and exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tutorial_lib.widgets import DEFAULT_NOTE

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "lab"
DEFAULT_NOTEBOOKS = ["06_classifier_free_guidance.ipynb", "08_full_sampler.ipynb"]
# The widget manager saves widget state with the notebook: a notebook reopened with a new
# kernel then shows its controls instead of "Error displaying widget: model not found".
LAB_OVERRIDES = {"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True}}
OVERRIDES_NAME = "conditional-diffusion.json"
# Only for the check's own (temporary) user settings: no news pop-up over the notebook.
CHECK_USER_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                       {"fetchNews": "false", "checkForUpdates": False}}
URL_RE = re.compile(r"http://127\.0\.0\.1:(\d+)/lab\?token=([0-9a-zA-Z]+)")
# What shows when a widget does not render: ipywidgets' text reprs, the manager's error, and the
# plain-text note tutorial_lib.widgets stores in place of the controls.
FALLBACK_TEXTS = ["VBox(children=", "HBox(children=", "interactive(children=", "Error displaying widget",
                  DEFAULT_NOTE.strip("[]").split(":")[0]]
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"


@dataclass
class Interaction:
    """How to use one notebook's widget: move a slider (by its label) or press a button."""

    kind: str  # "slider" or "button"
    label: str  # the slider's description or the button's text
    seed_label: str | None = None  # a number box changed before each press (so the figure differs)


INTERACTIONS = {
    "06": Interaction("slider", "γ"),
    "08": Interaction("button", "Generate", seed_label="seed"),
}


@dataclass
class Result:
    notebook: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), detail))
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


# --------------------------------------------------------------------------- settings, arguments


def lab_settings_dir(prefix: Path | None = None) -> Path:
    """JupyterLab's application settings folder of the environment (``<prefix>/share/jupyter/lab/settings``)."""
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def write_lab_settings(prefix: Path | None = None) -> Path:
    """Write the course's JupyterLab overrides (widget saveState) into the environment; return the file."""
    path = lab_settings_dir(prefix) / "overrides.d" / OVERRIDES_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(LAB_OVERRIDES, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=DEFAULT_NOTEBOOKS,
                        help="notebook names or NN prefixes in notebooks/ (default: 06 and 08)")
    parser.add_argument("--install", action="store_true", help="apt-get install chromium if missing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="screenshots and server log (default build/lab)")
    # Run All of 06 took 75 s on 2 quiet cores and 470 s on 2 cores at load 10: room for both.
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds for one notebook's Run All (default 900)")
    parser.add_argument("--widget-timeout", type=float, default=60.0,
                        help="seconds for a widget to change its figure (default 60)")
    parser.add_argument("--source", type=Path, default=ROOT / "notebooks",
                        help="folder whose copy JupyterLab serves (default notebooks/)")
    parser.add_argument("--write-settings", action="store_true",
                        help="only write the JupyterLab settings into the environment (make lab does) and exit")
    args = parser.parse_args(argv)
    args.notebooks = [resolve_notebook(name, args.source) for name in args.notebooks]
    return args


def resolve_notebook(name: str, folder: Path = ROOT / "notebooks") -> str:
    """A notebook file name from a name, a path or its two-digit number."""
    name = Path(name).name
    if re.fullmatch(r"\d\d", name):
        matches = sorted(p.name for p in folder.glob(f"{name}_*.ipynb"))
        if len(matches) != 1:
            raise SystemExit(f"no single notebook numbered {name} in {folder}: {matches}")
        return matches[0]
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    if not (folder / name).exists():
        raise SystemExit(f"{folder / name} does not exist")
    return name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_server_url(line: str) -> tuple[int, str] | None:
    """(port, token) from the line where JupyterLab prints its URL, else None."""
    match = URL_RE.search(line)
    return (int(match.group(1)), match.group(2)) if match else None


def redact(line: str, token: str | None) -> str:
    return line.replace(token, "<token>") if token else line


# --------------------------------------------------------------------------- the server


class LabServer:
    """``jupyter lab`` as ``make lab`` starts it, on a copy of the notebooks; stopped by ``stop``."""

    def __init__(self, notebook_dir: Path, work: Path, log: Path):
        self.notebook_dir, self.log_path = notebook_dir, log
        self.port, self.token, self.lines = free_port(), None, []
        self._ready = threading.Event()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "JUPYTER_PREFER_ENV_PATH": "1",
               "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
               "JUPYTERLAB_SETTINGS_DIR": str(work / "user-settings")}
        write_user_settings(work / "user-settings")
        self.proc = subprocess.Popen(
            server_command(notebook_dir, self.port), cwd=notebook_dir.parent, env=env, start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.proc.stdout:
                found = parse_server_url(line)
                if found and self.token is None:
                    self.port, self.token = found
                    self._ready.set()
                self.lines.append(line)
                log.write(redact(line, self.token))
                log.flush()

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while not self._ready.wait(0.5):
            if self.proc.poll() is not None or time.time() > deadline:
                tail = redact("".join(self.lines[-20:]), self.token)
                raise RuntimeError(f"JupyterLab did not print its URL (exit {self.proc.poll()}):\n{tail}")
        while True:  # the URL is printed just before the server listens
            try:
                self.api("api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"JupyterLab printed its URL but does not answer (exit {self.proc.poll()})") from None
                time.sleep(0.3)

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path.lstrip('/')}", method=method)
        req.add_header("Authorization", f"token {self.token}")
        with urllib.request.urlopen(req, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        for session in self.api("api/sessions"):
            if session.get("path") == notebook and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def shutdown_sessions(self) -> None:
        for session in self.api("api/sessions"):
            self.api(f"api/sessions/{session['id']}", method="DELETE")

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)  # the server and its kernels (its own session)
                    self.proc.wait(wait)
                    break
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    continue


def widget_save_state(server: LabServer):
    """The widget manager's saveState as JupyterLab serves it (user setting, else the overridden default)."""
    reply = server.api("lab/api/settings/@jupyter-widgets/jupyterlab-manager:plugin")
    user = reply.get("settings") or {}
    return user.get("saveState", reply["schema"]["properties"]["saveState"].get("default"))


def server_command(notebook_dir: Path, port: int) -> list[str]:
    jupyter = Path(sys.executable).with_name("jupyter")
    root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [str(jupyter), "lab", "--no-browser", f"--notebook-dir={notebook_dir}", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}", "--ServerApp.port_retries=0", *root]


def write_user_settings(folder: Path) -> None:
    for name, value in CHECK_USER_SETTINGS.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def copy_notebooks(work: Path, source: Path = ROOT / "notebooks") -> Path:
    target = work / "notebooks"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return target


# --------------------------------------------------------------------------- the page

CELLS_JS = r"""
(args) => Array.from(document.querySelectorAll(args.notebook + ' .jp-Cell')).map((cell, i) => {
  const outputs = cell.querySelector('.jp-Cell-outputArea');
  const text = outputs ? outputs.textContent : '';
  const errors = Array.from(cell.querySelectorAll(
      '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
      .map(o => o.textContent).filter(t => /Traceback|^\s*\w*(Error|Exception): /m.test(t))
      .map(t => t.trim().split('\n').filter(l => l.trim()).slice(-1)[0].slice(0, 160));
  const prompt = cell.querySelector('.jp-InputArea-prompt');
  return {
    index: i, code: cell.classList.contains('jp-CodeCell'),
    prompt: prompt ? prompt.textContent.trim() : '',
    errors: errors,
    widgets: cell.querySelectorAll('.jupyter-widgets').length,
    controls: cell.querySelectorAll('.widget-slider, .widget-button, .jupyter-button, .widget-text, .widget-dropdown').length,
    fallback: args.fallback.filter(f => text.includes(f)),
    images: outputs ? outputs.querySelectorAll('img').length : 0,
    disconnected: cell.querySelectorAll('.jupyter-widgets-disconnected').length,
  };
})
"""

IMAGE_KEY_JS = r"""
(args) => {
  const cells = document.querySelectorAll(args.notebook + ' .jp-Cell');
  const imgs = cells[args.index].querySelectorAll('.jp-Cell-outputArea img');
  if (!imgs.length) return null;
  const img = imgs[imgs.length - 1];
  if (!(img.complete && img.naturalWidth > 0)) return 'loading';
  const s = img.getAttribute('src') || '';
  let h = 0;
  for (let k = 0; k < s.length; k++) h = (h * 31 + s.charCodeAt(k)) | 0;
  return s.length + ':' + h;
}
"""


SCROLL_JS = r"""
(args) => document.querySelectorAll(args.notebook + ' .jp-Cell')[args.index].scrollIntoView({block: 'start'})
"""


def cells(page) -> list[dict]:
    return page.evaluate(CELLS_JS, {"notebook": NOTEBOOK, "fallback": FALLBACK_TEXTS})


def image_key(page, index: int) -> str | None:
    return page.evaluate(IMAGE_KEY_JS, {"notebook": NOTEBOOK, "index": index})


def open_notebook(page, server: LabServer, name: str, timeout: float = 120.0) -> None:
    """Open a notebook in a fresh workspace and wait for its kernel to be idle."""
    page.goto(server.url(f"lab/tree/{name}?reset"), wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=timeout * 1000)
    wait_idle(server, name, timeout, "the kernel to start")


def wait_idle(server: LabServer, name: str, timeout: float, what: str, page=None) -> None:
    """Wait until the notebook's kernel is idle (and, with ``page``, no cell shows [*])."""
    deadline, calm = time.time() + timeout, 0
    while time.time() < deadline:
        busy = page is not None and any("*" in c["prompt"] for c in cells(page) if c["code"])
        calm = calm + 1 if server.kernel_state(name) == "idle" and not busy else 0
        if calm >= 3:
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def run_all(page, server: LabServer, name: str, timeout: float) -> float:
    start = time.perf_counter()
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))
    page.locator(".lm-Menu-item", has=label).click()
    page.wait_for_timeout(1000)
    wait_idle(server, name, timeout, "Run All Cells to finish", page=page)
    return time.perf_counter() - start


def widget_cell(page, report: list[dict], spec: Interaction | None) -> int | None:
    """Index of the cell with the notebook's widget: the one holding the control to use."""
    for c in report:
        if not c["widgets"]:
            continue
        if spec is None or control(page, c["index"], spec).count():
            return c["index"]
    return None


def cell_locator(page, index: int):
    return page.locator(f"{NOTEBOOK} .jp-Cell").nth(index)


def control(page, index: int, spec: Interaction):
    cell = cell_locator(page, index)
    if spec.kind == "slider":
        label = page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(spec.label)}\s*$"))
        return cell.locator(".widget-slider", has=label).locator(".noUi-handle").first
    return cell.locator("button", has_text=spec.label).first


def set_seed(page, index: int, spec: Interaction, value: int) -> None:
    label = page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(spec.seed_label)}\s*$"))
    box = cell_locator(page, index).locator(".widget-inline-hbox", has=label).locator("input").first
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(300)


def scroll_to(page, index: int) -> None:
    """Bring a cell into view and let the page settle (cells off screen are laid out lazily)."""
    for _ in range(4):
        page.evaluate(SCROLL_JS, {"notebook": NOTEBOOK, "index": index})
        page.wait_for_timeout(400)
    page.evaluate("() => new Promise(done => requestIdleCallback(done, {timeout: 5000}))")


def use_widget(page, server: LabServer, name: str, index: int, spec: Interaction, use: int,
               timeout: float) -> dict:
    """Use the widget once; time from the key press / click to a new figure, and the kernel's busy spell."""
    if spec.seed_label:
        set_seed(page, index, spec, use)
    target = control(page, index, spec)
    scroll_to(page, index)
    before = image_key(page, index)
    start = time.perf_counter()
    if spec.kind == "slider":
        target.focus()
        target.press("ArrowRight")
    else:
        target.click()
    try:
        timing = wait_new_image(page, server, name, index, before, start, timeout)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; status: {widget_status(page, index) or '-'}") from None
    page.wait_for_timeout(300)
    timing["status"] = widget_status(page, index)
    return timing


def widget_status(page, index: int) -> str:
    """The widget's status line ("done in 1.2 s", "error: ..."), if it has one."""
    texts = cell_locator(page, index).locator(".widget-html, .widget-label").all_text_contents()
    return next((t.strip() for t in texts if "done in" in t or "error" in t.lower()), "")


def wait_new_image(page, server: LabServer, name: str, index: int, before, start: float, timeout: float) -> dict:
    """Poll until the cell's last image differs from ``before``; note when the kernel was busy."""
    timing, next_poll = {"busy": None, "idle": None}, 0.0
    while (now := time.perf_counter()) - start < timeout:
        key = image_key(page, index)
        if key not in (None, "loading", before):
            timing["seconds"] = now - start
            return note_idle(server, name, start, timing)
        if now >= next_poll:  # the REST API is slower to ask than the page
            state, next_poll = server.kernel_state(name), now + 0.25
            if state == "busy" and timing["busy"] is None:
                timing["busy"] = now - start
            elif state == "idle" and timing["busy"] is not None and timing["idle"] is None:
                timing["idle"] = now - start
        time.sleep(0.05)
    raise TimeoutError(f"the figure did not change within {timeout:.0f} s")


def note_idle(server: LabServer, name: str, start: float, timing: dict, wait: float = 15.0) -> dict:
    """After the new figure: when did the kernel go idle (the end of the callback)?"""
    while timing["idle"] is None and time.perf_counter() - start < timing["seconds"] + wait:
        if server.kernel_state(name) == "idle":
            timing["idle"] = time.perf_counter() - start
        time.sleep(0.1)
    return timing


def screenshot(page, out: Path, name: str, stage: str, index: int | None = None) -> None:
    path = out / f"{Path(name).stem}-{stage}.png"
    try:
        if index is not None:
            scroll_to(page, index)
        page.screenshot(path=str(path))
    except Exception as exc:  # a screenshot never hides the check's own result
        print(f"  (no screenshot {path.name}: {type(exc).__name__})", flush=True)


# --------------------------------------------------------------------------- one notebook


def check_cells(result: Result, report: list[dict]) -> None:
    code = [c for c in report if c["code"]]
    unrun = [c["index"] for c in code if not re.search(r"\[\d+\]", c["prompt"])]
    errors = [f"cell {c['index']}: {e}" for c in report for e in c["errors"]]
    result.add("every code cell ran", not unrun and code,
               f"{len(code) - len(unrun)}/{len(code)} code cells" + (f"; not run: {unrun[:8]}" if unrun else ""))
    result.add("no error output", not errors, "; ".join(errors[:3]) or "no traceback")


def check_widgets(result: Result, report: list[dict], index: int | None, when: str) -> None:
    fallback = [f"cell {c['index']}: {', '.join(c['fallback'])}" for c in report if c["fallback"]]
    widget_cells = [c for c in report if c["widgets"]]
    detail = f"{len(widget_cells)} widget cell(s), controls in cell {index}" if index is not None else "no widget cell found"
    if index is not None and report[index]["disconnected"]:
        detail += f" ({report[index]['disconnected']} shown disconnected: inert until the cell runs again)"
    result.add(f"widgets render as controls ({when})", index is not None and report[index]["controls"] and not fallback,
               "; ".join(fallback) or detail)


def check_interaction(result: Result, page, server: LabServer, name: str, index: int, spec: Interaction,
                      timeout: float) -> list[float]:
    latencies = []
    for use, label in ((1, "first"), (2, "second")):
        check = f"{spec.label} changes the figure ({label} use)"
        try:
            timing = use_widget(page, server, name, index, spec, use, timeout)
        except Exception as exc:
            result.add(check, False, f"{type(exc).__name__}: {str(exc)[:160]}")
            break
        latencies.append(timing["seconds"])
        result.add(check, "error" not in timing["status"].lower(), describe_timing(timing))
    return latencies


def describe_timing(timing: dict) -> str:
    text = f"{timing['seconds']:.2f} s to the new image"
    if timing.get("busy") is not None:
        idle = f"{timing['idle']:.1f}" if timing.get("idle") is not None else "?"
        text += f" (kernel busy {timing['busy']:.1f}-{idle} s)"
    return text + (f"; status: {timing['status']}" if timing.get("status") else "")


def save_and_check_state(result: Result, page, notebook_path: Path) -> None:
    page.locator(f"{NOTEBOOK}").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.time() + 30
    while page.locator(".lm-TabBar-tab.jp-mod-dirty").count() and time.time() < deadline:
        time.sleep(0.3)
    saved = json.loads(notebook_path.read_text())
    state = saved.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    models = len(state.get("state", {}))
    result.add("saved notebook holds widget state", models > 0, f"{models} widget model(s) in metadata.widgets")


def check_reopen(result: Result, browser, server: LabServer, name: str, index: int | None, out: Path) -> None:
    """A fresh page and a new kernel: the saved widget state must show controls, not 'model not found'."""
    server.shutdown_sessions()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    try:
        page = context.new_page()
        open_notebook(page, server, name)
        deadline, report = time.time() + 30, []
        while time.time() < deadline:
            report = cells(page)
            if index is not None and index < len(report) and (report[index]["controls"] or report[index]["fallback"]):
                break
            time.sleep(0.5)
        page.wait_for_timeout(1000)
        report = cells(page)
        screenshot(page, out, name, "reopened", index)
        check_widgets(result, report, index if index is not None and index < len(report) else None,
                      "reopened, new kernel")
    finally:
        context.close()
        server.shutdown_sessions()  # the reopened notebook's kernel


def check_notebook(browser, server: LabServer, name: str, args) -> tuple[Result, list[float]]:
    result, latencies = Result(name), []
    spec = INTERACTIONS.get(name[:2])
    print(f"{name}:", flush=True)
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.on("pageerror", lambda error: print(f"  page error: {str(error)[:200]}", flush=True))
    index = None
    try:
        open_notebook(page, server, name)
        seconds = run_all(page, server, name, args.timeout)
        report = cells(page)
        result.add("Run All Cells", True, f"{seconds:.1f} s")
        check_cells(result, report)
        index = widget_cell(page, report, spec)
        screenshot(page, args.out, name, "run-all", index)
        check_widgets(result, report, index, "after Run All")
        if spec is not None and index is not None:
            latencies = check_interaction(result, page, server, name, index, spec, args.widget_timeout)
            screenshot(page, args.out, name, "interaction", index)
        save_and_check_state(result, page, server.notebook_dir / name)
    except Exception as exc:
        result.add("notebook check", False, f"{type(exc).__name__}: {str(exc)[:300]}")
        screenshot(page, args.out, name, "failure", index)
    finally:
        context.close()
    if index is not None:
        try:
            check_reopen(result, browser, server, name, index, args.out)
        except Exception as exc:
            result.add("reopen with a new kernel", False, f"{type(exc).__name__}: {str(exc)[:300]}")
    server.shutdown_sessions()  # no kernel left running into the next notebook
    return result, latencies


# --------------------------------------------------------------------------- report, main


def format_table(results: list[Result]) -> str:
    width = max([len("check")] + [len(name) for r in results for name, _, _ in r.checks])
    lines = [f"{'notebook':<30} {'check':<{width}}  result  detail"]
    for r in results:
        for name, ok, detail in r.checks:
            lines.append(f"{r.notebook[:30]:<30} {name:<{width}}  {'ok' if ok else 'FAIL':<6}  {detail}")
    failed = sum(not ok for r in results for _, ok, _ in r.checks)
    total = sum(len(r.checks) for r in results)
    lines.append(f"{total - failed}/{total} checks pass" + (f"; {failed} FAILED" if failed else ""))
    return "\n".join(lines)


def format_latencies(latencies: dict[str, list[float]]) -> str:
    lines = ["widget latency (interaction -> new figure): notebook, first use, second use"]
    for name, values in latencies.items():
        cols = [f"{v:6.2f} s" for v in values] + ["     -  "] * (2 - len(values))
        lines.append(f"  {name:<34} {cols[0]}  {cols[1]}")
    return "\n".join(lines)


def check_server(server: LabServer, settings: Path) -> Result:
    """Token authentication is on, and JupyterLab serves the widget manager's saveState as on."""
    result = Result("(JupyterLab server)")
    token, server.token = server.token, "not-the-token"
    try:
        server.api("api/status")
        refused = "answered with a wrong token"
    except urllib.error.HTTPError as exc:
        refused = "" if exc.code == 403 else f"HTTP {exc.code} with a wrong token"
    finally:
        server.token = token
    result.add("token authentication on", not refused and "started" in server.api("api/status"),
               refused or "403 with a wrong token, 200 with the printed one")
    save_state = widget_save_state(server)
    result.add("widget saveState on", save_state is True, f"saveState={save_state} (the course default is in {settings})")
    return result


def run(args, binary: str) -> tuple[list[Result], dict[str, list[float]]]:
    from check_site import launch
    from playwright.sync_api import sync_playwright

    settings = write_lab_settings()
    work = Path(tempfile.mkdtemp(prefix="course-lab-"))
    results, latencies = [], {}
    server = LabServer(copy_notebooks(work, args.source), work, args.out / "server.log")
    try:
        server.wait()
        print(f"JupyterLab on port {server.port}, notebooks copied to {server.notebook_dir}", flush=True)
        results.append(check_server(server, settings))
        with sync_playwright() as playwright:
            browser = launch(playwright, binary)
            print(f"Browser: Chromium {browser.version} (Playwright)", flush=True)
            for name in args.notebooks:
                result, latencies[name] = check_notebook(browser, server, name, args)
                results.append(result)
            browser.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results, latencies


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.write_settings:
        print(f"JupyterLab settings: {write_lab_settings()}")
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import check_site

    if args.install:
        check_site.install_missing(mathjax=False)
    binary = check_site.find_chromium()
    problem = "Chromium not found: run with --install (Debian/Ubuntu, root) or set CHROMIUM" if binary is None \
        else check_site.playwright_missing()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on a kill too
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results, latencies = run(args, binary)
    print(f"\nLab check took {time.perf_counter() - start:.0f} s; screenshots in {args.out}")
    print(format_table(results))
    print(format_latencies(latencies))
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
