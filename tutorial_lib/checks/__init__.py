"""Exercise checks, one function per exercise, grouped by chapter (``chNN.py``).

Usage in a notebook::

    from tutorial_lib.checks import check_cfg_combine
    print(check_cfg_combine(my_cfg_combine))

Each check runs the learner's function on several cases and either returns a
success line or raises :class:`ExerciseCheckFailed` with a sentence saying
which case failed, what was expected, what came back, and a hint.

Chapter modules are imported lazily: ``from tutorial_lib.checks import
check_x`` imports only the chapter that defines ``check_x`` (some chapters pull
in transformers, which costs seconds).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from ._core import Case, ExerciseCheckFailed, compare, fail, run_cases


def _chapter_exports() -> dict[str, str]:
    """Map each ``check_*`` name to its chapter module, read from the modules' ``__all__``."""
    owners: dict[str, str] = {}
    for path in sorted(Path(__file__).parent.glob("ch*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                for name in ast.literal_eval(node.value):
                    owners[name] = path.stem
    return owners


_OWNERS = _chapter_exports()

__all__ = ["Case", "ExerciseCheckFailed", "compare", "fail", "run_cases", *_OWNERS]


def __getattr__(name: str):
    if name in _OWNERS:
        value = getattr(importlib.import_module(f"{__name__}.{_OWNERS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
