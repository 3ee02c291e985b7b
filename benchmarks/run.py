"""Course benchmark, calibrated: every notebook's wall time in seconds *and in units*.

Usage:  make bench   (or  .venv/bin/python benchmarks/run.py [--only-rows] [--only-notebooks]
                           [--markdown FILE] [--json FILE])

What a unit is. One *unit* is the median wall time of a fixed reference workload, measured
in the same run: one forward of ``tutorial_lib.unet.ConditionalUNet(UNetConfig())`` with
seed-0 weights (``torch.manual_seed(0)`` before construction), ``.eval()``, under
``torch.no_grad()``, at batch 16, 32×32, context ``(16, 77, 128)`` and ``t = 500`` from a
seeded generator, torch's default thread count; two warm-up forwards, then the median of 9.
It is measured at the start and at the end of the run; their mean is the unit, and a
warning is printed when they differ by more than 15 % (the machine's load changed during
the run, so the seconds are less comparable); another warning says when the machine was
already busy before the run (1-minute load at least half the CPU count: threads contend,
and a 2-thread forward slows down far more than, say, an import). On the course's 2-core
AMD EPYC machine one unit is about 0.10 s with 2 threads (0.147 s with 1; the 1-thread
time is reported too, for information, since the widget callbacks run on one thread).

Why. A budget in seconds means something different on every machine: the same course
measured 145 s on one 2-core CPU and 394 s on another. The course's work is mostly this
kind of small-batch CPU computation, so a budget in units is the same claim on a fast and
on a slow machine, and a row that is over budget here is over budget there.

Budgets (reported, never enforced in CI): each notebook ≤ 400 units, the whole course
≤ 2,000 units; ``load_pretrained()`` after ``import torch`` ≤ 3.6 units (0.5 s at 140 ms/unit;
the fresh-process time, mostly ``import torch``, is reported in seconds).

Widget rows. After a notebook's cells, one extra snippet runs in the same kernel (its time
is not added to the notebook's): it calls ``.refresh()`` twice on every figure that
``tutorial_lib.widgets.registry()`` lists (first use, then again; each redraws at the
default control values and returns its seconds) and prints JSON, parsed here into rows
``<notebook> widget <name>: first / again``. Callbacks run at the widget module's
interactive thread count (``COURSE_INTERACTIVE_THREADS``, 1 by default), not the unit's.
A notebook that never imported ``tutorial_lib.widgets`` gets no widget rows.

Package rows. Every ``benchmarks/rows_*.py`` exposes ``rows() -> list[dict(name, value,
unit, note[, budget_units])]``; a row whose unit is ``s`` or ``ms`` is also shown in units.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_BUDGET_UNITS = 400.0
COURSE_BUDGET_UNITS = 2000.0
UNIT_DRIFT_WARNING = 0.15
UNIT_REPEATS = 9
WIDGET_MARKER = "COURSE_BENCH_WIDGETS "
WIDGET_SNIPPET = f"""
import json as _bench_json, sys as _bench_sys
_bench_rows = []
_bench_module = _bench_sys.modules.get("tutorial_lib.widgets")
for _bench_fig in (_bench_module.registry() if hasattr(_bench_module, "registry") else []):
    try:
        _bench_rows.append({{"name": str(_bench_fig.name), "first_s": float(_bench_fig.refresh()),
                            "again_s": float(_bench_fig.refresh())}})
    except Exception as _bench_exc:
        _bench_rows.append({{"name": str(getattr(_bench_fig, "name", "?")),
                            "error": f"{{type(_bench_exc).__name__}}: {{_bench_exc}}"}})
print({WIDGET_MARKER!r} + _bench_json.dumps(_bench_rows))
"""


# --- the unit ---------------------------------------------------------------------------

def reference_workload():
    """The unit's workload: a callable running one forward of the seed-0 course U-Net."""
    from tutorial_lib.unet import ConditionalUNet, UNetConfig

    torch.manual_seed(0)
    model = ConditionalUNet(UNetConfig()).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=g)
    context = torch.randn(16, 77, 128, generator=g)
    t = torch.full((16,), 500, dtype=torch.long)

    @torch.no_grad()
    def forward() -> None:
        model(x, t, context)

    return forward


