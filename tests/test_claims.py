"""Claims: kinds, nulls, the committed seed tables and their rules, the vocabulary, the ledger; records
round-trip atomically."""
import json
import dataclasses
import math
from pathlib import Path

import nbformat
import pytest

from tdlab.book import chapter, claims, ledger, records, seed_tables, wording

CHAPTER = "01_part/02_chapter"


@pytest.fixture
def book(tmp_path, monkeypatch):
    """A book folder (TDLAB_BOOK), a records folder (TDLAB_RECORDS), seed 3, checks asserted."""
    root = tmp_path / "book"
    (root / "01_part").mkdir(parents=True)
    monkeypatch.setenv("TDLAB_BOOK", str(root))
    monkeypatch.setenv("TDLAB_RECORDS", str(tmp_path / "records"))
    monkeypatch.setenv("TDLAB_SEED", "3")
    for name in ("TDLAB_CHECKS", "TDLAB_NULLS", "TDLAB_SCALE"):
        monkeypatch.delenv(name, raising=False)
    records._open.clear()
    records.set_chapter(CHAPTER)
    claims.start()
    yield root
    records._open.clear()
    records.set_chapter("")
    claims.start()


def effect(value, null=0.0, **kw):
    """An effect claim "A beats B" with its control and null."""
    return claims.check("A ends above B", value, kind="effect", at_least=kw.pop("at_least", claims.SEEDS),
                        unit="points", control="B", control_value=0.5, null=lambda: null, **kw)


def write_table(root, *entries, seeds=seed_tables.SEEDS):
    seed_tables.save(seed_tables.Table(CHAPTER, "cpu", list(seeds), list(entries)), root)


def gain_entry(values=None, nulls="default", threshold=None, **kw):
    values = values or [0.20 + 0.01 * s for s in range(10)]
    nulls = [0.02 * ((-1) ** s) for s in range(10)] if nulls == "default" else nulls
    threshold = seed_tables.derive_threshold(values, nulls or [], ">=") if threshold is None else threshold
    fields = dict(words="A ends above B", kind="effect", direction=">=", unit="points", threshold=threshold,
                  rule=seed_tables.DERIVED, values=values, nulls=nulls, control="B", control_values=[0.5] * 10)
    fields.update(kw)
    return seed_tables.Entry(**fields)


# ----------------------------------------------------------------- stating a claim


def test_every_claim_declares_a_kind_and_each_kind_what_it_needs(book):
    with pytest.raises(TypeError):
        claims.check("no kind", 1.0, at_least=0.5)                                   # kind is required
    with pytest.raises(ValueError, match="kind must be one of"):
        claims.check("odd kind", 1.0, kind="pass", at_least=0.5)
    with pytest.raises(ValueError, match="name its control"):
        claims.check("no control", 1.0, kind="effect", at_least=0.5)
    with pytest.raises(ValueError, match="its null"):
        claims.check("no null", 1.0, kind="effect", at_least=0.5, control="B", control_value=0.1)
    with pytest.raises(ValueError, match="quote what the paper says"):
        claims.check("no paper", 1.0, kind="not reproduced", at_most=2.0)
    with pytest.raises(ValueError, match="only an effect claim"):
        claims.check("derived sanity", 1.0, kind="sanity", at_least=claims.SEEDS)
    with pytest.raises(ValueError, match="exactly one"):
        claims.check("both", 1.0, kind="sanity", at_least=0.0, at_most=2.0)


def test_the_null_is_measured_only_when_the_seed_runner_asks(book, monkeypatch):
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    called = []
    claims.check("A ends above B", 0.3, kind="effect", at_least=claims.SEEDS, unit="points", control="B",
                 control_value=0.5, null=lambda: called.append(1) or 0.01)
    assert not called
    monkeypatch.setenv("TDLAB_NULLS", "1")
    records.start()                                     # the seed runner's record starts with nulls on
    claim = claims.check("A ends above B", 0.3, kind="effect", at_least=claims.SEEDS, unit="points", control="B",
                         control_value=0.5, null=lambda: called.append(1) or 0.01)
    assert called == [1] and claim.null == 0.01
    assert records.read(records.path())["nulls"] is True


