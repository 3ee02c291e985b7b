"""Course benchmark: wall time and peak memory of every notebook, plus the package's rows.

Usage:  make bench      (or  .venv/bin/python benchmarks/run.py [--only-rows] [--markdown FILE])

Budgets (reported, never enforced in CI): each notebook < 60 s, the whole course
< 5 min on a 2-core CPU. Other modules add rows through `benchmarks/rows_*.py`,
each exposing `rows() -> list[dict(name, value, unit, note)]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_BUDGET_S = 60.0
COURSE_BUDGET_S = 300.0


class PeakRSS:
    """Poll the resident memory of a process tree (the kernel) in a background thread."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._pid, self._stop = interval, 0, None, threading.Event()

    def watch(self, pid: int) -> None:
        self._pid = pid
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self._pid)
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(True))
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            time.sleep(self.interval)

    def stop(self) -> int:
        self._stop.set()
        return self.peak


def time_notebook(path: Path) -> tuple[float, float, str]:
    """Execute a copy of the notebook headless; return (seconds, peak MiB, status)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    monitor = PeakRSS()
    start = time.perf_counter()
    status = "ok"
    try:
        with client.setup_kernel():
            monitor.watch(client.km.provisioner.process.pid)
            start = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    except Exception as exc:  # report, keep going: the benchmark never fails CI
        status = f"error: {type(exc).__name__}"
    elapsed = time.perf_counter() - start
    return elapsed, monitor.stop() / 2**20, status


def package_rows() -> list[dict]:
    rows = []
    for path in sorted((ROOT / "benchmarks").glob("rows_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            rows += module.rows()
        except Exception as exc:
            rows.append({"name": path.stem, "value": float("nan"), "unit": "", "note": f"failed: {exc!r}"})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only-rows", action="store_true", help="skip the notebooks")
    parser.add_argument("--only-notebooks", action="store_true", help="skip the package rows")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)

    lines = [f"Machine: {platform.machine()}, {psutil.cpu_count(logical=True)} CPUs, "
             f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}", ""]
    if not args.only_rows:
        lines += ["| notebook | seconds | peak MiB | within 60 s | status |", "|---|---:|---:|:---:|---|"]
        total = 0.0
        for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            seconds, mib, status = time_notebook(path)
            total += seconds
            ok = "yes" if seconds < NOTEBOOK_BUDGET_S else "NO"
            lines.append(f"| {path.stem} | {seconds:.1f} | {mib:.0f} | {ok} | {status} |")
            print(lines[-1], flush=True)
        ok = "yes" if total < COURSE_BUDGET_S else "NO"
        lines += [f"| **whole course** | **{total:.1f}** | | {ok} (< 300 s) | |", ""]
    if not args.only_notebooks:
        lines += ["| measurement | value | unit | note |", "|---|---:|---|---|"]
        for row in package_rows():
            lines.append(f"| {row['name']} | {row['value']:.3g} | {row['unit']} | {row.get('note', '')} |")
    text = "\n".join(lines)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
