"""The book executes through nbval (issue 32): ``pytest --nbval-lax`` runs a chapter as a test, a
failing claim fails it naming the claim, and the plugin :mod:`tdlab.book.nbval_executed` writes the
notebook with exactly the outputs the kernel sent, which the book is built from."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from tdlab.book import seed_tables

CLAIM = "the phenomenon is at least half as large as the paper's"


def write_book(root: Path, *sources: str, markdown_first: bool = True) -> Path:
    """A one-chapter book under ``root`` (``_toc.yml`` + ``book/part/tiny.ipynb``) whose committed
    seed table lists one sanity claim with the stated threshold 0.5."""
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    chapter = root / "book" / "part" / "tiny.ipynb"
    chapter.parent.mkdir(parents=True)
    cells = [nbformat.v4.new_markdown_cell("# A tiny chapter")] if markdown_first else []
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, chapter)
    entry = seed_tables.Entry(words=CLAIM, kind="sanity", direction=">=", unit="", threshold=0.5, rule="stated",
                              values=[0.9] * 10)
    seed_tables.save(seed_tables.Table("part/tiny", "cpu", list(range(10)), [entry]), root / "book")
    return chapter


def checks(value: float) -> str:
    return ("from tdlab.book import claims, records\nrecords.set_chapter('part/tiny')\n"
            f"claims.check({CLAIM!r}, {value}, kind='sanity', at_least=0.5)")


def nbval(chapter: Path, *options: str) -> subprocess.CompletedProcess:
    """``pytest --nbval-lax CHAPTER`` as a contributor types it, in the chapter's book."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TDLAB_")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", *options,
                           str(chapter)], cwd=chapter.parents[2], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_passing_chapter_passes_nbval(tmp_path):
    chapter = write_book(tmp_path, "x = 0.9", checks(0.9))
    done = nbval(chapter)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 passed" in done.stdout


def test_a_failing_claim_fails_nbval_naming_the_claim(tmp_path):
    chapter = write_book(tmp_path, "x = 0.1", checks(0.1), "print('never reached')")
    done = nbval(chapter, "-x")
    assert done.returncode == 1
    assert f"claim failed: {CLAIM}" in done.stdout            # the AssertionError's words, in nbval's report
    assert "1 failed, 1 passed" in done.stdout                # -x: the chapter stops at its failing claim


def test_the_plugin_writes_what_the_kernel_sent(tmp_path):
    chapter = write_book(tmp_path, "print('one'); print('two')", "6 * 7",
                         "from IPython.display import display, Markdown\ndisplay(Markdown('**shown**'))",
                         "x = 1", "6 * 7;  # a result Jupyter does not show", "print('shown');")
    target, report = tmp_path / "out" / "tiny.ipynb", tmp_path / "report.json"
    done = nbval(chapter, "-p", "tdlab.book.nbval_executed", f"--executed-to={target}", f"--executed-report={report}")
    assert done.returncode == 0, done.stdout[-2000:]
    nb = nbformat.read(target, as_version=4)
    nbformat.validate(nb)                                          # a notebook Jupyter Book can read
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3, 4, 5, 6]
    assert code[0].outputs == [nbformat.v4.new_output("stream", name="stdout", text="one\ntwo\n")]
    assert code[1].outputs[0].output_type == "execute_result" and code[1].outputs[0].data["text/plain"] == "42"
    assert code[1].outputs[0].execution_count == 2
    assert code[2].outputs[0].data["text/markdown"] == "**shown**"
    assert code[3].outputs == []
    assert code[4].outputs == []                                   # ';': no result, as in Jupyter
    assert code[5].outputs == [nbformat.v4.new_output("stream", name="stdout", text="shown\n")]
    assert nb.cells[0].cell_type == "markdown"                     # the markdown is kept where it was
    written = json.loads(report.read_text())
    assert written["cells_run"] == 6 and written["error"] == "" and written["seconds"] > 0


def test_the_report_names_the_failing_cell_by_its_index_in_the_notebook(tmp_path):
    chapter = write_book(tmp_path, "x = 0.1", checks(0.1), "print('never reached')")
    target, report = tmp_path / "out.ipynb", tmp_path / "report.json"
    nbval(chapter, "-x", "-p", "tdlab.book.nbval_executed", f"--executed-to={target}", f"--executed-report={report}")
    error = json.loads(report.read_text())["error"]
    # cell 2 of the notebook (the markdown is cell 0), the second code cell
    assert error == f"cell 2 raised: AssertionError: claim failed: {CLAIM} — measured 0.1, needed >= 0.5"
    nb = nbformat.read(target, as_version=4)
    assert nb.cells[2].outputs[-1].output_type == "error"           # the page shows the failure as it happened
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None


def test_without_the_option_the_plugin_does_nothing(tmp_path):
    chapter = write_book(tmp_path, "x = 1")
    done = nbval(chapter, "-p", "tdlab.book.nbval_executed")
    assert done.returncode == 0 and not list(tmp_path.rglob("*.json"))


def test_the_option_needs_one_notebook(tmp_path):
    """Two notebooks in one run cannot both be written to one path."""
    chapter = write_book(tmp_path, "x = 1")
    other = chapter.with_name("other.ipynb")
    other.write_text(chapter.read_text())
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "-p",
                           "tdlab.book.nbval_executed", f"--executed-to={tmp_path / 'x.ipynb'}", str(chapter), str(other)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "one notebook" in (done.stdout + done.stderr)
