"""One way to state a claim of the book, check it on the measured run, and record it.

Every check declares its **kind**:

- ``"effect"`` — the paper's phenomenon: the method against its named control run (the cheapest
  alternative explanation removed). It gives the control's measured value and a ``null``: a function
  that returns the same statistic with the method replaced by its control (the control at another
  seed against itself, or the control in both arms). The null is measured by the seed runner
  (``make seeds`` sets ``TDLAB_NULLS``), not on every build, and must fail the threshold on every
  committed seed.
- ``"not reproduced"`` — the paper says X, the build measures not-X: a finding, shown with the paper's
  statement beside it (``paper=``), never counted as a pass of the paper.
- ``"sanity"`` — true by construction, or a precondition of the experiment: shown apart, not counted.

An effect or not-reproduced claim is the paper's (``scope="paper"``, the default) or **the book's own
test beyond the paper** (``scope="book"``): a check on a setting the paper never ran (label noise on a
paper without it, a detector the paper does not compare) — an effect found there, or the paper's claim
carried there and not found (``paper=`` then quotes the claim carried over). The status line counts
the paper's claims apart from the book's own, so a chapter never advertises its extension as the
paper's result, nor counts a failure on a setting the paper never ran against the paper.

::

    claims.check("ELR ends above cross-entropy", elr_final - ce_final, kind="effect", at_least=claims.SEEDS,
                 unit="points", control="cross-entropy: same noisy labels, initialisation, batches",
                 control_value=ce_final, null=lambda: twin_final - ce_final)

``at_least=claims.SEEDS`` takes the threshold from the chapter's committed seed table
(:mod:`tdlab.book.seed_tables`: midway between the weakest of ten seeds and the strongest null); a
threshold the words fix (``"most"`` = ½) is given as a number. :func:`check` prints one line — ✓ or
✗, the kind, the claim, the value, the threshold and the margin — records the claim in the chapter's
records (:mod:`tdlab.book.records`, read by the claims ledger), and raises an ``AssertionError`` with the
claim's words when it fails, or when the chapter's committed table does not list it. With
``TDLAB_CHECKS=record`` (what ``make seeds`` sets) nothing raises: the claims are recorded to make
the table. Where no table exists at this scale (``TDLAB_SCALE=paper``) a claim is measured and shown,
not checked.

The *margin* is how far the value lies beyond the threshold in the passing direction (negative when
the claim fails).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Callable

from tdlab.book import records, seed_tables
from tdlab.core.config import env_flag, env_scale
from tdlab.book.seed_tables import (BOOK, DERIVED, EFFECT, KINDS, NOT_REPRODUCED, PAPER, SANITY,  # noqa: F401
                               SCOPES, SHOWN, STATED)

UNITS = ("%", "points", "")
SEEDS = "seeds"            # at_least=SEEDS / at_most=SEEDS: the threshold of the chapter's committed seed table
DEFAULT_SECTION = "check-the-phenomenon-happened"


@dataclass
class Claim:
    """A checked claim: ``value`` must be ≥ ``threshold`` (``direction=">="``) or ≤ it (``"<="``)."""

    words: str
    value: float
    threshold: float
    direction: str
    kind: str = SANITY
    unit: str = ""
    control: str | None = None
    control_value: float | None = None
    null: float | None = None
    paper: str | None = None
    threshold_rule: str = STATED
    checked: bool = True          # False where the chapter has no seed table at this scale
    section: str = DEFAULT_SECTION
    scope: str = PAPER            # the paper's claim (PAPER) or the book's own test beyond it (BOOK)

    @property
    def margin(self) -> float:
        """How far the value lies beyond the threshold in the passing direction (< 0: it fails)."""
        if math.isnan(self.value) or math.isnan(self.threshold):
            return math.nan
        return self.value - self.threshold if self.direction == ">=" else self.threshold - self.value

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
            return f"{number:.1%}".replace("-0.0%", "0.0%")                   # a value that rounds to 0: no sign
        if self.unit == "points":
            return f"{number * 100:+.1f} points".replace("-0.0 ", "+0.0 ")
        return f"{number:.4g}"

    def show_control(self) -> str:
        if self.control_value is None:
            return ""
        return f"{self.control_value:.1%}" if self.unit in ("%", "points") else f"{self.control_value:.4g}"

    def line(self) -> str:
        if self.kind == SHOWN:
            extra = f" (control: {self.control}{', ' + self.show_control() if self.show_control() else ''})" \
                if self.control else ""
            extra += f" [null: {self.show(self.null)}]" if self.null is not None else ""
            return (f"· shown · {self.words}: {self.show(self.value)} — not checked: recorded on the ten seeds, "
                    f"no threshold decides it{extra}")
        sign = "≥" if self.direction == ">=" else "≤"
        if not self.checked:
            mark, verdict = "·", "not checked (no committed seed table at this scale)"
        else:
            mark = "✓" if self.passed else "✗"
            source = " (from the seed table)" if self.threshold_rule == DERIVED else ""
            verdict = f"{sign} {self.show(self.threshold)}{source}; margin {self.show(self.margin)}"
        extra = ""
        if self.control:
            level = self.show_control()
            extra += f" (control: {self.control}{', ' + level if level else ''})"
        if self.null is not None:
            extra += f" [null: {self.show(self.null)}]"
        if self.paper:
            extra += f" [the paper: {self.paper}]"
        return f"{mark} {seed_tables.kind_label(self.kind, self.scope)} · {self.words}: {self.show(self.value)} {verdict}{extra}"

    def to_record(self) -> dict:
        out = asdict(self)
        out.update(margin=self.margin, passed=self.passed if self.checked and self.kind != SHOWN else None)
        return out


def recording() -> bool:
    """``TDLAB_CHECKS=record`` (the seed runner): failing claims are recorded, not raised."""
    return os.environ.get("TDLAB_CHECKS", "").strip().lower() == "record"


def nulls_wanted() -> bool:
    """``TDLAB_NULLS`` (the seed runner): measure every effect claim's null. A chapter trains the runs
    its nulls need only when this is true."""
    return env_flag("TDLAB_NULLS")


_checked: list[Claim] = []


def start() -> None:
    """Forget the claims checked so far in this kernel (a chapter's setup calls it)."""
    _checked.clear()


def table():
    """The running chapter's committed seed table at this scale, or None."""
    return seed_tables.load(records.chapter_name(), env_scale())


def _record(claim: Claim, mine, what: str) -> bool:
    """Print ``claim``, keep it as checked in this kernel and add it to the chapter's records; raise when
    the committed table ``mine`` does not list it as stated. True when it is then to be held to its
    threshold (a build with a table), False when only recorded (the seed runner, or no table)."""
    print(claim.line())
    _checked[:] = [c for c in _checked if c.words != claim.words] + [claim]
    records.add("claims", claim.to_record())
    if recording() or mine is None:
        return False
    differ = [d for d in seed_tables.compare(mine, [claim.to_record()]) if "was not checked" not in d]
    if differ:
        raise AssertionError(f"{what} {claim.words!r} does not match the chapter's committed seed table: "
                             + "; ".join(differ) + f" — run `make seeds CHAPTER={records.chapter_name()}`")
    return True


def check(words: str, value: float, *, kind: str, at_least: float | str | None = None,
          at_most: float | str | None = None, unit: str = "", control: str | None = None,
          control_value: float | None = None, null: Callable[[], float] | None = None, paper: str | None = None,
          section: str = DEFAULT_SECTION, scope: str = PAPER) -> Claim:
    """Check that ``value`` is at least ``at_least`` (or at most ``at_most``); print, record, and raise an
    ``AssertionError`` naming the claim if it is not.

    - ``kind``: ``"effect"``, ``"not reproduced"`` or ``"sanity"`` (see the module's docstring).
    - ``at_least`` / ``at_most``: a number, or :data:`SEEDS` for the threshold of the committed table
      (effect claims only).
    - ``unit``: ``"%"`` (a fraction shown as a percentage), ``"points"`` (a difference of fractions, in
      percentage points) or ``""`` (as it is).
    - ``control`` / ``control_value``: what an effect claim compares with, and its measured value.
    - ``null``: an effect claim's statistic with the method replaced by its control; called only when the
      seed runner measures nulls.
    - ``paper``: for a not-reproduced claim, what the paper says.
    - ``section``: the anchor of the chapter's check section (the ledger links to it).
    - ``scope``: ``"paper"`` (the paper's claim) or ``"book"`` (the book's own test beyond the paper, an
      effect or a not-reproduced claim; counted apart).

    A value that is NaN (not measured) fails; +inf (a level never reached) is a number like any other.
    """
    if kind not in KINDS:
        raise ValueError(f"claim {words!r}: kind must be one of {KINDS}, got {kind!r}")
    if (at_least is None) == (at_most is None):
        raise ValueError(f"claim {words!r}: give exactly one of at_least= and at_most=")
    if unit not in UNITS:
        raise ValueError(f"claim {words!r}: unit must be one of {UNITS}, got {unit!r}")
    if kind == EFFECT and (not control or control_value is None or null is None):
        raise ValueError(f"effect claim {words!r}: name its control, give the control's value (control_value=) "
                         "and its null (null=: the statistic with the method replaced by its control)")
    if kind == NOT_REPRODUCED and not paper:
        raise ValueError(f"not-reproduced claim {words!r}: quote what the paper says (paper=)")
    if scope not in SCOPES:
        raise ValueError(f"claim {words!r}: scope must be one of {SCOPES}, got {scope!r}")
    if scope == BOOK and kind == SANITY:
        raise ValueError(f"claim {words!r}: a sanity check is no one's claim; scope='book' is for effect and "
                         "not-reproduced claims")
    bound = at_least if at_most is None else at_most
    rule = DERIVED if isinstance(bound, str) and bound == SEEDS else STATED
    if rule == DERIVED and kind != EFFECT:
        raise ValueError(f"claim {words!r}: only an effect claim takes its threshold from the seed table's nulls")
    mine = table()
    entry = mine.find(words) if mine is not None else None
    threshold = (entry.threshold if entry is not None else math.nan) if rule == DERIVED else float(bound)
    null_value = float(null()) if kind == EFFECT and nulls_wanted() else None
    claim = Claim(words, float(value), threshold, ">=" if at_most is None else "<=", kind, unit, control,
                  None if control_value is None else float(control_value), null_value, paper, rule,
                  mine is not None, section, scope)
    if _record(claim, mine, "claim") and not claim.passed:
        raise AssertionError(f"claim failed: {words} — measured {claim.show(claim.value)}, needed "
                             f"{claim.direction} {claim.show(claim.threshold)}")
    return claim


def shown(words: str, value: float, *, unit: str = "", control: str | None = None,
          control_value: float | None = None, null: Callable[[], float] | None = None, scope: str = PAPER,
          section: str = DEFAULT_SECTION) -> Claim:
    """Show a statistic that no threshold decides — a comparison whose weakest seed does not clear its
    null, so it is neither an effect nor a not-reproduced finding — and record it, so the committed seed
    table holds its value (and its null, measured like an effect's) on the ten seeds and the prose can
    cite that range instead of one seed. Never fails; the table must list it, like a claim."""
    if unit not in UNITS:
        raise ValueError(f"shown statistic {words!r}: unit must be one of {UNITS}, got {unit!r}")
    if scope not in SCOPES:
        raise ValueError(f"shown statistic {words!r}: scope must be one of {SCOPES}, got {scope!r}")
    mine = table()
    null_value = float(null()) if null is not None and nulls_wanted() else None
    claim = Claim(words, float(value), math.nan, "", SHOWN, unit, control,
                  None if control_value is None else float(control_value), null_value, None, STATED,
                  mine is not None, section, scope)
    _record(claim, mine, "shown statistic")
    return claim


def seed_count(start: str, bound: float = 0.0, below: bool = False) -> str:
    """On how many of the committed table's seeds the row whose words begin with ``start`` is above
    ``bound`` (``below=True``: below it): ``"N of M"``; ``"—"`` without a table at this scale (the paper
    scale) or without that row. For prose that cites a count over the seeds instead of typing it."""
    mine = table()
    entry = next((e for e in mine.entries if e.words.startswith(start)), None) if mine is not None else None
    if entry is None:
        return "—"
    return f"{sum((v < bound) if below else (v > bound) for v in entry.values)} of {len(entry.values)}"


def seed_values(start: str, nulls: bool = False) -> list[float] | None:
    """The committed table's values on its seeds (``nulls=True``: its nulls) of the row whose words are
    ``start`` (else the first that begin with it); None without a table at this scale (the paper scale),
    without that row, or without nulls. For prose that reads a row over the seeds instead of one build."""
    mine = table()
    if mine is None:
        return None
    entry = mine.find(start) or next((e for e in mine.entries if e.words.startswith(start)), None)
    values = None if entry is None else (entry.nulls if nulls else entry.values)
    return [float(v) for v in values] if values else None


def seed_span(start: str, nulls: bool = False, scale: float = 1.0, digits: int = 2, signed: bool = False) -> str | None:
    """``"low … high"`` of :func:`seed_values` times ``scale`` (100: a fraction in points), rounded to ``digits``
    decimals and never printed as ``-0.00``; ``signed``: positive values with a ``+``. None where
    :func:`seed_values` is None."""
    values = seed_values(start, nulls)
    if values is None:
        return None
    low, high = (round(v * scale, digits) + 0.0 for v in (min(values), max(values)))     # + 0.0: never "-0.00"
    sign = "+" if signed else ""
    return f"{low:{sign}.{digits}f} … {high:{sign}.{digits}f}"


def unchecked() -> list[str]:
    """The claims the running chapter's committed table lists but this kernel has not checked."""
    mine = table()
    if mine is None or recording():
        return []
    done = {c.words for c in _checked}
    return [e.words for e in mine.entries if e.words not in done]
