"""Each chapter's committed seed table: its claims, measured on seeds 0–9, and where thresholds come from.

``make seeds CHAPTER=<part>/<chapter>`` executes a chapter once per seed with every claim recorded
(not raised) and every effect claim's **null** measured, and writes ``book/<part>/<chapter>.seeds.yaml``
beside the notebook: per claim its words, kind, direction, unit, threshold, and its values, its
control's values and its nulls on each seed. The table is committed; the book's build checks every
chapter against it (:func:`compare`): a claim the chapter checks that its table does not list, or one
the table lists that the chapter no longer checks, fails the build, so deleting or rewording a claim
is a visible diff of the table.

**The threshold rule.** An effect claim states its threshold as ``claims.SEEDS``: the threshold is
derived from the table (:func:`derive_threshold`) — midway between the *weakest* value over the ten
seeds and the *strongest* null (the same statistic with the method replaced by its control), rounded
to two significant figures. A claim whose weakest seed does not clear its strongest null has no
threshold: it is not an effect claim. A threshold the claim's words fix (``"most"`` is ½, ``"within
2 points"`` is 2 points) is stated in the chapter instead; the table then checks that every seed
clears it and every null fails it (:func:`problems`). Not-reproduced and sanity claims state their
thresholds; every seed must pass them.
"""
from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from tdlab.book import wording

EFFECT, NOT_REPRODUCED, SANITY = "effect", "not reproduced", "sanity"
KINDS = (EFFECT, NOT_REPRODUCED, SANITY)
SHOWN = "shown"    # not a claim: a statistic measured on the ten seeds (with its null) that no threshold decides
SEEDS = tuple(range(10))                 # the committed seeds of every table
SUFFIX = ".seeds.yaml"
STATED, DERIVED = "stated", "seeds"      # where a threshold comes from
PAPER, BOOK = "paper", "book"            # whose claim an effect is: the paper's, or the book's own test beyond it
SCOPES = (PAPER, BOOK)
BEYOND = "beyond the paper"              # the count of the book's own effect claims (scope BOOK)


def kind_label(kind: str, scope: str = PAPER) -> str:
    """A claim's kind as the book prints it: ``"effect"``, or ``"effect (beyond the paper)"`` for the book's
    own test (scope ``BOOK``)."""
    return f"{kind} ({BEYOND})" if scope == BOOK else kind


@dataclass
class Entry:
    """One claim of a chapter across the committed seeds."""

    words: str
    kind: str
    direction: str                        # ">=" or "<="
    unit: str
    threshold: float
    rule: str                             # "seeds" (derived by the rule) or "stated" (fixed by the chapter)
    values: list[float]
    nulls: list[float] | None = None      # effect claims: the statistic with the method replaced by its control
    control: str | None = None
    control_values: list[float] | None = None
    paper: str | None = None              # not-reproduced claims: what the paper says
    scope: str = PAPER                    # the paper's claim, or the book's own test beyond it (BOOK)

    def passes(self, number: float, threshold: float | None = None) -> bool:
        t = self.threshold if threshold is None else threshold
        if math.isnan(number) or math.isnan(t):
            return False
        return number >= t if self.direction == ">=" else number <= t

    @property
    def weakest(self) -> float:
        """The value over the seeds closest to failing."""
        return _worst(self.values, self.direction)

    @property
    def strongest_null(self) -> float:
        """The null over the seeds closest to passing (NaN without nulls)."""
        if not self.nulls:
            return math.nan
        return max(self.nulls) if self.direction == ">=" else min(self.nulls)


@dataclass
class Table:
    chapter: str
    scale: str
    seeds: list[int]
    entries: list[Entry] = field(default_factory=list)
    machine: str = ""

    def find(self, words: str) -> Entry | None:
        return next((e for e in self.entries if e.words == words), None)

    def counts(self) -> dict[str, int]:
        """Claims per kind; the claims the book adds beyond the paper (scope ``BOOK``: effects, and the
        paper's claim carried to a setting it did not run and not found there) are counted under
        :data:`BEYOND`, not among the paper's claims."""
        out = {kind: sum(e.kind == kind and e.scope == PAPER for e in self.entries) for kind in KINDS}
        out[SANITY] = sum(e.kind == SANITY for e in self.entries)
        out[BEYOND] = sum(e.kind in (EFFECT, NOT_REPRODUCED) and e.scope == BOOK for e in self.entries)
        return out


