"""Claims: a failing claim raises with its words; records round-trip, atomically; the ledger reads them."""
import json
import math

from pathlib import Path

import nbformat
import pytest

from tdlab import chapter, claims, records


@pytest.fixture
def record_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TDLAB_RECORDS", str(tmp_path))
    monkeypatch.setenv("TDLAB_SEED", "3")
    monkeypatch.delenv("TDLAB_CHECKS", raising=False)
    records._open.clear()
    records.set_chapter("01_part/02_chapter")
    yield tmp_path
    records._open.clear()
    records.set_chapter("")


def test_a_failing_claim_raises_with_its_words(record_dir):
    with pytest.raises(AssertionError, match="ELR ends above cross-entropy"):
        claims.check("ELR ends above cross-entropy", 0.04, at_least=0.10, unit="points")
    saved = records.read(records.path())
    assert saved["claims"][0]["passed"] is False and saved["claims"][0]["words"] == "ELR ends above cross-entropy"


def test_record_mode_records_a_failure_without_raising(record_dir, monkeypatch):
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    claim = claims.check("too small", 1.0, at_least=2.0)
    assert not claim.passed and claim.margin == -1.0 and claim.relative_margin == -0.5


def test_margins_in_both_directions():
    high = claims.Claim("x", 0.15, 0.10, ">=")
    low = claims.Claim("y", 0.05, 0.25, "<=")
    assert high.margin == pytest.approx(0.05) and high.relative_margin == pytest.approx(0.5) and high.passed
    assert low.margin == pytest.approx(0.20) and low.passed
    assert not claims.Claim("nan", math.nan, 0.1, ">=").passed       # not measured: fails
    assert claims.Claim("never", math.inf, 50, ">=").passed            # never reached: a number like any other
    with pytest.raises(ValueError, match="exactly one"):
        claims.check("both", 1.0, at_least=0.0, at_most=2.0)


def test_records_round_trip_and_complete_only_at_the_end(record_dir):
    claims.check("a", 0.5, at_least=0.25, unit="%", control="b", control_value=0.2)
    records.add("timings", {"label": "default run", "seconds": 12.5, "members": 2, "steps": 100})
    target = records.path()
    assert target == record_dir / "01_part/02_chapter" / "seed3-cpu.json"
    saved = records.read(target)
    assert saved["complete"] is False and saved["seed"] == 3
    chapter.finish()
    saved = records.read(target)
    assert saved["complete"] is True
    assert saved["claims"][0]["control_value"] == 0.2 and saved["claims"][0]["relative_margin"] == 1.0
    timing = records.timing_table(record_dir)[0]
    assert timing["default run s"] == 12.5 and timing["complete"]
    assert timing["notebook s"] == timing["setup to end s"] and timing["over budget"] == ""
    records.note_executed(record_dir, "01_part/02_chapter", 130.0, seed=3)        # the runner's wall time wins
    timing = records.timing_table(record_dir)[0]
    assert timing["notebook s"] == 130.0 and timing["over budget"] == "notebook > 120 s"
    records.note_executed(record_dir, "01_part/nothing_here", 1.0)                # no record: nothing written
    assert not (record_dir / "01_part/nothing_here").exists()


def test_an_interrupted_write_leaves_the_old_file(record_dir, monkeypatch):
    target = record_dir / "x.json"
    records.write_atomic(target, {"claims": [1]})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError):
        records.write_atomic(target, {"claims": [1, 2]})
    monkeypatch.undo()
    assert records.read(target) == {"claims": [1]}
    assert [p.name for p in record_dir.iterdir()] == ["x.json"]          # no temporary file left behind


def test_nothing_is_written_without_a_records_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TDLAB_RECORDS", raising=False)
    monkeypatch.chdir(tmp_path)
    records._open.clear()
    claims.check("fine", 1.0, at_least=0.5)
    assert list(tmp_path.iterdir()) == []


def test_ledger_lists_every_claim_and_is_strict_about_missing_chapters(record_dir, tmp_path):
    claims.check("first", 0.3, at_least=0.2, unit="points")
    claims.check("second", 0.1, at_most=0.25, unit="%", section="other-section")
    chapter.finish()
    table = claims.ledger(record_dir, ["01_part/02_chapter"])
    assert list(table.claim) == ["first", "second"] and set(table.result) == {"pass"}
    assert table.loc[0, "margin / threshold"] == pytest.approx(0.5)
    html = claims.ledger_html(table)
    assert 'href="01_part/02_chapter.html#other-section"' in html
    assert "2 of 2 claims passed" in claims.ledger_summary(table)
    with pytest.raises(RuntimeError, match="no complete claims record"):
        claims.ledger(record_dir, ["01_part/02_chapter", "03_part/missing"], strict=True)
    toc = tmp_path / "toc.yml"
    toc.write_text("root: book/intro\nparts:\n  - caption: A\n    chapters:\n      - file: book/01_part/02_chapter\n")
    assert claims.toc_chapters(toc) == ["01_part/02_chapter"]


def test_seed_table_lays_claims_against_seeds(record_dir, monkeypatch):
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    for seed, value in ((0, 0.3), (1, 0.15)):
        monkeypatch.setenv("TDLAB_SEED", str(seed))
        records._open.clear()
        claims.check("gain", value, at_least=0.2, unit="points")
        chapter.finish()
    table = claims.seed_table(record_dir, "01_part/02_chapter")
    assert list(table.columns) == [0, 1]
    row = table.iloc[0]
    assert row[0].startswith("+30.0 points (50%)") and row[1].endswith("✗")


def test_every_chapter_names_itself_and_states_claims_through_the_helper():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "book").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        name = str(path.relative_to(root / "book").with_suffix(""))
        assert f'chapter.setup("{name}")' in code, f"{path.name} must call chapter.setup({name!r})"
        assert "assert " not in code, f"{path.name}: state checks with claims.check, not a bare assert"
        assert "claims.check(" in code and "chapter.finish()" in nb.cells[-1].source, path.name