def test_a_derived_threshold_comes_from_the_committed_table(book, capsys):
    write_table(book, gain_entry())
    claim = effect(0.25)
    assert claim.threshold == pytest.approx(0.11) and claim.passed and claim.checked
    assert "from the seed table" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="claim failed: A ends above B"):
        effect(0.05)
    saved = records.read(records.path())
    assert saved["claims"][-1]["passed"] is False and saved["claims"][-1]["kind"] == "effect"
    assert saved["checks"] == "assert"


def test_without_a_table_at_this_scale_claims_are_shown_not_checked(book, monkeypatch, capsys):
    monkeypatch.setenv("TDLAB_SCALE", "paper")
    write_table(book, gain_entry())                     # a CPU table does not hold at paper scale
    claim = effect(-1.0)                                # would fail: not checked, not raised
    assert not claim.checked and "not checked" in capsys.readouterr().out
    assert records.read(records.path())["claims"][0]["passed"] is None
    chapter.finish()                                    # paper scale needs no table


# ----------------------------------------------------------------- the table is the manifest


def test_a_claim_the_table_does_not_list_fails_the_build(book):
    write_table(book, gain_entry())
    with pytest.raises(AssertionError, match="not in the seed table"):
        claims.check("a new claim", 1.0, kind="sanity", at_least=0.5)


def test_a_claim_the_table_lists_but_the_chapter_skips_fails_at_the_end(book):
    write_table(book, gain_entry(), seed_tables.Entry("fits", "sanity", ">=", "%", 1.0, "stated", [1.0] * 10))
    effect(0.25)
    with pytest.raises(AssertionError, match="did not check 1 claim.*“fits”"):
        chapter.finish()
    claims.check("fits", 1.0, kind="sanity", at_least=1.0, unit="%")
    chapter.finish()
    assert records.read(records.path())["complete"] is True


def test_a_changed_kind_or_stated_threshold_differs_from_the_table(book):
    write_table(book, seed_tables.Entry("fits", "sanity", ">=", "%", 1.0, "stated", [1.0] * 10))
    with pytest.raises(AssertionError, match="threshold 0.9 here, 1 in the seed table"):
        claims.check("fits", 1.0, kind="sanity", at_least=0.9, unit="%")
    with pytest.raises(AssertionError, match="kind 'not reproduced' here"):
        claims.check("fits", 1.0, kind="not reproduced", at_least=1.0, unit="%", paper="X")


def test_a_build_needs_a_table(book):
    claims.check("fits", 1.0, kind="sanity", at_least=1.0, unit="%")
    with pytest.raises(AssertionError, match="has no committed seed table"):
        chapter.finish()


def test_compare_names_missing_and_extra_claims():
    table = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [gain_entry()])
    checked = [{"words": "something else", "kind": "sanity", "direction": ">=", "threshold": 1.0}]
    found = seed_tables.compare(table, checked)
    assert "“something else” is checked but not in the seed table" in found
    assert "“A ends above B” is in the seed table but was not checked" in found


# ----------------------------------------------------------------- the threshold rule and the null rule


def test_the_derived_threshold_is_midway_between_weakest_seed_and_strongest_null():
    assert seed_tables.derive_threshold([0.3, 0.2, 0.4], [0.0, 0.02, -0.01], ">=") == pytest.approx(0.11)
    assert seed_tables.derive_threshold([0.2, 0.3], [0.5, 0.9], "<=") == pytest.approx(0.4)
    assert math.isnan(seed_tables.derive_threshold([0.1, 0.3], [0.05, 0.12], ">="))     # overlap: no threshold
    t = seed_tables.derive_threshold([0.1151], [0.1149], ">=")                            # rounding stays inside
    assert 0.1149 < t < 0.1151


