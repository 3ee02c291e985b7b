"""The HTML site (scripts/build_site.py) and its browser check (scripts/check_site.py).

The build is tested on small synthetic notebooks (fast, no browser). The browser
test runs the real checker in headless Chromium on a synthetic site, including a
page with a planted console error that it must report, and a page pointing at the
MathJax CDN whose request it must report and block; formulas are checked as typeset
only where a local MathJax (libjs-mathjax) exists. The browser tests are skipped when
Chromium or Playwright is missing (``make test-site`` installs Chromium and checks the course).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from _scripts import load_script
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


build_site = load_script("build_site")
check_site = load_script("check_site")


def _notebook(number, title, extra_outputs=()):
    figure = new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})
    widget = new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(children=(IntSlider(value=1),))",
    })
    nb = new_notebook(cells=[
        new_markdown_cell(f"# {number} · {title}\n\nThe loss is $\\mathcal{{L}} = \\|\\epsilon - \\hat\\epsilon\\|^2$."),
        new_code_cell("plot()", execution_count=1, outputs=[figure]),
        new_code_cell("interact()", execution_count=2, outputs=[widget, *extra_outputs]),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                             "version_minor": 0}}
    return nb


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    paths = []
    for number, title in (("00", "Welcome"), ("01", "Conditioning `(B, C)` paradigms"), ("02", "Last one")):
        path = folder / f"{number}_{title.split()[0].lower()}.ipynb"
        nbformat.write(_notebook(number, title), path)
        paths.append(path)
    return paths


def test_title_is_the_first_heading():
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell("intro\n\n## 03 · Cross-attention ##\n# later")])
    assert build_site.first_heading(nb) == "03 · Cross-attention"
    assert build_site.inline_markdown("Text to `(B, 77, D)` & <more>") == "Text to <code>(B, 77, D)</code> &amp; &lt;more&gt;"


def test_site_has_contents_navigation_and_no_external_resources(notebooks, tmp_path):
    out = tmp_path / "html"
    chapters = build_site.build(out, "none", notebooks)
    assert [c["href"] for c in chapters] == ["00_welcome.html", "01_conditioning.html", "02_last.html"]
    assert [c["figures"] for c in chapters] == [1, 1, 1]
    index = (out / "index.html").read_text()
    for c in chapters:
        assert f'href="{c["href"]}"' in index
    assert "<td class=\"num\">01</td>" in index and "Conditioning <code>(B, C)</code> paradigms" in index

    middle = (out / "01_conditioning.html").read_text()
    assert '<title>01 · Conditioning (B, C) paradigms</title>' in middle
    assert 'href="00_welcome.html"' in middle and 'href="02_last.html"' in middle and 'href="index.html"' in middle
    assert "data:image/png;base64," + PNG[:20] in middle
    assert "Interactive widget: open this notebook in JupyterLab" in middle
    assert "end →" in (out / "02_last.html").read_text()
    assert "← start" in (out / "00_welcome.html").read_text()
    for page in out.glob("*.html"):
        text = page.read_text()
        external = re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](https?:)?//[^"']+""", text)
        assert not external, f"{page.name} loads {external}"
        assert "require.min.js" not in text and "html-manager" not in text, page.name


def test_mathjax_modes(notebooks, tmp_path, monkeypatch):
    cdn = (build_site.build(tmp_path / "cdn", "cdn", notebooks[:1]), tmp_path / "cdn" / "00_welcome.html")
    assert build_site.CDN_MATHJAX.split("?")[0] in cdn[1].read_text()
    monkeypatch.setenv("MATHJAX_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(build_site, "MATHJAX_CANDIDATES", [])
    with pytest.raises(SystemExit, match="libjs-mathjax"):
        build_site.build(tmp_path / "local", "local", notebooks[:1])
    # A fake MathJax install is copied (only the parts the pages use) and linked relatively.
    fake = tmp_path / "mathjax"
    for part in build_site.MATHJAX_PARTS:
        target = fake / part
        if "." in Path(part).name:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("//")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "x.js").write_text("//")
    (fake / "unpacked").mkdir()
    monkeypatch.setenv("MATHJAX_DIR", str(fake))
    build_site.build(tmp_path / "local", "local", notebooks[:1])
    page = (tmp_path / "local" / "00_welcome.html").read_text()
    assert 'src="_static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"' in page
    assert (tmp_path / "local" / "_static/mathjax/jax/output/CommonHTML/x.js").exists()
    assert not (tmp_path / "local" / "_static/mathjax/unpacked").exists()


def _browser_missing() -> str | None:
    if check_site.find_chromium() is None:
        return "Chromium is not installed (make test-site installs it)"
    return check_site.playwright_missing()


def test_checked_site_never_points_at_the_cdn(monkeypatch, tmp_path):
    """The site checked offline uses a local MathJax or none, never the CDN (it could only fail)."""
    monkeypatch.setattr(build_site, "find_mathjax", lambda: None)
    assert check_site.mathjax_mode() == "none"
    monkeypatch.setattr(build_site, "find_mathjax", lambda: tmp_path)
    assert check_site.mathjax_mode() == "local"


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_browser_check_passes_a_good_site_and_reports_a_console_error(notebooks, tmp_path):
    broken = _notebook("03", "Broken", extra_outputs=[
        new_output("display_data", data={"text/html": "<script>console.error('planted error')</script>",
                                         "text/plain": ""}),
    ])
    nbformat.write(broken, notebooks[0].parent / "03_broken.ipynb")
    out = tmp_path / "html"
    mode = check_site.mathjax_mode()  # local MathJax with libjs-mathjax, else none
    chapters = build_site.build(out, mode, [*notebooks, notebooks[0].parent / "03_broken.ipynb"])
    rows = {r["page"]: r for r in check_site.check(out, chapters, check_site.find_chromium(), timeout=60)}
    assert set(rows) == {"index.html", "00_welcome.html", "01_conditioning.html", "02_last.html", "03_broken.html"}
    for page in ("index.html", "00_welcome.html", "01_conditioning.html", "02_last.html"):
        assert rows[page]["problems"] == [], (page, rows[page]["problems"])
        assert page == "index.html" or rows[page]["figures"] == "1/1"
        # Formulas typeset only where a local MathJax was copied in; otherwise left as LaTeX.
        if page != "index.html":
            assert (rows[page]["math"] > 0) == (mode == "local"), (page, mode, rows[page]["math"])
            assert rows[page]["raw_math"] == (mode == "none"), (page, mode)
    assert any("planted error" in p for p in rows["03_broken.html"]["problems"])
    assert rows["01_conditioning.html"]["title"].startswith("01 · Conditioning")


@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_browser_check_reports_and_blocks_a_request_leaving_the_server(notebooks, tmp_path):
    out = tmp_path / "html"
    chapters = build_site.build(out, "cdn", notebooks[:1])
    rows = check_site.check(out, chapters, check_site.find_chromium(), timeout=30)
    page = next(r for r in rows if r["page"] == "00_welcome.html")
    assert any(p.startswith("external request: https://cdnjs") for p in page["problems"]), page["problems"]
