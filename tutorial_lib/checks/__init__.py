"""Exercise checks, one function per exercise, grouped by chapter (``chNN.py``).

Usage in a notebook::

    from tutorial_lib.checks import check_cfg_combine
    print(check_cfg_combine(my_cfg_combine))

Each check runs the learner's function on several cases and either returns a
success line or raises :class:`ExerciseCheckFailed` with a sentence saying
which case failed, what was expected, what came back, and a hint.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import Case, ExerciseCheckFailed, compare, fail, run_cases

__all__ = ["Case", "ExerciseCheckFailed", "compare", "fail", "run_cases"]

# Collect every chapter module's checks (``check_*`` functions) at the package level.
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("ch"):
        _module = importlib.import_module(f"{__name__}.{_info.name}")
        for _name in getattr(_module, "__all__", []):
            globals()[_name] = getattr(_module, _name)
            __all__.append(_name)
