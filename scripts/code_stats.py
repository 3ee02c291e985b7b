"""How the package reads: argument checking's share, module and function lengths, layering.

``python scripts/code_stats.py`` prints, for every module of ``tutorial_lib/`` (not
``checks/``, the exercise checkers), its executable lines and the share of them that is
argument checking, counted as issue 17 counts it:

- executable lines: non-blank lines that are not comments and not docstrings;
- checking lines: every line of an ``if …:`` block whose body raises, every ``raise``
  statement, every line of a ``_check*`` helper (and of ``_checks.py``, the shared helpers)
  and every statement that calls one (``_check_x(...)``, ``_checks.real(...)``).

``tests/test_code_shape.py`` holds the bars against these numbers.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tutorial_lib"


@dataclass
class ModuleStats:
    name: str
    lines: int  # physical lines of the file
    executable: int
    checking: int
    longest_function: tuple[str, int]

    @property
    def share(self) -> float:
        return self.checking / max(self.executable, 1)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def _code_lines(source: str) -> set[int]:
    """Lines that hold a token other than a comment, newline or indentation."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def _check_aliases(tree: ast.AST) -> set[str]:
    """Module-level names bound to a shared check (``_real = _checks.real``): calls to them are
    checks too, whatever the alias is called."""
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "_checks" for target in node.targets if isinstance(target, ast.Name)}


def _is_check_call(node: ast.AST, aliases: frozenset[str] = frozenset()) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    if isinstance(func, ast.Name):
        return func.id.startswith("_check") or func.id in aliases
    if isinstance(func, ast.Attribute):
        owner = func.value
        return func.attr.startswith("_check") or (isinstance(owner, ast.Name) and owner.id == "_checks")
    return False


def _span(node: ast.AST) -> range:
    return range(node.lineno, node.end_lineno + 1)


def _checking_lines(tree: ast.AST, whole_module: bool, code: set[int]) -> set[int]:
    if whole_module:
        return set(code)
    lines: set[int] = set()
    aliases = frozenset(_check_aliases(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and any(isinstance(s, ast.Raise) for s in node.body):
            lines.update(_span(node))
        elif isinstance(node, ast.Raise):
            lines.update(_span(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_check"):
            lines.update(_span(node))
        elif isinstance(node, ast.stmt) and not isinstance(node, (ast.If, ast.For, ast.While, ast.With,
                                                                  ast.Try, ast.FunctionDef, ast.ClassDef)):
            if any(_is_check_call(child, aliases) for child in ast.walk(node)):
                lines.update(_span(node))
    return lines & code


def _longest_function(tree: ast.AST) -> tuple[str, int]:
    best = ("", 0)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > best[1]:
                best = (node.name, length)
    return best


def module_stats(path: Path) -> ModuleStats:
    source = path.read_text()
    tree = ast.parse(source)
    code = _code_lines(source) - _docstring_lines(tree)
    checking = _checking_lines(tree, path.name == "_checks.py", code)
    return ModuleStats(path.stem, len(source.splitlines()), len(code), len(checking),
                       _longest_function(tree))


def package_stats(package: Path = PACKAGE) -> list[ModuleStats]:
    """One :class:`ModuleStats` per module of the package, exercise checkers left out."""
    return [module_stats(p) for p in sorted(package.glob("*.py"))]


def imports_of(path: Path) -> set[str]:
    """The ``tutorial_lib`` modules a module imports at its top level or inside functions."""
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tutorial_lib."):
            names.add(node.module.split(".")[1])
    return names


def main() -> None:
    stats = package_stats()
    total_exec = sum(s.executable for s in stats)
    total_check = sum(s.checking for s in stats)
    print(f"{'module':<16}{'lines':>7}{'exec':>7}{'checks':>8}{'share':>8}  longest function")
    for s in stats:
        name, length = s.longest_function
        print(f"{s.name:<16}{s.lines:>7}{s.executable:>7}{s.checking:>8}{s.share:>8.0%}  {name} ({length})")
    print(f"{'package':<16}{sum(s.lines for s in stats):>7}{total_exec:>7}{total_check:>8}"
          f"{total_check / total_exec:>8.0%}")


if __name__ == "__main__":
    sys.exit(main())
