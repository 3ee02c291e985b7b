"""The course names the blog posts it grew from once, by title, and then "the source posts" (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# "seed article(s)", "seed post", "seed 002", "the seed's step" (the posts, not a random seed)
SEED_AS_SOURCE = re.compile(r"\bseeds?\s+(article|post|blog)s?\b|\bseed\s+00[02]\b|\bthe seed's\b", re.IGNORECASE)


def _markdown(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_says_source_posts_not_seed(path):
    hits = SEED_AS_SOURCE.findall(_markdown(path))
    assert not hits, f"{path.name}: call the blog posts 'the source posts', not 'seed …' ({len(hits)} hits)"


def test_package_docstrings_do_not_need_the_posts():
    for module in sorted((ROOT / "tutorial_lib").rglob("*.py")):
        text = module.read_text()
        assert not re.search(r"seed (article|post)", text, re.IGNORECASE), f"{module}: mentions the posts as 'seed'"


def test_posts_are_introduced_in_welcome_and_readme():
    welcome = _markdown(ROOT / "notebooks" / "00_welcome.ipynb")
    readme = (ROOT / "README.md").read_text()
    for name, text in (("00_welcome", welcome), ("README.md", readme)):
        assert "source posts" in text, f"{name} must introduce the source posts"
