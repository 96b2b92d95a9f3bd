"""The book runner (tools/build_book.py): a hanging cell fails its chapter by the per-cell timeout,
naming the chapter and the cell; a raising cell names its error."""
import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "tools" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "ROOT", tmp_path / "src")
    monkeypatch.setattr(module, "SITE", tmp_path / "site")
    return module


def write_chapter(runner, relative: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    for root in (runner.ROOT, runner.SITE):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, runner.ROOT / f"{relative}.ipynb")


def test_a_hanging_cell_fails_its_chapter_by_the_timeout(runner):
    write_chapter(runner, "book/part/hangs", "x = 1", "import time\ntime.sleep(60)")
    result = runner.execute("book/part/hangs", runner.kernel_env(1), cell_timeout=3)
    assert result["chapter"] == "book/part/hangs"
    assert "cell 1 ran past the per-cell timeout of 3 s" in result["error"]
    assert result["seconds"] < 40


def test_a_raising_cell_names_its_error(runner):
    write_chapter(runner, "book/part/raises", "raise ValueError('the phenomenon did not happen')")
    result = runner.execute("book/part/raises", runner.kernel_env(1), cell_timeout=30)
    assert "cell 0 raised" in result["error"] and "the phenomenon did not happen" in result["error"]


def test_no_caller_variable_reaches_the_book(runner, monkeypatch):
    """TDLAB_CHECKS=record (or any TDLAB_ variable) in the caller's shell never reaches a chapter's kernel."""
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    monkeypatch.setenv("TDLAB_SEED", "7")
    monkeypatch.setenv("TDLAB_NULLS", "1")
    env = runner.kernel_env(2)
    assert not {"TDLAB_CHECKS", "TDLAB_SEED", "TDLAB_NULLS"} & set(env)
    assert env["TDLAB_STATIC"] == "1" and env["OMP_NUM_THREADS"] == "2" and env["PATH"] == __import__("os").environ["PATH"]
    write_chapter(runner, "book/part/env", "import os\nassert 'TDLAB_CHECKS' not in os.environ, 'leaked'")
    assert runner.execute("book/part/env", env, cell_timeout=30)["error"] == ""


def test_projection_adds_the_fixed_part_to_n_chapters_at_the_average(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "tools" / "run_chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [{"notebook s": 60.0}, {"notebook s": 90.0}, {"notebook s": float("nan")}]   # an unfinished one is left out
    monkeypatch.setattr(module.records, "timing_table", lambda folder: rows)
    steps = tmp_path / "steps.tsv"
    steps.write_text("unit\t60\nbook\t300\nbrowser\t120\n")                   # 480 s, of which 150 s chapters
    assert module.projection(steps, tmp_path)
    out = capsys.readouterr().out
    # fixed part 330 s; at 22 chapters 330 + 22·75 = 1980 s = 33 min, at 30: 330 + 2250 = 2580 s = 43 min
    assert "projected at 22 chapters: 33 min" in out and "projected at 30 chapters: 43 min" in out
    steps.write_text("unit\t60\nbook\t1000\nbrowser\t120\n")                  # a far larger fixed part: over
    assert not module.projection(steps, tmp_path)
    assert "over budget" in capsys.readouterr().out