def measure_unit(workload, repeats: int = UNIT_REPEATS, warmup: int = 2) -> float:
    """Median seconds of ``repeats`` runs of ``workload`` after ``warmup`` runs."""
    for _ in range(warmup):
        workload()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        workload()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_one_thread_unit(workload) -> float:
    """The same workload with one torch thread (informational: widget callbacks use one)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return measure_unit(workload)
    finally:
        torch.set_num_threads(previous)


def unit_summary(start_s: float, end_s: float) -> dict:
    drift = abs(end_s - start_s) / min(start_s, end_s)
    warning = None
    if drift > UNIT_DRIFT_WARNING:
        warning = (f"WARNING: the unit changed by {100 * drift:.0f} % between the start ({start_s:.3f} s) "
                   f"and the end ({end_s:.3f} s) of the run: the machine's load changed; times are noisy.")
    return {"seconds": (start_s + end_s) / 2, "start_s": start_s, "end_s": end_s, "drift": drift,
            "threads": torch.get_num_threads(), "repeats": UNIT_REPEATS, "warning": warning,
            "definition": "median of 9 forwards of ConditionalUNet(UNetConfig()), seed-0 weights, eval, "
                          "no_grad, batch 16, 32x32, context (16, 77, 128), t=500, default threads"}


# --- notebooks --------------------------------------------------------------------------

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


def parse_widget_output(cell) -> list[dict]:
    """The JSON list the widget snippet printed, or [] if it printed none."""
    for output in cell.get("outputs", []):
        for line in str(output.get("text", "")).splitlines():
            if line.startswith(WIDGET_MARKER):
                rows = json.loads(line[len(WIDGET_MARKER):])
                return rows if isinstance(rows, list) else []
    return []


def widget_timings(client: NotebookClient, nb) -> list[dict]:
    """Run the widget snippet as one extra cell in the notebook's kernel; never raises."""
    cell = nbformat.v4.new_code_cell(WIDGET_SNIPPET)
    nb.cells.append(cell)
    try:
        return parse_widget_output(client.execute_cell(cell, len(nb.cells) - 1))
    except Exception as exc:
        return [{"name": "(widget snippet)", "error": f"{type(exc).__name__}: {exc}"}]


