"""One way to state a claim of the book, check it on the measured run, and record it.

A chapter's check cell states each claim in words with the number it measured, the
threshold that number must reach and, where the claim is a comparison, the control it is
compared with::

    claims.check("ELR ends above cross-entropy", elr_final - ce_final, at_least=0.10,
                 unit="points", control="cross-entropy: same noisy labels, initialisation, batches",
                 control_value=ce_final)

:func:`check` prints one line — ✓ or ✗, the claim, the value, the threshold and the margin —
records the claim in the chapter's records (:mod:`tdlab.records`, read by the book's claims
ledger), and raises an ``AssertionError`` with the claim's words when it fails. With
``TDLAB_CHECKS=record`` (what ``make seeds`` sets) a failing claim is recorded and printed but
does not raise, so one run measures every claim of a chapter on a seed where one fails.

:func:`ledger` gathers the claims of a build (every chapter, every seed found) for the book's
ledger page; :func:`seed_table` lays one chapter's claims out against the seeds.

The *margin* is how far the value lies beyond the threshold, in the passing direction
(negative when the claim fails); as a fraction of the threshold it says how close the claim
came to failing: 0.5 means the value cleared the threshold by half the threshold.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import yaml

from tdlab import records

UNITS = ("%", "points", "")


@dataclass
class Claim:
    """A checked claim: ``value`` must be ≥ ``threshold`` (``direction=">="``) or ≤ it (``"<="``)."""

    words: str
    value: float
    threshold: float
    direction: str
    unit: str = ""
    control: str | None = None
    control_value: float | None = None
    section: str = "check-the-phenomenon-happened"

    @property
    def margin(self) -> float:
        """How far the value lies beyond the threshold in the passing direction (< 0: it fails)."""
        if math.isnan(self.value):
            return math.nan
        return self.value - self.threshold if self.direction == ">=" else self.threshold - self.value

    @property
    def relative_margin(self) -> float:
        """The margin as a fraction of the threshold (NaN for a threshold of 0)."""
        return self.margin / abs(self.threshold) if self.threshold else math.nan

    @property
    def passed(self) -> bool:
        return not math.isnan(self.margin) and self.margin >= 0

    def show(self, number: float | None) -> str:
        """A number in the claim's unit."""
        if number is None or (isinstance(number, float) and math.isnan(number)):
            return "n/a"
        if math.isinf(number):
            return "never" if number > 0 else "−∞"
        if self.unit == "%":
            return f"{number:.1%}"
        if self.unit == "points":
            return f"{number * 100:+.1f} points"
        return f"{number:.4g}"

    def line(self) -> str:
        mark = "✓" if self.passed else "✗"
        relative = "" if math.isnan(self.relative_margin) else f", {self.relative_margin:.0%} of the threshold"
        control = ""
        if self.control:
            level = "" if self.control_value is None else (
                f", {self.control_value:.1%}" if self.unit in ("%", "points") else f", {self.control_value:.4g}")
            control = f" (control: {self.control}{level})"
        sign = "≥" if self.direction == ">=" else "≤"
        return (f"{mark} {self.words}: {self.show(self.value)} {sign} {self.show(self.threshold)}; "
                f"margin {self.show(self.margin)}{relative}{control}")

    def to_record(self) -> dict:
        out = asdict(self)
        out.update(margin=self.margin, relative_margin=self.relative_margin, passed=self.passed)
        return out


def _soft() -> bool:
    return os.environ.get("TDLAB_CHECKS", "").strip().lower() == "record"


def check(words: str, value: float, *, at_least: float | None = None, at_most: float | None = None,
          unit: str = "", control: str | None = None, control_value: float | None = None,
          section: str = "check-the-phenomenon-happened") -> Claim:
    """Check that ``value`` is at least ``at_least`` (or at most ``at_most``); print, record, and
    raise an ``AssertionError`` naming the claim if it is not.

    - ``words``: the claim, as the chapter would say it.
    - ``unit``: how to show the numbers: ``"%"`` (a fraction shown as a percentage), ``"points"``
      (a difference of fractions, in percentage points) or ``""`` (as it is).
    - ``control`` / ``control_value``: what the claim compares with, and its measured value.
    - ``section``: the anchor of the chapter's check section (the ledger links to it).

    A value that is NaN (not measured) fails; +inf (a level never reached) is a number like any other.
    """
    if (at_least is None) == (at_most is None):
        raise ValueError(f"claim {words!r}: give exactly one of at_least= and at_most=")
    if unit not in UNITS:
        raise ValueError(f"claim {words!r}: unit must be one of {UNITS}, got {unit!r}")
    claim = Claim(words, float(value), float(at_least if at_most is None else at_most),
                  ">=" if at_most is None else "<=", unit, control,
                  None if control_value is None else float(control_value), section)
    print(claim.line())
    records.add("claims", claim.to_record())
    if not claim.passed and not _soft():
        raise AssertionError(f"claim failed: {words} — measured {claim.show(claim.value)}, needed "
                             f"{claim.direction} {claim.show(claim.threshold)}")
    return claim


