"""Import the repo's scripts (scripts/*.py, benchmarks/*.py) as modules in tests; they are not a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, folder: str = "scripts"):
    """Import ``ROOT/folder/name.py`` under the module name ``name`` and return it.

    The folder goes on ``sys.path`` first, so a script can import its siblings (``check_site``
    imports ``build_site``); the module is registered in ``sys.modules`` before it runs, as
    dataclasses and pickling need.
    """
    directory = ROOT / folder
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