def test_a_null_that_passes_breaks_the_rules():
    nulls = [0.0] * 9 + [0.15]
    entry = gain_entry(nulls=nulls, threshold=0.11, rule=seed_tables.STATED)
    found = seed_tables.problems(seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [entry]))
    assert any("its null passes the threshold on seed 9" in p for p in found)
    derived = gain_entry(values=[0.1] * 10, nulls=[0.12] * 10, threshold=math.nan)
    found = seed_tables.problems(seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [derived]))
    assert any("does not clear the strongest null" in p for p in found)


def test_the_rules_hold_for_a_good_table_and_name_every_breach():
    good = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [gain_entry()])
    assert seed_tables.problems(good) == []
    stale = gain_entry(threshold=0.05)
    no_null = gain_entry(nulls=None)
    failing = seed_tables.Entry("fits", "sanity", ">=", "%", 1.0, "stated", [1.0] * 9 + [0.99])
    unquoted = seed_tables.Entry("no gain", "not reproduced", "<=", "points", 0.02, "stated", [0.0] * 10)
    found = seed_tables.problems(seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS),
                                                   [stale, no_null, failing, unquoted]))
    found += seed_tables.problems(seed_tables.Table(CHAPTER, "cpu", list(range(5)), []))
    text = "\n".join(found)
    for needed in ("not [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]", "not the rule's", "without its null",
                   "fails its threshold on seed 9", "must quote what the paper says"):
        assert needed in text, needed


def test_a_table_round_trips_through_yaml(tmp_path):
    table = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS),
                              [gain_entry(), seed_tables.Entry("never", "sanity", ">=", "", 5.0, "stated",
                                                               [math.inf] * 10)])
    target = seed_tables.save(table, tmp_path)
    assert target == tmp_path / f"{CHAPTER}.seeds.yaml" and "make seeds" in target.read_text()
    back = seed_tables.load(CHAPTER, "cpu", tmp_path)
    assert back.entries[0].values == pytest.approx(table.entries[0].values)
    assert back.entries[1].values[0] == math.inf and back.entries[0].nulls == pytest.approx(table.entries[0].nulls)
    assert seed_tables.load(CHAPTER, "paper", tmp_path) is None


def test_the_seed_runner_builds_the_table_from_its_records(book, monkeypatch):
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    monkeypatch.setenv("TDLAB_NULLS", "1")
    for seed in seed_tables.SEEDS:
        monkeypatch.setenv("TDLAB_SEED", str(seed))
        records._open.clear()
        effect(0.2 + 0.01 * seed, null=0.02 * (-1) ** seed)
        claims.check("fits", 1.0, kind="sanity", at_least=1.0, unit="%")
        chapter.finish()
    found = [r for r in records.load_all(records.folder()) if r["chapter"] == CHAPTER]
    table = seed_tables.from_records(CHAPTER, "cpu", found)
    assert [e.words for e in table.entries] == ["A ends above B", "fits"]
    assert table.entries[0].threshold == pytest.approx(0.11) and table.entries[0].rule == "seeds"
    assert table.entries[0].nulls[1] == pytest.approx(-0.02) and table.entries[1].nulls is None
    assert seed_tables.problems(table) == []


def test_a_saved_table_keeps_the_rule_its_values_were_rounded_for(tmp_path):
    """The table stores four significant figures; the threshold is derived from the stored values, so
    the rule applied to the saved table gives the same threshold (0.0315 sits between two roundings)."""
    record = lambda seed, value, null: {"seed": seed, "claims": [{  # noqa: E731
        "words": "gain", "kind": "effect", "direction": ">=", "unit": "points", "threshold": math.nan,
        "threshold_rule": "seeds", "value": value, "null": null, "control": "B", "control_value": 0.5}]}
    found = [record(s, 0.0543549 + s, 0.00865) for s in seed_tables.SEEDS]
    table = seed_tables.from_records(CHAPTER, "cpu", found)
    seed_tables.save(table, tmp_path)
    assert seed_tables.problems(seed_tables.load(CHAPTER, "cpu", tmp_path)) == []


# ----------------------------------------------------------------- the vocabulary


def entry(words, threshold, direction=">=", kind="sanity", unit="", nulls=None, controls=None):
    return seed_tables.Entry(words, kind, direction, unit, threshold, "stated", [threshold] * 10, nulls,
                             "B" if controls else None, controls)