def _worst(values: list[float], direction: str) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    return min(values) if direction == ">=" else max(values)


# ----------------------------------------------------------------- where the tables are


def book_root(start: Path | None = None) -> Path | None:
    """The book's folder: ``TDLAB_BOOK`` if set (the Colab cell sets it), else the ``book/`` beside the
    ``_toc.yml`` found walking up from the working directory (a chapter runs in its own folder)."""
    if os.environ.get("TDLAB_BOOK", "").strip():
        return Path(os.environ["TDLAB_BOOK"]).expanduser()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists() and (folder / "book").is_dir():
            return folder / "book"
    return None


def path(chapter: str, root: Path | None = None) -> Path | None:
    """``book/<part>/<chapter>.seeds.yaml``, or None when the book's folder is not found."""
    root = book_root() if root is None else root
    return None if root is None else root / f"{chapter}{SUFFIX}"


def load(chapter: str, scale: str = "cpu", root: Path | None = None) -> Table | None:
    """The committed table of ``chapter`` at ``scale``, or None when there is none (the tables are made at
    the CPU scale: at ``paper`` scale no threshold has been measured, and claims are shown, not checked)."""
    target = path(chapter, root)
    if target is None or not target.exists():
        return None
    data = yaml.safe_load(target.read_text())
    if data.get("scale", "cpu") != scale:
        return None
    entries = [Entry(**{k: _floats(v) if k in ("values", "nulls", "control_values") else v
                        for k, v in e.items()}) for e in data.get("claims", [])]
    for e in entries:
        e.threshold = float(e.threshold)
    return Table(data["chapter"], data.get("scale", "cpu"), list(data["seeds"]), entries, data.get("machine", ""))


def _floats(values):
    return None if values is None else [float(v) for v in values]


def _round(x: float) -> float:
    return x if not math.isfinite(x) or x == 0 else float(f"{x:.4g}")


def save(table: Table, root: Path | None = None) -> Path:
    """Write ``table`` beside its chapter, as YAML a reviewer can read in a diff."""
    target = path(table.chapter, root)
    if target is None:
        raise FileNotFoundError("the book's folder was not found (set TDLAB_BOOK)")
    claims = []
    for e in table.entries:
        row = {k: v for k, v in asdict(e).items() if v is not None and not (k == "scope" and v == PAPER)}
        for key in ("values", "nulls", "control_values"):
            if key in row:
                row[key] = [_round(v) for v in row[key]]
        claims.append(row)
    header = (f"# The committed seed table of {table.chapter} (written by `make seeds CHAPTER={table.chapter}`).\n"
              "# Each claim's value on every seed; for an effect claim, its null (the same statistic with the\n"
              "# method replaced by its control) and the threshold derived from both (rule: tdlab.book.seed_tables).\n")
    body = yaml.safe_dump({"chapter": table.chapter, "scale": table.scale, "seeds": table.seeds,
                           "machine": table.machine, "claims": claims},
                          sort_keys=False, allow_unicode=True, width=110, default_flow_style=None)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(header + body)
    return target


def machine(threads=()) -> str:
    """What made a table: the processor, the torch version and the torch threads of its runs (thresholds
    must not depend on them; the build runs the same seeds with another thread count, which gives other
    trajectories, so the build's seed 0 is a fresh draw, not the table's column s0)."""
    import torch
    model = platform.processor() or ""
    try:
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    counts = sorted({t for t in threads if t})
    text = f"{platform.machine()} {model}, torch {torch.__version__}".replace("  ", " ")
    return text + (f", {'/'.join(map(str, counts))} torch thread(s) per run" if counts else "")


# ----------------------------------------------------------------- the threshold rule


def derive_threshold(values: list[float], nulls: list[float], direction: str) -> float:
    """Midway between the weakest value and the strongest null, at two significant figures (more where
    two would leave the interval); NaN when the weakest seed does not clear the strongest null."""
    weakest = _worst(values, direction)
    if not nulls or any(math.isnan(n) for n in nulls) or math.isnan(weakest):
        return math.nan
    strongest = max(nulls) if direction == ">=" else min(nulls)
    low, high = (strongest, weakest) if direction == ">=" else (weakest, strongest)
    if not (low < high) or not (math.isfinite(low) and math.isfinite(high)):
        return math.nan
    middle = (low + high) / 2
    for digits in range(2, 8):
        rounded = float(f"{middle:.{digits}g}")
        if low < rounded < high:
            return rounded
    return middle


