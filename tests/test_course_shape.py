"""The course's shape: numbered notebooks that import the package and never redefine it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import nbformat
import pytest

import tutorial_lib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def _exported_names() -> set[str]:
    """Every public class/function name the package defines, module by module."""
    names = set(tutorial_lib.__all__)
    for info in pkgutil.iter_modules(tutorial_lib.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"tutorial_lib.{info.name}")
        public = getattr(module, "__all__", None)
        if public is None:
            public = [
                n
                for n, obj in vars(module).items()
                if not n.startswith("_") and getattr(obj, "__module__", None) == module.__name__
            ]
        names.update(public)
    return names


def _code(nb) -> str:
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            # IPython magics are not Python; drop them before parsing.
            lines += [ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_name_and_kernel(path):
    assert NAME.match(path.name), f"{path.name}: notebooks are named NN_name.ipynb (lower case)"
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", (
        f"{path.name}: kernelspec must be python3 so every environment can run it"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_the_package(path):
    tree = ast.parse(_code(nbformat.read(path, as_version=4)))
    modules = [
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
    ] + [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert any(m.split(".")[0] == "tutorial_lib" for m in modules), (
        f"{path.name} does not import from tutorial_lib"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_does_not_redefine_package_code(path):
    tree = ast.parse(_code(nbformat.read(path, as_version=4)))
    defined = {
        n.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    clash = sorted(defined & _exported_names())
    assert not clash, f"{path.name} redefines {clash}, which tutorial_lib exports: import them instead"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_outputs_stored(path):
    """nbval compares stored outputs: a notebook saved without them would test nothing."""
    nb = nbformat.read(path, as_version=4)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.execution_count is not None for c in code_cells), (
        f"{path.name} has unexecuted cells: run scripts/execute_notebooks.py {path.name}"
    )