@pytest.mark.parametrize("words, threshold, direction, bad", [
    ("keeps most of the gain", 0.3, ">=", True),
    ("keeps most of the gain", 0.5, ">=", False),
    ("the gain is at most 2 points", 0.02, "<=", False),          # "at most" is a bound, not "most"
    ("almost the same", 0.3, ">=", False),
    ("nearly all corrupted examples", 0.85, ">=", True),
    ("nearly all corrupted examples", 0.95, ">=", False),
    ("closes at least half of the gap", 0.4, ">=", True),
    ("the peak comes in the first half of training", 750, "<=", False),
    ("a step costs less CPU time than M steps", 6.5, "<=", True),
    ("the wall time per step", 1.0, "<=", True),
])
def test_words_promise_thresholds(words, threshold, direction, bad):
    assert bool(wording.problems(entry(words, threshold, direction))) is bad


def test_numbers_in_the_words_are_the_threshold():
    assert not wording.problems(entry("within 2 points of cross-entropy", -0.02, unit="points"))
    assert wording.problems(entry("within 2 points of cross-entropy", -0.04, unit="points"))
    assert not wording.problems(entry("stays within a factor 3 of its start", 3.0, "<="))
    assert wording.problems(entry("stays within a factor 3 of its start", 5.0, "<="))


def test_comparatives_and_intensifiers_need_room_beyond_the_control():
    spread = [0.40, 0.50, 0.60, 0.45, 0.55, 0.42, 0.58, 0.47, 0.53, 0.50]     # sd ≈ 6.5 points
    nulls = [0.01, -0.01] * 5
    small = entry("A ends above B", 0.03, kind="effect", unit="points", nulls=nulls, controls=spread)
    large = entry("A ends above B", 0.10, kind="effect", unit="points", nulls=nulls, controls=spread)
    assert any("seed-to-seed spread" in p for p in wording.problems(small))
    assert not wording.problems(large)
    far = entry("A ends far above B", 0.015, kind="effect", unit="points", nulls=nulls)
    assert any("twice" in p for p in wording.problems(far))
    assert not wording.problems(entry("A ends far above B", 0.05, kind="effect", unit="points", nulls=nulls))


# ----------------------------------------------------------------- records, the ledger


def test_records_round_trip_and_complete_only_at_the_end(book):
    write_table(book, seed_tables.Entry("a", "sanity", ">=", "%", 0.25, "stated", [0.5] * 10))
    claims.check("a", 0.5, kind="sanity", at_least=0.25, unit="%")
    records.add("timings", {"label": "default run", "seconds": 12.5, "members": 2, "steps": 100})
    target = records.path()
    assert target == Path(records.folder()) / CHAPTER / "seed3-cpu.json"
    saved = records.read(target)
    assert saved["complete"] is False and saved["seed"] == 3
    chapter.finish()
    saved = records.read(target)
    assert saved["complete"] is True and saved["claims"][0]["kind"] == "sanity"
    timing = records.timing_table(Path(records.folder()))[0]
    assert timing["default run s"] == 12.5 and timing["complete"]
    assert timing["notebook s"] == timing["setup to end s"] and timing["over budget"] == ""
    records.note_executed(Path(records.folder()), CHAPTER, 130.0, seed=3)          # the runner's wall time wins
    timing = records.timing_table(Path(records.folder()))[0]
    assert timing["notebook s"] == 130.0 and timing["over budget"] == "notebook > 120 s"


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    records.write_atomic(target, {"claims": [1]})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", broken)
    with pytest.raises(OSError):
        records.write_atomic(target, {"claims": [1, 2]})
    monkeypatch.undo()
    assert records.read(target) == {"claims": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]          # no temporary file left behind