def time_notebook(path: Path) -> dict:
    """Execute a copy of the notebook headless: seconds, peak MiB, status and widget timings."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    monitor = PeakRSS()
    start = time.perf_counter()
    elapsed = peak = None
    status, widgets = "ok", []
    try:
        with client.setup_kernel():
            monitor.watch(client.km.provisioner.process.pid)
            start = time.perf_counter()
            index = 0
            try:
                for index, cell in enumerate(list(nb.cells)):
                    client.execute_cell(cell, index)
            except Exception as exc:  # report, keep going: the benchmark never fails CI
                status = f"error in cell {index}: {getattr(exc, 'ename', type(exc).__name__)}"
            elapsed, peak = time.perf_counter() - start, monitor.stop()
            widgets = widget_timings(client, nb)  # not part of the notebook's time or memory
    except Exception as exc:  # the kernel itself failed
        status = f"error: {type(exc).__name__}"
    if elapsed is None:
        elapsed, peak = time.perf_counter() - start, monitor.stop()
    return {"name": path.stem, "seconds": elapsed, "peak_mib": peak / 2**20, "status": status, "widgets": widgets}


def run_notebooks(unit_guess: float) -> list[dict]:
    results = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        result = time_notebook(path)
        results.append(result)
        print(f"{result['name']}: {result['seconds']:.1f} s (≈{result['seconds'] / unit_guess:.0f} units), "
              f"{result['peak_mib']:.0f} MiB, {result['status']}, {len(result['widgets'])} widget(s)", flush=True)
    return results


# --- package rows -----------------------------------------------------------------------

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


def row_units(row: dict, unit_s: float) -> float | None:
    scale = {"s": 1.0, "seconds": 1.0, "ms": 1e-3}.get(str(row.get("unit", "")).strip())
    return None if scale is None else row["value"] * scale / unit_s


# --- the report -------------------------------------------------------------------------

def add_units(report: dict) -> None:
    """Fill every seconds-valued entry of ``report`` with its value in units (in place)."""
    unit = report["unit"]["seconds"]
    for nb in report["notebooks"]:
        nb["units"] = nb["seconds"] / unit
        nb["within_budget"] = nb["units"] <= NOTEBOOK_BUDGET_UNITS and nb["status"] == "ok"
        for w in nb["widgets"]:
            for key in ("first", "again"):
                if f"{key}_s" in w:
                    w[f"{key}_units"] = w[f"{key}_s"] / unit
    if report["notebooks"]:
        total = sum(nb["seconds"] for nb in report["notebooks"])
        report["course"] = {"seconds": total, "units": total / unit,
                            "within_budget": total / unit <= COURSE_BUDGET_UNITS}
    for row in report["rows"]:
        units = row_units(row, unit)
        if units is not None:
            row["units"] = units
            if "budget_units" in row:
                row["within_budget"] = units <= row["budget_units"]


def notebook_lines(report: dict) -> list[str]:
    yes = {True: "yes", False: "NO"}
    lines = [f"| notebook | seconds | units | peak MiB | within {NOTEBOOK_BUDGET_UNITS:.0f} units | status |",
             "|---|---:|---:|---:|:---:|---|"]
    for nb in report["notebooks"]:
        lines.append(f"| {nb['name']} | {nb['seconds']:.1f} | {nb['units']:.0f} | {nb['peak_mib']:.0f} | "
                     f"{yes[nb['within_budget']]} | {nb['status']} |")
        for w in nb["widgets"]:
            if "error" in w:
                lines.append(f"| {nb['name']} widget {w['name']}: first / again | | | | | {w['error']} |")
            else:
                lines.append(f"| {nb['name']} widget {w['name']}: first / again | {w['first_s']:.2f} / "
                             f"{w['again_s']:.2f} | {w['first_units']:.1f} / {w['again_units']:.1f} | | | |")
    course = report["course"]
    lines.append(f"| **whole course** | **{course['seconds']:.1f}** | **{course['units']:.0f}** | | "
                 f"{yes[course['within_budget']]} (≤ {COURSE_BUDGET_UNITS:,.0f} units) | |")
    return lines + [""]


def row_lines(report: dict) -> list[str]:
    lines = ["| measurement | value | unit | in units | note |", "|---|---:|---|---:|---|"]
    for row in report["rows"]:
        units = ""
        if "units" in row:
            units = f"{row['units']:.1f}"
            if "within_budget" in row:
                units += f" (≤ {row['budget_units']:g}: {'yes' if row['within_budget'] else 'NO'})"
        lines.append(f"| {row['name']} | {row['value']:.3g} | {row['unit']} | {units} | {row.get('note', '')} |")
    return lines


def markdown(report: dict) -> str:
    m, u = report["machine"], report["unit"]
    lines = [f"Machine: {m['machine']}, {m['cpus']} CPUs, torch {m['torch']} ({m['threads']} threads), "
             f"Python {m['python']}; load average {m['load_start']} at the start, {m['load_end']} at the end.",
             f"Unit: **{u['seconds']:.3f} s** (start {u['start_s']:.3f} s, end {u['end_s']:.3f} s, "
             f"{100 * u['drift']:.0f} % apart): {u['definition']}."
             + (f" With 1 thread (the widgets' count, not used for units): {u['one_thread_s']:.3f} s."
                if "one_thread_s" in u else ""), ""]
    for warning in (m.get("busy_warning"), u["warning"]):
        if warning:
            lines += [f"**{warning}**", ""]
    if report["notebooks"]:
        lines += notebook_lines(report)
    if report["rows"]:
        lines += row_lines(report)
    return "\n".join(lines)


def json_safe(value):
    """``value`` with every NaN or infinity replaced by ``None`` (strict JSON has neither)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_average() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in psutil.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def busy_warning(load: str, cpus: int) -> str | None:
    """A warning when, before the run started, other processes kept half the CPUs or more busy."""
    try:
        one_minute = float(load.split("/")[0])
    except ValueError:
        return None
    if one_minute < cpus / 2:
        return None
    return (f"WARNING: the machine was busy before the run (1-min load {one_minute:.2f} on {cpus} CPUs): "
            "threads contend, so the unit and the seconds are both inflated and the units are only indicative.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only-rows", action="store_true", help="skip the notebooks")
    parser.add_argument("--only-notebooks", action="store_true", help="skip the package rows")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    parser.add_argument("--json", type=Path, help="also write the same numbers as JSON to this file")
    args = parser.parse_args(argv)

    machine = {"machine": platform.machine(), "cpus": psutil.cpu_count(logical=True), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "python": platform.python_version(), "load_start": load_average()}
    machine["busy_warning"] = busy_warning(machine["load_start"], machine["cpus"])
    workload = reference_workload()
    start_unit, start_one = measure_unit(workload), measure_one_thread_unit(workload)
    print(f"unit at the start: {start_unit:.3f} s ({start_one:.3f} s with 1 thread)", flush=True)
    notebooks = [] if args.only_rows else run_notebooks(start_unit)
    rows = [] if args.only_notebooks else package_rows()
    end_unit, end_one = measure_unit(workload), measure_one_thread_unit(workload)
    machine["load_end"] = load_average()
    unit = unit_summary(start_unit, end_unit) | {"one_thread_s": (start_one + end_one) / 2}
    report = {"machine": machine, "unit": unit, "notebooks": notebooks,
              "course": None, "rows": rows,
              "budgets": {"notebook_units": NOTEBOOK_BUDGET_UNITS, "course_units": COURSE_BUDGET_UNITS}}
    add_units(report)
    text = markdown(report)
    print("\n" + text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
