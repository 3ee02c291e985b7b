"""Execute notebooks in place so their stored outputs are fresh (what nbval compares).

Usage:  .venv/bin/python scripts/execute_notebooks.py [notebooks/NN_name.ipynb ...]
With no argument every numbered notebook is executed. Run this after changing a
notebook or the package code it shows, then commit the notebooks.
The environment matches `make test`: offline (figures use the kernel's inline backend).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "PYTHONHASHSEED": "0",
    "TOKENIZERS_PARALLELISM": "false",
}


def execute(path: Path, timeout: int = 300) -> float:
    """Execute one notebook in place with the current interpreter's kernel; return seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
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