def test_nothing_is_written_without_a_records_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("TDLAB_RECORDS", raising=False)
    monkeypatch.setenv("TDLAB_BOOK", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    records._open.clear()
    claims.check("fine", 1.0, kind="sanity", at_least=0.5)
    assert list(tmp_path.iterdir()) == []


def build_record(book, monkeypatch, checks=None):
    write_table(book, gain_entry(), seed_tables.Entry("fits", "sanity", ">=", "%", 1.0, "stated", [1.0] * 10),
                seed_tables.Entry("no top-k gain", "not reproduced", "<=", "points", 0.01, "stated", [0.0] * 10,
                                  paper="top-k accuracy rises by 2 points"))
    if checks:
        monkeypatch.setenv("TDLAB_CHECKS", checks)
    effect(0.25)
    claims.check("fits", 1.0, kind="sanity", at_least=1.0, unit="%")
    claims.check("no top-k gain", 0.0, kind="not reproduced", at_most=0.01, unit="points",
                 paper="top-k accuracy rises by 2 points")
    chapter.finish()


def test_the_ledger_groups_by_chapter_with_kinds_and_counts(book, monkeypatch):
    build_record(book, monkeypatch)
    folder = Path(records.folder())
    assert ledger.verify(folder, [CHAPTER], book) == []
    table = ledger.collect(folder, [CHAPTER], strict=True, root=book)
    assert list(table.kind) == ["effect", "sanity", "not reproduced"]
    page = ledger.page_html(table, book)
    assert f'href="{CHAPTER}.html#check-the-phenomenon-happened"' in page
    assert "reproduced 1 of 2, not reproduced 1, beyond the paper 0, sanity 1" in page and "the paper: top-k accuracy" in page
    assert page.count('<tr class="tdlab-') == 4                       # a chapter row and one line per claim
    assert "1 of 2 reproduced, 1 not reproduced" in ledger.summary(table, [CHAPTER], book)
    status = ledger.status_markdown(CHAPTER, seed_tables.load(CHAPTER, "cpu", book))
    assert "**1 of 2** of the paper's claims reproduced" in status and "*no top-k gain*" in status
    assert "1 of 2" in ledger.totals_markdown([CHAPTER], book)


def test_the_books_own_tests_are_counted_apart_from_the_papers_claims(book, monkeypatch):
    """scope="book": an effect claim on a setting the paper never ran is not one of the paper's claims; it
    is stored in the table, a changed scope differs from it, and only an effect claim can have it."""
    beyond = gain_entry(words="A fits fewer wrong labels than B", scope=seed_tables.BOOK)
    table = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [gain_entry(), beyond])
    assert seed_tables.problems(table) == []
    assert table.counts() == {"effect": 1, "not reproduced": 0, "sanity": 0, seed_tables.BEYOND: 1}
    status = ledger.status_markdown(CHAPTER, table)
    assert "**1 of 1** of the paper's claims" in status and "this book's own tests, on a setting" in status
    assert "*A fits fewer wrong labels than B* (holds)" in status
    seed_tables.save(table, book)
    text = (book / f"{CHAPTER}.seeds.yaml").read_text()
    assert text.count("scope: book") == 1 and "scope: paper" not in text          # the default is not written
    assert seed_tables.load(CHAPTER, "cpu", book).entries[1].scope == seed_tables.BOOK
    effect(0.3)
    with pytest.raises(AssertionError, match="scope 'paper' here, 'book' in the seed table"):
        claims.check("A fits fewer wrong labels than B", 0.3, kind="effect", at_least=claims.SEEDS,
                     unit="points", control="B", control_value=0.5, null=lambda: 0.0)
    line = claims.check("A fits fewer wrong labels than B", 0.3, kind="effect", at_least=claims.SEEDS,
                        unit="points", control="B", control_value=0.5, null=lambda: 0.0, scope="book").line()
    assert line.startswith("✓ effect (beyond the paper) ·")
    with pytest.raises(ValueError, match="a sanity check is no one's claim"):
        claims.check("fits", 1.0, kind="sanity", at_least=1.0, unit="%", scope="book")
    odd = seed_tables.Entry("fits", "sanity", ">=", "%", 1.0, "stated", [1.0] * 10, scope=seed_tables.BOOK)
    found = seed_tables.problems(seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [odd]))
    assert any("a sanity check is no one's claim" in p for p in found)
    # the paper's claim carried to a setting it did not run, and not found there: counted apart too
    carried = seed_tables.Entry("under noise, A calibrates no better than C", "not reproduced", "<=", "points", 0.0,
                                "stated", [-0.01] * 10, paper="A calibrates better than C (on clean labels)",
                                scope=seed_tables.BOOK)
    table = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [gain_entry(), carried])
    assert seed_tables.problems(table) == [] and table.counts()["not reproduced"] == 0
    assert table.counts()[seed_tables.BEYOND] == 1
    status = ledger.status_markdown(CHAPTER, table)
    assert "none found not to reproduce" in status and "carried over, not found: A calibrates better" in status


