"""Build a static HTML site of the executed course in build/html/ (for reading and projecting).

Usage:  make html          (or  .venv/bin/python scripts/build_site.py [--out DIR] [--mathjax MODE])

Each numbered notebook becomes ``NN_name.html`` (nbconvert's HTML exporter, the
JupyterLab template) with its *stored* outputs: nothing is executed, so run
``scripts/execute_notebooks.py`` first if a notebook is stale. ``index.html``
holds the table of contents (chapter number, the title from each notebook's
first heading, a link); every page has previous / contents / next links.

The pages are self-contained and work offline:

* figures are embedded as data URIs (outputs are always inline;
  ``embed_images`` also inlines images a markdown cell links to);
* require.js and the Jupyter widget renderer (both from a CDN in nbconvert's
  template) are left out. A static page cannot run Python, so each widget
  output is replaced by a note to open the notebook in JupyterLab; the
  notebooks draw a static figure with default values before their widgets, so
  the page still shows the picture;
* mermaid.js (CDN) is left out: the course has no mermaid diagrams;
* MathJax: ``--mathjax auto`` (default) copies a local MathJax 2 into
  ``_static/mathjax`` (1.7 MB: TeX input, CommonHTML output, woff fonts) when
  one is installed (Debian package ``libjs-mathjax``, or the folder in
  ``$MATHJAX_DIR``), and otherwise points at the cdnjs URL nbconvert uses
  (formulas then need a network; offline they show as LaTeX source).
  ``--mathjax local`` insists on the local copy, ``cdn`` and ``none`` force the others.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "build" / "html"
CDN_MATHJAX = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe"
MATHJAX_CANDIDATES = ["/usr/share/javascript/mathjax", "/usr/share/nodejs/mathjax", "/usr/share/mathjax"]
# What the TeX-AMS_CHTML-full configuration loads (measured in Chromium on the course pages).
MATHJAX_PARTS = [
    "MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "extensions", "jax/input/TeX",
    "jax/output/CommonHTML", "jax/element", "fonts/HTML-CSS/TeX/woff", "localization/en",
]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<div class="course-widget-note" style="border:1px dashed #999;padding:0.5em 1em;color:#555;">'
    "Interactive widget: open this notebook in JupyterLab (<code>make lab</code>) to use it. "
    "The figure above shows its default setting.</div>"
)

NAV_CSS = """
<link rel="icon" href="data:," />
<style type="text/css">
.course-nav { display:flex; justify-content:space-between; gap:1em; max-width:1200px; margin:0.6em auto;
  padding:0.4em 1em; font-family:var(--jp-ui-font-family, sans-serif); font-size:0.95em;
  border-bottom:1px solid #ddd; }
.course-nav.bottom { border-top:1px solid #ddd; border-bottom:none; }
.course-nav a { text-decoration:none; } .course-nav span.disabled { color:#aaa; }
</style>
"""

TEMPLATE = r"""
{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}
{%- if resources.mathjax_url -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}{{ resources.course_nav_css }}{%- endblock html_head_css -%}
{%- block body_header -%}
{{ super() }}
{{ resources.course_nav_top }}
{%- endblock body_header -%}
{% block body_footer %}
{{ resources.course_nav_bottom }}
{{ super() }}
{% endblock body_footer %}
"""


def notebook_paths() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_heading(nb) -> str | None:
    """The text of the first markdown heading of a notebook (without the leading #s)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                match = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
                if match:
                    return match.group(1)
    return None


def inline_markdown(text: str) -> str:
    """Escape a heading for HTML, keeping `code` spans (enough for chapter titles)."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p.replace("**", ""))
                   for i, p in enumerate(parts))


def plain_text(text: str) -> str:
    return text.replace("`", "").replace("**", "")


def find_mathjax() -> Path | None:
    for candidate in [os.environ.get("MATHJAX_DIR"), *MATHJAX_CANDIDATES]:
        if candidate and (Path(candidate) / "MathJax.js").is_file():
            return Path(candidate)
    return None


def install_mathjax(source: Path, out: Path) -> str:
    """Copy the parts of MathJax 2 the pages need; return the URL the pages use (relative)."""
    target = out / "_static" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    for part in MATHJAX_PARTS:
        src, dst = source / part, target / part
        if not src.exists():
            raise FileNotFoundError(f"{source} is not a complete MathJax 2 install: {part} is missing")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=False)
        else:
            shutil.copy2(src, dst)
    return "_static/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"


def replace_widgets(nb) -> int:
    """Drop widget state and replace widget outputs by a note; return how many were replaced."""
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_MIME in data:
                output["data"] = {"text/html": WIDGET_NOTE}
                count += 1
    return count


def image_outputs(nb) -> int:
    """Number of figures a page of this notebook should show (image outputs and markdown images)."""
    n = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            n += sum(1 for o in cell.get("outputs", []) if any(k.startswith("image/") for k in o.get("data", {})))
        elif cell.cell_type == "markdown":
            n += len(re.findall(r"!\[[^\]]*\]\([^)]+\)|<img\s", cell.source))
    return n


def nav(chapters: list[dict], index: int, where: str) -> str:
    prev_link = (f'<a href="{chapters[index - 1]["href"]}">&larr; {html.escape(chapters[index - 1]["short"])}</a>'
                 if index > 0 else '<span class="disabled">&larr; start</span>')
    next_link = (f'<a href="{chapters[index + 1]["href"]}">{html.escape(chapters[index + 1]["short"])} &rarr;</a>'
                 if index + 1 < len(chapters) else '<span class="disabled">end &rarr;</span>')
    return (f'<nav class="course-nav {where}" aria-label="chapters">{prev_link}'
            f'<a href="index.html">Contents</a>{next_link}</nav>')


INDEX = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Conditional diffusion, from prompt to pixels</title>
<link rel="icon" href="data:," />
<style type="text/css">
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 52em;
  margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }}
td.num {{ font-variant-numeric: tabular-nums; width: 3em; }}
a {{ text-decoration: none; }}
footer {{ margin-top: 2em; color: #666; font-size: 0.9em; }}
</style>
</head>
<body>
<h1>Conditional diffusion, from prompt to pixels</h1>
<p>How a diffusion model is made to follow a text prompt: one idea per chapter, each an executed
Jupyter notebook of this course (the outputs are the stored ones; nothing here runs). To run and change
the code, clone the repository and run <code>make lab</code>.</p>
<h2>Contents</h2>
<table>
<thead><tr><th>#</th><th>Chapter</th><th>Notebook</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<footer>Built by <code>make html</code> from the notebooks in <code>notebooks/</code>.</footer>
</body>
</html>
"""


def build(out: Path = DEFAULT_OUT, mathjax: str = "auto", paths: list[Path] | None = None) -> list[dict]:
    """Write the site; return one dict per chapter (number, title, file, figures expected)."""
    paths = paths or notebook_paths()
    if not paths:
        raise SystemExit("no notebooks/NN_*.ipynb to build")
    out.mkdir(parents=True, exist_ok=True)

    local = find_mathjax()
    if mathjax == "local" and local is None:
        raise SystemExit("--mathjax local: no MathJax 2 found (apt-get install libjs-mathjax, or set MATHJAX_DIR)")
    if mathjax in ("auto", "local") and local is not None:
        mathjax_url, mathjax_note = install_mathjax(local, out), f"local copy of {local}"
    elif mathjax in ("auto", "cdn"):
        mathjax_url, mathjax_note = CDN_MATHJAX, "cdnjs (formulas need a network; apt-get install libjs-mathjax for a local copy)"
    else:
        mathjax_url, mathjax_note = "", "none (formulas show as LaTeX source)"

    chapters = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        heading = first_heading(nb) or path.stem
        number = path.name[:2]
        title = re.sub(rf"^{number}\s*[·:.\-–—]\s*", "", heading)
        chapters.append({"number": number, "title": title, "heading": heading, "path": path, "nb": nb,
                         "href": path.with_suffix(".html").name, "short": f"{number} · {plain_text(title)}"})

    exporter = HTMLExporter(template_name="lab", embed_images=True, mathjax_url=mathjax_url,
                            extra_loaders=[DictLoader({"course_index.html.j2": TEMPLATE})],
                            template_file="course_index.html.j2")
    for i, chapter in enumerate(chapters):
        nb = chapter.pop("nb")
        chapter["widgets"] = replace_widgets(nb)
        chapter["figures"] = image_outputs(nb)
        resources = {
            "metadata": {"name": plain_text(chapter["heading"]), "path": str(chapter["path"].parent)},
            "course_nav_css": NAV_CSS,
            "course_nav_top": nav(chapters, i, "top"),
            "course_nav_bottom": nav(chapters, i, "bottom"),
        }
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        (out / chapter["href"]).write_text(body, encoding="utf-8")

    rows = "\n".join(
        f'<tr><td class="num">{c["number"]}</td><td><a href="{c["href"]}">{inline_markdown(c["title"])}</a></td>'
        f'<td><code>{c["path"].name}</code></td></tr>'
        for c in chapters
    )
    (out / "index.html").write_text(INDEX.format(rows=rows), encoding="utf-8")
    for c in chapters:
        c["path"] = str(c["path"].relative_to(ROOT)) if c["path"].is_relative_to(ROOT) else str(c["path"])
    print(f"MathJax: {mathjax_note}")
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: build/html)")
    parser.add_argument("--mathjax", choices=["auto", "local", "cdn", "none"], default="auto",
                        help="where pages load MathJax from (default: a local copy if installed, else the CDN)")
    args = parser.parse_args(argv)
    chapters = build(args.out, args.mathjax, args.notebooks or None)
    for c in chapters:
        print(f"  {c['href']:<40} {c['figures']:>2} figure(s), {c['widgets']} widget note(s)  {plain_text(c['title'])}")
    print(f"{len(chapters)} chapter pages and index.html in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
