"""Execute notebooks in place so their stored outputs are fresh (what nbval compares).

Usage:  .venv/bin/python scripts/execute_notebooks.py [notebooks/NN_name.ipynb ...]
With no argument every numbered notebook is executed. Run this after changing a
notebook or the package code it shows, then commit the notebooks.
The environment matches `make test`: offline (figures use the kernel's inline backend).

Widgets are stored as what a viewer without a live kernel can show: the figure (an ordinary image
output, see tutorial_lib.widgets) and the controls' plain-text note. The widget-view outputs and the
widget state are dropped, so a freshly opened notebook never shows "model not found"; running the
cell brings the controls back. (nbval ignores widget-view data, so the stored note is what it compares.)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tutorial_lib.widgets import DEFAULT_NOTE

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def strip_widget_views(nb: nbformat.NotebookNode) -> int:
    """Drop widget-view data (and the notebook's widget state) in place; return how many were dropped."""
    dropped = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if WIDGET_VIEW in output.get("data", {}):
                del output["data"][WIDGET_VIEW]
                output["data"].setdefault("text/plain", DEFAULT_NOTE)
                dropped += 1
    nb.metadata.pop("widgets", None)
    return dropped


def coalesce_streams(nb: nbformat.NotebookNode) -> None:
    """Merge each cell's consecutive stdout (or stderr) outputs into one, in place: how many pieces a
    cell's prints arrive in depends on the machine's speed, and a stored notebook should not."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            prev = merged[-1] if merged else None
            if out.output_type == "stream" and prev is not None and prev.output_type == "stream" \
                    and prev.name == out.name:
                prev.text += out.text
            else:
                merged.append(out)
        if "outputs" in cell:
            cell.outputs = merged


def execute(path: Path, timeout: int = 300) -> float:
    """Execute one notebook in place with the current interpreter's kernel; return seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    strip_widget_views(nb)
    coalesce_streams(nb)
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    os.environ.update(OFFLINE_ENV)
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"{path.name}: {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
