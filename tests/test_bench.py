"""benchmarks/run.py: the unit, units in the report, widget rows (a tiny notebook in a real kernel)."""

import json
import time
from pathlib import Path

import nbformat
import pytest
import torch
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_script("run", folder="benchmarks")


def test_unit_drift_warning(bench):
    assert bench.unit_summary(0.100, 0.110)["warning"] is None
    summary = bench.unit_summary(0.100, 0.120)
    assert summary["seconds"] == pytest.approx(0.110) and summary["drift"] == pytest.approx(0.2)
    assert "WARNING" in summary["warning"] and "load" in summary["warning"]


def test_busy_warning(bench):
    assert bench.busy_warning("0.40/0.30/0.20", 2) is None
    assert "busy" in bench.busy_warning("1.50/1.00/0.50", 2)
    assert bench.busy_warning("n/a", 2) is None


def test_measure_unit_is_the_median_after_warm_up(bench):
    sleeps = iter([0.3, 0.3, 0.01, 0.08, 0.03])  # two warm-ups (ignored), then three runs

    def workload():
        time.sleep(next(sleeps))

    assert 0.025 <= bench.measure_unit(workload, repeats=3, warmup=2) < 0.075


def test_reference_workload_runs(bench):
    forward = bench.reference_workload()
    forward()  # one U-Net forward at batch 16 (~0.1 s on 2 cores)
    threads = torch.get_num_threads()
    assert bench.measure_one_thread_unit(forward) > 0 and torch.get_num_threads() == threads


def _report(bench):
    return {
        "machine": {"machine": "x86_64", "cpus": 2, "torch": "t", "threads": 2, "python": "3.11",
                    "load_start": "1.00/1.00/1.00", "load_end": "1.00/1.00/1.00"},
        "unit": bench.unit_summary(0.1, 0.1),
        "notebooks": [
            {"name": "00_a", "seconds": 30.0, "peak_mib": 500.0, "status": "ok",
             "widgets": [{"name": "w", "first_s": 0.5, "again_s": 0.25}]},
            {"name": "01_b", "seconds": 50.0, "peak_mib": 600.0, "status": "ok",
             "widgets": [{"name": "broken", "error": "ValueError: x"}]},
        ],
        "course": None,
        "rows": [{"name": "load", "value": 1.0, "unit": "s", "note": "", "budget_units": 14.3},
                 {"name": "step", "value": 50.0, "unit": "ms", "note": ""},
                 {"name": "ratio", "value": 1.5, "unit": "x", "note": ""}],
    }


def test_units_budgets_and_tables(bench):
    report = _report(bench)
    bench.add_units(report)
    a, b = report["notebooks"]
    assert a["units"] == pytest.approx(300) and a["within_budget"]
    assert b["units"] == pytest.approx(500) and not b["within_budget"]
    assert a["widgets"][0]["first_units"] == pytest.approx(5) and a["widgets"][0]["again_units"] == pytest.approx(2.5)
    assert report["course"]["units"] == pytest.approx(800) and report["course"]["within_budget"]
    load, step, ratio = report["rows"]
    assert load["units"] == pytest.approx(10) and load["within_budget"]
    assert step["units"] == pytest.approx(0.5) and "units" not in ratio
    text = bench.markdown(report)
    assert "| 00_a | 30.0 | 300 | 500 | yes | ok |" in text
    assert "| 01_b | 50.0 | 500 | 600 | NO | ok |" in text
    assert "| 00_a widget w: first / again | 0.50 / 0.25 | 5.0 / 2.5 |" in text
    assert "ValueError: x" in text and "**whole course** | **80.0** | **800**" in text
    assert "10.0 (≤ 14.3: yes)" in text and "With 1 thread" not in text
    report["unit"]["one_thread_s"] = 0.15
    assert "With 1 thread (the widgets' count, not used for units): 0.150 s." in bench.markdown(report)
    report["rows"][2]["value"] = float("nan")  # a failed row
    assert json.loads(json.dumps(bench.json_safe(report), allow_nan=False))["rows"][2]["value"] is None


def test_parse_widget_output_ignores_other_output(bench):
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n"),
                    nbformat.v4.new_output("stream", name="stdout",
                                           text=bench.WIDGET_MARKER + '[{"name": "w", "first_s": 1.0}]\n')]
    assert bench.parse_widget_output(cell) == [{"name": "w", "first_s": 1.0}]
    assert bench.parse_widget_output(nbformat.v4.new_code_cell("")) == []


def _notebook(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


WIDGET_CELL = """
import time
import ipywidgets as widgets
import matplotlib.pyplot as plt
from tutorial_lib.widgets import interactive_figure

draws = []

def slow_plot(n):
    draws.append(n)
    if len(draws) > 1:  # the refreshes the benchmark adds, not the notebook's own first draw
        time.sleep(4.0)
    fig, ax = plt.subplots()
    ax.plot(range(n))
    return fig

explorer = interactive_figure(slow_plot, {"n": widgets.IntSlider(value=5, min=1, max=9)}, name="slow plot")
"""


def test_widget_rows_are_timed_after_the_notebook(bench, tmp_path):
    result = bench.time_notebook(_notebook(tmp_path / "00_w.ipynb", [WIDGET_CELL, "assert draws == [5]"]))
    assert result["status"] == "ok", result
    (row,) = result["widgets"]
    assert row["name"] == "slow plot" and row["first_s"] >= 4.0 and row["again_s"] >= 4.0
    assert result["seconds"] < row["first_s"] + row["again_s"]  # the refreshes are not the notebook's time
    plain = bench.time_notebook(_notebook(tmp_path / "01_plain.ipynb", ["x = 1"]))
    assert plain["status"] == "ok" and plain["widgets"] == []
    broken = bench.time_notebook(_notebook(tmp_path / "02_broken.ipynb", ["x = 1", "1 / 0", "y = 2"]))
    assert broken["status"] == "error in cell 1: ZeroDivisionError" and broken["widgets"] == []