def from_records(chapter: str, scale: str, found: list[dict]) -> Table:
    """A chapter's table from the records of its seed runs (one record per seed, nulls measured)."""
    found = sorted(found, key=lambda r: r["seed"])
    seeds = [r["seed"] for r in found]
    order = list(dict.fromkeys(c["words"] for r in found for c in r["claims"]))
    entries = []
    for words in order:
        per_seed = [next((c for c in r["claims"] if c["words"] == words), None) for r in found]
        first = next(c for c in per_seed if c is not None)
        # rounded as the table stores them, so that the rule applied to the saved table gives this threshold
        value = lambda c, key: math.nan if c is None or c.get(key) is None else _round(float(c[key]))  # noqa: E731
        values = [value(c, "value") for c in per_seed]
        nulls = [value(c, "null") for c in per_seed] if first["kind"] == EFFECT or \
            (first["kind"] == SHOWN and any(c is not None and c.get("null") is not None for c in per_seed)) else None
        controls = [value(c, "control_value") for c in per_seed] if first.get("control") else None
        rule = first.get("threshold_rule", STATED)
        threshold = derive_threshold(values, nulls or [], first["direction"]) if rule == DERIVED \
            else float(first["threshold"])
        entries.append(Entry(words, first["kind"], first["direction"], first.get("unit", ""), threshold, rule,
                             values, nulls, first.get("control"), controls, first.get("paper"),
                             first.get("scope", PAPER)))
    return Table(chapter, scale, seeds, entries, machine(r.get("threads") for r in found))


def problems(table: Table, seeds: tuple[int, ...] = SEEDS) -> list[str]:
    """Everything in a table that breaks the rules: the seeds, a value not measured, an effect claim
    without nulls, a null that passes, a seed that fails, a derived threshold that is not the rule's,
    words that say more than the threshold (:mod:`tdlab.book.wording`)."""
    found = []
    if list(table.seeds) != list(seeds):
        found.append(f"the table holds seeds {table.seeds}, not {list(seeds)}")
    for e in table.entries:
        say = lambda what: found.append(f"“{e.words}”: {what}")  # noqa: E731
        if e.kind not in KINDS and e.kind != SHOWN:
            say(f"unknown kind {e.kind!r}")
            continue
        if len(e.values) != len(table.seeds) or any(math.isnan(v) for v in e.values):
            say("not measured on every seed")
        if e.kind == SHOWN:          # no threshold: only measured, with its null where it has one
            if e.nulls is not None and (len(e.nulls) != len(table.seeds) or any(math.isnan(n) for n in e.nulls)):
                say("a shown statistic with a null needs it on every seed")
            continue
        failing = [s for s, v in zip(table.seeds, e.values) if not e.passes(v)]
        if failing:
            say(f"fails its threshold on seed{'s' if len(failing) > 1 else ''} {', '.join(map(str, failing))}")
        if e.kind == EFFECT:
            if not e.control:
                say("an effect claim names no control")
            if not e.nulls or len(e.nulls) != len(table.seeds) or any(math.isnan(n) for n in e.nulls):
                say("an effect claim without its null on every seed")
            else:
                passing = [s for s, n in zip(table.seeds, e.nulls) if e.passes(n)]
                if passing:
                    say(f"its null passes the threshold on seed{'s' if len(passing) > 1 else ''} "
                        f"{', '.join(map(str, passing))}: not an effect claim")
                if e.rule == DERIVED:
                    expected = derive_threshold(e.values, e.nulls, e.direction)
                    if math.isnan(expected):
                        say("the weakest seed does not clear the strongest null: no threshold can separate them")
                    elif not math.isclose(expected, e.threshold, rel_tol=1e-9, abs_tol=1e-12):
                        say(f"threshold {e.threshold:g} is not the rule's {expected:g} (re-run `make seeds`)")
        elif e.rule == DERIVED:
            say("only an effect claim can derive its threshold from nulls")
        if e.kind == NOT_REPRODUCED and not e.paper:
            say("a not-reproduced claim must quote what the paper says")
        if e.scope not in SCOPES:
            say(f"unknown scope {e.scope!r}")
        elif e.scope == BOOK and e.kind == SANITY:
            say("a sanity check is no one's claim: scope 'book' is for effect and not-reproduced claims")
        found += [f"“{e.words}”: {p}" for p in wording.problems(e)]
    return found


