"""The introduction and the README: every command works as written, and no statement about speed is typed
(issue 35 item 5) — the chapters' times come from the build's records (:func:`tdlab.book.ledger.times_markdown`)."""
import json
import re
import statistics
import sys
from pathlib import Path

import nbformat
import pytest

from tdlab.book import ledger, records

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent          # the environment the README's install makes (.venv/bin)


def intro_markdown() -> str:
    nb = nbformat.read(ROOT / "book" / "intro.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def documents():
    return {"README.md": (ROOT / "README.md").read_text(), "book/intro.ipynb": intro_markdown()}


def shell_lines(text: str) -> list[str]:
    """The command lines of a document: its ```bash blocks and its inline `make …`/`.venv/bin/…` code."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += [line.split("#")[0].strip() for line in block.splitlines()]
    lines += re.findall(r"`((?:make|\.venv/bin/)[^`]*)`", text)
    return [line for line in lines if line]


def make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text()
    found = set()
    for line in makefile.splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if match and not line.startswith((".PHONY", "\t")):
            found |= set(match.group(1).split())
    return found


@pytest.mark.parametrize("name", ["README.md", "book/intro.ipynb"])
def test_every_make_target_and_venv_program_named_exists(name):
    targets, lines = make_targets(), shell_lines(documents()[name])
    assert lines, f"{name}: no commands found"
    for line in lines:
        words = line.split()
        if words[0] == "make":
            named = [w for w in words[1:] if "=" not in w]
            missing = [t for t in named if t not in targets]
            assert not missing, f"{name}: `{line}` names make target(s) {missing} the Makefile lacks"
        elif words[0].startswith(".venv/bin/"):
            program = words[0].removeprefix(".venv/bin/")
            assert (BIN / program).exists(), f"{name}: `{line}`: {program} is not installed in {BIN}"
            if program == "jupyter":        # `jupyter lab` runs the program jupyter-lab
                assert (BIN / f"jupyter-{words[1]}").exists(), f"{name}: `{line}`: jupyter-{words[1]} is not installed"
            if program == "pytest" and "--nbval-lax" in words:
                import nbval  # noqa: F401  (the option comes from the nbval plugin)


@pytest.mark.parametrize("name", ["README.md", "book/intro.ipynb"])
def test_no_typed_statement_of_speed(name):
    """Times are printed from the build's records, never typed: no "a minute and a half", "under two
    minutes", "90 s per chapter" in the prose (settings such as CELL_TIMEOUT's 300 s are not speeds)."""
    text = documents()[name]
    speed = re.compile(r"\b(?:about|under|in|within|takes?|runs? in)\s+(?:a|one|two|three|\d+(?:\.\d+)?)\s+"
                       r"(?:and a half\s+)?(?:minutes?|seconds?|s|min)\b|minute and a half", re.I)
    assert not speed.findall(text), f"{name} types a speed: {speed.findall(text)}"


def fake_record(root: Path, chapter: str, seconds: float, threads: int = 2) -> None:
    target = records.path(chapter, seed=0, scale="cpu", root=root)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"chapter": chapter, "seed": 0, "scale": "cpu", "threads": threads,
                                  "complete": True, "started": 0.0, "finished": seconds - 1.0,
                                  "timings": [], "claims": [], "executed_seconds": seconds}))


def test_times_come_from_the_build_records(tmp_path):
    chapters = ["a/one", "a/two", "b/three"]
    seconds = {"a/one": 40.0, "a/two": 130.0, "b/three": 70.0}
    for chapter, s in seconds.items():
        fake_record(tmp_path, chapter, s)
    text = ledger.times_markdown(tmp_path, chapters)
    assert f"a median of {statistics.median(seconds.values()):.0f} s" in text
    assert "from 40 s to 130 s" in text and "3 of 3 chapters" in text and "2 torch threads each" in text
    assert f"budget of {records.NOTEBOOK_BUDGET_S} s" in text and "the longest: *two*" in text
    # a chapter not in the list is not counted; without records the text says where times come from
    assert "1 of 2 chapters" in ledger.times_markdown(tmp_path, ["a/one", "c/missing"])
    assert "measured when the book is built" in ledger.times_markdown(None, chapters)
    assert "measured when the book is built" in ledger.times_markdown(tmp_path / "nothing", chapters)
