"""Every chapter of the book has a review record (issue 27, item 7): ``reviews/<part>/<chapter>.md``
starting with the three lines ``reviews/README.md`` describes, written by a reviewer who did not write
the chapter. The test reads the record's form, not its judgement: a ✗ is a legal verdict (the chapter
says so), a missing record is not."""
from pathlib import Path

import pytest

from tdlab.book import ledger

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ledger.toc_chapters(ROOT / "_toc.yml")
VERDICTS = ("✓", "◐", "✗")


def header(text: str) -> dict[str, str]:
    """The record's first three lines as {"Verdict": ..., "Scope": ..., "Reviewed": ...}."""
    fields = {}
    for line in text.splitlines()[:3]:
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def test_header_reads_the_three_lines():
    fields = header("Verdict: ◐\nScope: the checks\nReviewed: 2026-12-06, abc1234\n\n1. ...")
    assert fields == {"Verdict": "◐", "Scope": "the checks", "Reviewed": "2026-12-06, abc1234"}


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_chapter_has_a_review_record(name):
    record = ROOT / "reviews" / f"{name}.md"
    assert record.exists(), f"{name}: no review record {record.relative_to(ROOT)} (see reviews/README.md)"
    fields = header(record.read_text())
    assert set(fields) == {"Verdict", "Scope", "Reviewed"}, f"{record}: starts with {sorted(fields)}"
    assert fields["Verdict"][:1] in VERDICTS, f"{record}: verdict {fields['Verdict']!r} is none of {VERDICTS}"
    assert fields["Scope"], f"{record}: says nothing of what was reviewed"
    assert fields["Reviewed"][:4].isdigit(), f"{record}: 'Reviewed:' should start with the date"
    body = record.read_text().split("\n", 3)[-1]
    assert body.strip(), f"{record}: has no findings (write 'none found' if so)"