def compare(table: Table, checked: list[dict]) -> list[str]:
    """How the claims a run checked differ from its chapter's table: claims the table does not list,
    claims it lists that were not checked, and a changed kind, direction, unit, scope or stated threshold."""
    found = []
    names = [c["words"] for c in checked]
    for c in checked:
        e = table.find(c["words"])
        if e is None:
            found.append(f"“{c['words']}” is checked but not in the seed table")
            continue
        for key, mine in (("kind", c["kind"]), ("direction", c["direction"]), ("unit", c.get("unit", "")),
                          ("rule", c.get("threshold_rule", STATED)), ("scope", c.get("scope", PAPER))):
            if getattr(e, key) != mine:
                found.append(f"“{c['words']}”: {key} {mine!r} here, {getattr(e, key)!r} in the seed table")
        if e.kind != SHOWN and e.rule == STATED and c.get("threshold_rule", STATED) == STATED and \
                not math.isclose(float(c["threshold"]), e.threshold, rel_tol=1e-9, abs_tol=1e-12):
            found.append(f"“{c['words']}”: threshold {c['threshold']:g} here, {e.threshold:g} in the seed table")
    found += [f"“{e.words}” is in the seed table but was not checked" for e in table.entries if e.words not in names]
    return found


DRIFT_REL, DRIFT_ABS = 1e-3, 2e-4   # a unit or so of the table's 4th significant digit: rounding, not drift


def differences(table: Table, record: dict) -> dict[str, float]:
    """Per claim a run's record measured, the largest absolute difference between its value (and its
    control's value) and the table's at the record's seed, both rounded as the table stores them; NaN
    where one side has a number and the other none. Claims the table does not list are left out
    (:func:`compare` names them), and so is everything when the table has no column for that seed.

    Where a build trains the same engine calls as ``make seeds`` (the same members in each call; the nulls'
    runs in calls of their own) with the same torch thread count on the machine that made the table, its
    seed 0 gives the table's seed-0 values; another processor, thread count or call width can change the
    rounding (which of them does depends on the model), and noisy training can grow it into points.
    """
    seed = record.get("seed")
    if seed not in table.seeds:
        return {}
    column = table.seeds.index(seed)
    found = {}
    for c in record.get("claims", []):
        e = table.find(c["words"])
        if e is None:
            continue
        pairs = [(c.get("value"), e.values)]
        if e.control_values is not None or c.get("control_value") is not None:
            pairs.append((c.get("control_value"), e.control_values))
        gaps = []
        for mine, theirs in pairs:
            a = math.nan if mine is None else _round(float(mine))
            b = math.nan if theirs is None or column >= len(theirs) else float(theirs[column])
            if not (math.isnan(a) and math.isnan(b)):      # NaN on both sides (no share to take) agrees
                gaps.append(abs(a - b))                     # NaN when only one side has a number
        found[c["words"]] = math.nan if any(math.isnan(g) for g in gaps) else max(gaps, default=0.0)
    return found


def drift(table: Table, record: dict, rel_tol: float = DRIFT_REL, abs_tol: float = DRIFT_ABS) -> list[str]:
    """What a build should *warn* about, never fail on: the claims whose values in ``record`` differ from
    the table's at the same seed by more than rounding (:func:`differences`; ``rel_tol`` of the table's
    value or ``abs_tol``, whichever is larger). Processors differ — CI runs on another CPU — and a result
    that depends on the processor is not a claim, so this is a report, not a rule."""
    seed = record.get("seed")
    found = []
    for words, diff in differences(table, record).items():
        e, column = table.find(words), table.seeds.index(seed)
        scale = abs(e.values[column]) if column < len(e.values) and math.isfinite(e.values[column]) else 0.0
        if math.isnan(diff) or diff > max(rel_tol * scale, abs_tol):
            found.append(f"“{words}”: seed {seed} differs from the table's seed {seed} by "
                         + ("a missing number" if math.isnan(diff) else f"{diff:.4g}"))
    return found
