"""How the package reads (issue 17): the bars against ``scripts/code_stats.py``'s numbers.

Pure static analysis of the source files: nothing here imports ``tutorial_lib``.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tutorial_lib"
MODULES = sorted(PACKAGE.glob("*.py"))

MAX_CHECKING_SHARE = 0.10
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 700

# docs/CONTRIBUTING.md's layout, as "never imports" rules: a module below never imports one above it.
_EXPERIMENTS = {"sampler", "mixture_experiments", "after_cfg", "evaluation", "bridge_experiments", "train"}
NEVER_IMPORTS = {
    **{low: _EXPERIMENTS for low in ("mixture", "tilted", "guidance", "guiders", "schedule", "unet",
                                     "attention", "blocks", "conditioning")},
    "sampler": {"mixture_experiments", "after_cfg", "bridge_experiments", "evaluation"},
}


def _load_code_stats():
    spec = importlib.util.spec_from_file_location("code_stats", ROOT / "scripts" / "code_stats.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("code_stats", module)  # dataclasses look the module up while it loads
    spec.loader.exec_module(module)
    return module


code_stats = _load_code_stats()


def test_argument_checking_is_at_most_a_tenth_of_the_package():
    stats = code_stats.package_stats(PACKAGE)
    checking = sum(s.checking for s in stats)
    executable = sum(s.executable for s in stats)
    worst = sorted(stats, key=lambda s: s.checking, reverse=True)[:5]
    assert checking / executable <= MAX_CHECKING_SHARE, (
        f"argument checking is {checking}/{executable} = {checking / executable:.1%} of the executable lines "
        f"(bar {MAX_CHECKING_SHARE:.0%}); most: {[(s.name, s.checking) for s in worst]}. Check where input "
        "enters, one line each through _checks (docs/CONTRIBUTING.md, Rules)")


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_80_lines():
    long = [f"{p.name}:{line} {name} ({n} lines)" for p in MODULES for name, line, n in _functions(p)
            if n > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_module_is_longer_than_700_lines():
    long = {p.name: n for p in MODULES if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split by idea): {long}"


def test_docstring_maths_is_unicode_not_sphinx_math_roles():
    found = {p.name: p.read_text().count(":math:") for p in MODULES if ":math:" in p.read_text()}
    assert not found, f":math: roles (write the maths in Unicode, as sampler.py does): {found}"


def test_docstring_maths_has_no_sphinx_math_directives():
    found = {p.name: p.read_text().count(".. math::") for p in MODULES if ".. math::" in p.read_text()}
    assert not found, f".. math:: blocks (write the maths in Unicode, as sampler.py does): {found}"


@pytest.mark.parametrize("module", sorted(NEVER_IMPORTS))
def test_layering(module):
    above = code_stats.imports_of(PACKAGE / f"{module}.py") & NEVER_IMPORTS[module]
    assert not above, f"{module}.py imports {sorted(above)}, which docs/CONTRIBUTING.md's layout places above it"


def test_notebooks_never_cut_source_out_with_getsource():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    offenders = [nb.name for nb in notebooks if "getsource(" in nb.read_text(encoding="utf-8")]
    assert not offenders, f"use tutorial_lib.utils.show_source instead of inspect.getsource in {offenders}"