# ----------------------------------------------------------------- the ledger: every claim of a build


def toc_chapters(toc_path: str | Path) -> list[str]:
    """The chapters of the book's table of contents (``_toc.yml``), as paths under ``book/``
    (``<part>/<chapter>``; pages directly under ``book/``, such as the ledger itself, are not chapters)."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    files = [entry["file"].removeprefix("book/") for part in toc.get("parts", []) for entry in part["chapters"]]
    return [f for f in files if "/" in f]


def ledger(folder: Path | None, chapters: list[str], strict: bool = False) -> pd.DataFrame:
    """One row per claim recorded under ``folder`` for each of ``chapters`` (all seeds found).

    With ``strict``, a chapter without a complete record raises: the build that made the ledger
    did not execute it to its end, so the ledger would be silently short.
    """
    found = records.load_all(folder) if folder is not None and Path(folder).exists() else []
    rows, missing = [], []
    for chapter in chapters:
        mine = [r for r in found if r.get("chapter") == chapter]
        if not any(r.get("complete") for r in mine):
            missing.append(chapter)
        for record in mine:
            for entry in record["claims"]:
                claim = Claim(**{k: entry[k] for k in ("words", "value", "threshold", "direction", "unit",
                                                       "control", "control_value", "section")})
                rows.append({"chapter": chapter, "section": claim.section, "claim": claim.words,
                             "measured": claim.show(claim.value),
                             "threshold": f"{'≥' if claim.direction == '>=' else '≤'} {claim.show(claim.threshold)}",
                             "margin": claim.show(claim.margin), "margin / threshold": claim.relative_margin,
                             "control": "" if not claim.control else claim.control + (
                                 "" if claim.control_value is None else
                                 f" ({claim.control_value:.1%})" if claim.unit in ("%", "points")
                                 else f" ({claim.control_value:.4g})"),
                             "seed": record["seed"], "scale": record["scale"],
                             "result": "pass" if claim.passed else "FAIL",
                             "complete": bool(record.get("complete"))})
    if strict and missing:
        raise RuntimeError(f"no complete claims record for {missing} under {folder}: "
                           "the chapters must be executed with TDLAB_RECORDS set before the ledger is built")
    return pd.DataFrame(rows, columns=["chapter", "section", "claim", "measured", "threshold", "margin",
                                       "margin / threshold", "control", "seed", "scale", "result", "complete"])


def ledger_html(table: pd.DataFrame) -> str:
    """The ledger as an HTML table whose chapter column links to each chapter's check section."""
    if table.empty:
        return "<p><i>No claims were recorded in this build.</i></p>"
    shown = table.copy()
    shown["chapter"] = [f'<a href="{c}.html#{s}">{c.split("/")[-1]}</a>' for c, s in zip(table.chapter, table.section)]
    shown["margin / threshold"] = [("" if math.isnan(v) else f"{v:.0%}") for v in table["margin / threshold"]]
    shown = shown.drop(columns=["section", "complete"])
    return shown.to_html(index=False, escape=False, border=0, classes="tdlab-ledger")


def seed_table(folder: Path, chapter: str) -> pd.DataFrame:
    """Claim × seed for one chapter: each cell the measured value and, in brackets, the margin as a
    fraction of the threshold (✗ where the claim failed)."""
    table = ledger(folder, [chapter])
    if table.empty:
        return pd.DataFrame()
    table["cell"] = [f"{m}{'' if math.isnan(r) else f' ({r:.0%})'}{'' if res == 'pass' else ' ✗'}"
                     for m, r, res in zip(table.measured, table["margin / threshold"], table.result)]
    table["claim"] = [f"{c} [{t}]" for c, t in zip(table.claim, table.threshold)]
    order = list(dict.fromkeys(table.claim))
    out = table.pivot_table(index="claim", columns="seed", values="cell", aggfunc="first")
    return out.reindex(order)


def ledger_summary(table: pd.DataFrame) -> str:
    """One paragraph on a ledger: how many claims in how many chapters passed, and the thinnest margin."""
    if table.empty:
        return ("*No claims were recorded: the chapters were not executed with `TDLAB_RECORDS` set "
                "(`make book` sets it).*")
    passed = int((table.result == "pass").sum())
    margins = table["margin / threshold"].dropna()
    thinnest = ""
    if len(margins):
        row = table.loc[margins.idxmin()]
        thinnest = (f" The thinnest margin relative to its threshold: **{row['margin / threshold']:.0%}**, "
                    f"“{row['claim']}” ({row['chapter'].split('/')[-1]}, seed {row['seed']}).")
    return (f"**{passed} of {len(table)} claims passed**, in {table.chapter.nunique()} chapters, "
            f"on seed{'s' if table.seed.nunique() > 1 else ''} {', '.join(map(str, sorted(table.seed.unique())))}."
            + thinnest)