def test_a_shown_statistic_is_recorded_on_the_ten_seeds_never_checked(book, monkeypatch):
    """claims.shown: a comparison no threshold decides is recorded (value and null) so the table holds its
    ten-seed range; it never fails, the table must list it, the ledger counts it as no claim."""
    monkeypatch.setenv("TDLAB_CHECKS", "record")
    monkeypatch.setenv("TDLAB_NULLS", "1")
    for seed in range(10):
        monkeypatch.setenv("TDLAB_SEED", str(seed))
        records._open.clear()
        claims.start()
        effect(0.3)
        line = claims.shown("A − C, accuracy", 0.01 * (seed - 4), unit="points", control="C",
                            control_value=0.5, null=lambda: 0.02).line()
        assert line.startswith("· shown · A − C, accuracy") and "not checked" in line and "[null: +2.0 points]" in line
        chapter.finish()
    found = [r for r in records.load_all(records.folder()) if r["chapter"] == CHAPTER]
    table = seed_tables.from_records(CHAPTER, "cpu", found)
    shown = table.find("A − C, accuracy")
    assert shown.kind == seed_tables.SHOWN and shown.values[0] == pytest.approx(-0.04) and shown.nulls == [0.02] * 10
    assert seed_tables.problems(table) == [] and table.counts() == {"effect": 1, "not reproduced": 0, "sanity": 0,
                                                                    seed_tables.BEYOND: 0}
    seed_tables.save(table, book)
    back = seed_tables.load(CHAPTER, "cpu", book)
    assert math.isnan(back.find("A − C, accuracy").threshold)
    status = ledger.status_markdown(CHAPTER, back)
    assert "*A − C, accuracy*: -4.0 points … +5.0 points" in status
    assert "(null, C in the method's place: +2.0 points … +2.0 points)" in status
    assert "every seed lies beyond every null draw" not in status          # -4 … +5 against +2: overlaps
    apart = dataclasses.replace(back, entries=[dataclasses.replace(e, nulls=[-0.1] * 10) if e.kind == seed_tables.SHOWN
                                               else e for e in back.entries])
    assert "every seed lies beyond every null draw" in ledger.status_markdown(CHAPTER, apart)
    assert "| shown | A − C, accuracy | — |" in ledger.seed_report(back)
    # a build: the table lists it, it never fails, and a build that drops it fails at the end
    monkeypatch.delenv("TDLAB_CHECKS")
    monkeypatch.delenv("TDLAB_NULLS")
    records._open.clear()
    claims.start()
    effect(0.3)
    record = claims.shown("A − C, accuracy", -0.5, unit="points", control="C", control_value=0.5,
                          null=lambda: 0.0).to_record()
    assert record["passed"] is None and record["null"] is None
    with pytest.raises(AssertionError, match="not in the seed table"):
        claims.shown("something unlisted", 0.1, unit="points")


def test_a_chapter_with_only_sanity_rows_says_no_claim_of_the_paper_is_decided():
    entry = seed_tables.Entry("its weights stay within the bound", "sanity", "<=", "", 1.5, "stated",
                              [1.2] * 10, None, None, None, None)
    status = ledger.status_markdown(CHAPTER, seed_tables.Table(CHAPTER, "cpu", list(range(10)), [entry]))
    assert "none of the paper's claims is decided" in status and "0 of 0" not in status
    assert status.startswith("**Checked on every build**") and "1 sanity check of the setup" in status


