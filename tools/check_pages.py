"""Check the built HTML book against the executed notebooks it was built from.

    python tools/check_pages.py SITE HTML CHAPTER [CHAPTER ...]

For every chapter (a path under book/ without .ipynb):
- every image the executed notebook produced is in the page (no figure silently dropped: a
  renderer output that Jupyter Book does not know would vanish with only a warning);
- the page carries no widget state and loads no widget manager (a progress bar or panel that
  rendered as a widget during the build), and no stderr output;
- no table cell ends in an ellipsis the source did not write (pandas cut it);
- the page has its kernel-free sweep explorer, and opens with the chapter's title, not the
  Colab install cell, followed by its status line (what of the paper it reproduces).
Exits non-zero, naming the page and what is wrong.
"""
import re
import sys
from pathlib import Path

import nbformat

WIDGET_MARKS = ("application/vnd.jupyter.widget-state+json", "application/vnd.jupyter.widget-view+json",
                "@jupyter-widgets/html-manager", "embed-amd.js")


def problems(site: Path, html_root: Path, chapter: str) -> list[str]:
    nb = nbformat.read(site / "book" / f"{chapter}.ipynb", as_version=4)
    page = (html_root / "book" / f"{chapter}.html").read_text()
    main = page.split('<main', 1)[-1]
    found = []
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {}))
    shown = len(re.findall(r"<img [^>]*src=\"[^\"]*_images/", main))
    if shown < images:
        found.append(f"{images} figures were drawn but {shown} are in the page")
    found += [f"carries widget state or loads the widget manager ({mark})" for mark in WIDGET_MARKS if mark in page]
    if "output stderr" in main or 'class="stderr' in main:
        found.append("shows stderr output")
    if "data-tdlab-explorer" not in main:
        found.append("has no kernel-free sweep explorer")
    if "Checked on every build" not in main:
        found.append("has no status line under its title (chapter.status)")
    if "google.colab" in main:
        found.append("shows the Colab install cell")
    first_code, title = main.find('class="cell '), main.find("<h1")
    if title < 0 or (0 <= first_code < title):
        found.append("does not open with its title")
    found += [f"a table cell is cut: “{cell}” (its source does not end so)" for cell in cut_cells(main, nb)]
    weight = len(page.encode())
    if weight > 1_500_000:
        found.append(f"weighs {weight / 1e6:.1f} MB (limit 1.5 MB of HTML)")
    return found


ELLIPSES = ("...", "…")


def cut_cells(main: str, nb) -> list[str]:
    """Table cells of the page that end in an ellipsis the chapter's source did not write: pandas cuts long
    text (and long tables, with a row of "...") unless told not to (:func:`tdlab.book.chapter.setup`)."""
    source = "\n".join(c.source for c in nb.cells)
    cut = []
    for raw in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", main, flags=re.S):
        text = re.sub(r"<[^>]+>", "", raw).strip()
        text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&#8230;", "…")
        if text.endswith(ELLIPSES) and (not text.rstrip(".… ") or text[-25:] not in source):
            cut.append(text[-60:])
    return cut


def main() -> int:
    site, html_root, chapters = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    bad = 0
    for chapter in chapters:
        page = html_root / "book" / f"{chapter}.html"
        issues = problems(site, html_root, chapter)
        size = page.stat().st_size / 1e3
        print(f"  page {chapter}: {size:.0f} kB of HTML" + ("" if not issues else "  PROBLEMS: " + "; ".join(issues)))
        bad += bool(issues)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
