"""The page check (tools/check_pages.py): a table cell that pandas cut fails the page; an ellipsis the source
wrote does not (issue 35 item 3)."""
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import check_pages  # noqa: E402


def notebook(*sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) for s in sources]
    return nb


def test_a_cut_cell_and_a_cut_table_are_found_and_a_written_ellipsis_is_not():
    nb = notebook("| compared with | CE, GCE, SCE, MAE, … |", "rows = {'the paper': 'a very long sentence that goes on'}")
    page = ("<table><tr><td>CE, GCE, SCE, MAE, …</td><td>a very long sentence th...</td></tr>"
            "<tr><th>...</th><td>0.5</td></tr></table>")
    cut = check_pages.cut_cells(page, nb)
    assert cut == ["a very long sentence th...", "..."]
    assert check_pages.cut_cells("<table><tr><td>CE, GCE, SCE, MAE, …</td></tr></table>", nb) == []