def test_a_recorded_failure_or_a_record_mode_build_is_never_published(book, monkeypatch):
    build_record(book, monkeypatch, checks="record")
    found = ledger.verify(Path(records.folder()), [CHAPTER, "03_part/missing"], book)
    assert any("TDLAB_CHECKS='record'" in p for p in found)
    assert any("03_part/missing: no complete claims record" in p for p in found)
    with pytest.raises(RuntimeError, match="cannot be published"):
        ledger.collect(Path(records.folder()), [CHAPTER], strict=True, root=book)
    record = records.read(records.path())
    record["checks"], record["claims"][0]["passed"] = "assert", False
    records.write_atomic(records.path(), record)
    assert ledger.verify(Path(records.folder()), [CHAPTER], book) == [f"{CHAPTER}: claim failed: “A ends above B”"]


def test_toc_chapters(tmp_path):
    toc = tmp_path / "toc.yml"
    toc.write_text("root: book/intro\nparts:\n  - caption: A\n    chapters:\n      - file: book/01_part/02_chapter\n"
                   "      - file: book/ledger\n")
    assert ledger.toc_chapters(toc) == ["01_part/02_chapter"]


# ----------------------------------------------------------------- the book's own chapters and tables

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ledger.toc_chapters(ROOT / "_toc.yml")


def test_every_chapter_names_itself_and_states_claims_through_the_helper():
    for name in CHAPTERS:
        nb = nbformat.read(ROOT / "book" / f"{name}.ipynb", as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert f'chapter.setup("{name}")' in code, f"{name} must call chapter.setup({name!r})"
        assert f'chapter.status("{name}")' in code, f"{name} must show its status line"
        assert "assert " not in code, f"{name}: state checks with claims.check, not a bare assert"
        assert "claims.check(" in code and "chapter.finish()" in nb.cells[-1].source, name
        assert "TDLAB_CHECKS" not in code, f"{name} must not set how checks run"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_has_a_committed_seed_table_that_keeps_the_rules(name):
    table = seed_tables.load(name, "cpu", ROOT / "book")
    assert table is not None, f"{name}: no committed seed table; run `make seeds CHAPTER={name}`"
    assert seed_tables.problems(table) == []


def test_seed_count_counts_the_committed_row(book):
    assert claims.seed_count("A ends above B") == "—"                                # no table yet
    write_table(book, gain_entry(values=[-0.1, 0.0, 0.3, 0.6, 0.2, -0.2, 0.7, 0.1, 0.05, 0.9]))
    assert claims.seed_count("A ends") == "7 of 10"                                  # > 0, not ≥ 0
    assert claims.seed_count("A ends", bound=0.5) == "3 of 10"
    assert claims.seed_count("A ends", bound=0.5, below=True) == "7 of 10"
    assert claims.seed_count("A ends", below=True) == "2 of 10"
    assert claims.seed_count("no such row") == "—"


def test_seed_values_and_span_read_the_committed_row(book):
    assert claims.seed_values("A ends above B") is None and claims.seed_span("A ends above B") is None   # no table
    values = [-0.0002, 0.0, 0.031, 0.006, 0.02, -0.013, 0.007, 0.001, 0.005, 0.009]
    write_table(book, gain_entry(values=values), gain_entry(words="A ends", nulls=None, threshold=0.0,
                                                           rule=seed_tables.STATED))
    assert claims.seed_values("A ends above B") == pytest.approx(values)
    assert claims.seed_values("A ends") == pytest.approx([0.20 + 0.01 * s for s in range(10)])   # the exact row first
    assert claims.seed_values("A ends", nulls=True) is None                                      # a row without nulls
    assert claims.seed_values("A ends above", nulls=True) == pytest.approx([0.02 * (-1) ** s for s in range(10)])
    assert claims.seed_values("no such row") is None
    assert claims.seed_span("A ends above B", scale=100, signed=True) == "-1.30 … +3.10"
    assert claims.seed_span("A ends above B", scale=100, digits=1) == "-1.3 … 3.1"
    # a value that rounds to zero prints without its sign
    write_table(book, gain_entry(values=[-0.00002] + [0.001] * 9))
    assert claims.seed_span("A ends above B", scale=100, signed=True) == "+0.00 … +0.10"


def test_a_value_that_rounds_to_zero_is_shown_without_a_minus():
    points = claims.Claim("a gap", -0.0002, 0.0, ">=", unit="points")
    assert points.show(-0.0002) == "+0.0 points" and points.show(-0.031) == "-3.1 points"
    assert points.show(-0.1) == "-10.0 points" and points.show(0.0004) == "+0.0 points"
    share = claims.Claim("a share", 0.5, 0.0, ">=", unit="%")
    assert share.show(-0.00001) == "0.0%" and share.show(-0.1) == "-10.0%" and share.show(0.123) == "12.3%"


# ----------------------------------------------------------------- a build's values against the table's


def test_a_checks_values_are_compared_with_the_tables_at_the_same_seed():
    values = [0.20 + 0.01 * s for s in range(10)]
    shown = seed_tables.Entry("a share", "shown", ">=", "", math.nan, "stated", [math.nan] + [0.5] * 9)
    table = seed_tables.Table(CHAPTER, "cpu", list(seed_tables.SEEDS), [gain_entry(values=values), shown])
    same = {"seed": 3, "claims": [{"words": "A ends above B", "value": 0.23 + 2e-6, "control_value": 0.5},
                                  {"words": "not in the table", "value": 9.0}]}
    assert seed_tables.differences(table, same) == {"A ends above B": 0.0}     # equal once rounded as stored
    assert seed_tables.drift(table, same) == []
    moved = {"seed": 3, "claims": [{"words": "A ends above B", "value": 0.2512, "control_value": 0.4981}]}
    assert seed_tables.differences(table, moved)["A ends above B"] == pytest.approx(0.0212)   # the larger gap
    assert seed_tables.drift(table, moved) == ["“A ends above B”: seed 3 differs from the table's seed 3 by 0.0212"]
    # the control's value moved only: it counts too; a rounding flip of the 4th digit does not
    control = {"seed": 3, "claims": [{"words": "A ends above B", "value": 0.23, "control_value": 0.51}]}
    assert seed_tables.differences(table, control)["A ends above B"] == pytest.approx(0.01)
    flip = {"seed": 3, "claims": [{"words": "A ends above B", "value": 0.2301, "control_value": 0.5}]}
    assert seed_tables.drift(table, flip) == []
    # NaN on both sides agrees; a number against NaN is reported
    assert seed_tables.differences(table, {"seed": 0, "claims": [{"words": "a share", "value": math.nan}]}) == \
        {"a share": 0.0}
    gap = seed_tables.differences(table, {"seed": 1, "claims": [{"words": "a share", "value": math.nan}]})
    assert math.isnan(gap["a share"])
    assert seed_tables.drift(table, {"seed": 1, "claims": [{"words": "a share", "value": math.nan}]}) == \
        ["“a share”: seed 1 differs from the table's seed 1 by a missing number"]
    assert seed_tables.differences(table, {"seed": 42, "claims": same["claims"]}) == {}   # not a column


def test_the_check_reports_drift_from_the_table_without_failing(book):
    import importlib.util
    tool = Path(__file__).parents[1] / "tools" / "run_chapters.py"
    spec = importlib.util.spec_from_file_location("run_chapters", tool)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    write_table(book, gain_entry())
    folder = book.parent / "records"
    (folder / CHAPTER).mkdir(parents=True)
    record = {"chapter": CHAPTER, "seed": 0, "scale": "cpu", "complete": True,
              "claims": [{"words": "A ends above B", "value": 0.25, "control_value": 0.5}]}
    (folder / CHAPTER / "seed0-cpu.json").write_text(json.dumps(record))
    runner.ROOT = book.parent      # the runner reads the table from ROOT / "book"
    lines = runner.against_table(CHAPTER, folder)
    assert lines[0].startswith("seed 0 against the seed table's seed 0: 0 of 1 claims equal")
    assert "warning, not a failure" in lines[1] and "by 0.05" in lines[1]
