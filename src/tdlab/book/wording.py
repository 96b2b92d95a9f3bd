"""The book's one vocabulary for claims: what a word in a claim promises about its threshold.

A claim says in words what its threshold measures; a word that says more than the threshold is a
defect a reader cannot see in the check line. :func:`problems` scans one claim of a committed seed
table (:mod:`tdlab.book.seed_tables`) against these rules; a unit test scans every table.

=========================================== ===================================================================
words                                       the threshold must …
=========================================== ===================================================================
"most" (not "at most", "the most")          be at least ½ (a fraction, checked from below)
"half"                                      be at least ½
"nearly all", "almost all", "nearly every"  be at least 0.9
"above", "below", "beats", "exceeds",       (effect claims) lie beyond the strongest null on the ten seeds and,
"more", "fewer", "less", "lower", "higher", for a difference in points, beyond one standard deviation of the
"larger", "smaller", "better", "worse"      control's own value over the seeds
"far", "much", "clearly", "sharply",        (effect claims) lie at least twice as far from the nulls' median as
"well above/below", "many-fold"             the strongest null does; "many-fold" also ≥ 3
"N points", "factor N"                      be N points (unit "points"), or N or 1/N
"CPU time", "wall time", "seconds", …       — no claim compares machine times: they change with the processor
=========================================== ===================================================================
"""
from __future__ import annotations

import math
import re
import statistics

MACHINE_TIME = re.compile(r"\b(cpu[- ]time|wall[- ]?(clock|time)|seconds?\b|time per step|run[- ]?time|timing)",
                          re.IGNORECASE)
MOST = re.compile(r"(?<![Aa]t )(?<![Tt]he )\bmost\b")
HALF = re.compile(r"\bhalf\b(?! of training)(?!-way)", re.IGNORECASE)
NEARLY_ALL = re.compile(r"\b(nearly|almost) (all|every)\b", re.IGNORECASE)
COMPARATIVE = re.compile(r"\b(above|below|beats?|exceeds?|outperforms?|more|fewer|less|lower|higher|larger|smaller|"
                         r"better|worse)\b", re.IGNORECASE)
INTENSIFIER = re.compile(r"\b(far|much|clearly|sharply|well (above|below)|many-fold)\b", re.IGNORECASE)
POINTS = re.compile(r"(\d+(?:\.\d+)?) points?\b")
FACTOR = re.compile(r"\bfactor (?:of )?(\d+(?:\.\d+)?)\b")


def _from_below(entry) -> bool:
    return entry.direction == ">="


def problems(entry) -> list[str]:
    """What the words of ``entry`` (a :class:`tdlab.book.seed_tables.Entry`) promise that its threshold does not."""
    words, t = entry.words, entry.threshold
    found = []
    if MACHINE_TIME.search(words):
        found.append("compares machine times, which change with the processor and the thread count")
    if math.isnan(t):
        return found + ["has no threshold"]
    if MOST.search(words) and not (_from_below(entry) and t >= 0.5):
        found.append(f"says “most” with threshold {'≥' if _from_below(entry) else '≤'} {t:g} (needs ≥ 0.5)")
    if HALF.search(words) and "half-way" not in words and "first half" not in words \
            and "second half" not in words and not (_from_below(entry) and t >= 0.5):
        found.append(f"says “half” with threshold {t:g} (needs ≥ 0.5)")
    if NEARLY_ALL.search(words) and not (_from_below(entry) and t >= 0.9):
        found.append(f"says “{NEARLY_ALL.search(words).group(0)}” with threshold {t:g} (needs ≥ 0.9)")
    numbers = [float(n) for n in POINTS.findall(words)]
    if numbers and entry.unit == "points" and not any(math.isclose(abs(t) * 100, n, rel_tol=1e-6) for n in numbers):
        found.append(f"names {', '.join(f'{n:g}' for n in numbers)} points but its threshold is {t * 100:+g} points")
    factors = [float(n) for n in FACTOR.findall(words)]
    if factors and not any(math.isclose(t, f, rel_tol=1e-6) or math.isclose(t, 1 / f, rel_tol=1e-6) for f in factors):
        found.append(f"names a factor {', '.join(f'{f:g}' for f in factors)} but its threshold is {t:g}")
    if entry.kind != "effect":
        return found
    nulls = [n for n in (entry.nulls or []) if not math.isnan(n)]
    if COMPARATIVE.search(words) and entry.unit == "points" and entry.control_values:
        controls = [c for c in entry.control_values if math.isfinite(c)]
        spread = statistics.stdev(controls) if len(controls) > 1 else 0.0
        if abs(t) < spread:
            found.append(f"says “{COMPARATIVE.search(words).group(0)}” with a threshold of {t * 100:+.2g} points, "
                         f"inside the control's own seed-to-seed spread ({spread * 100:.2g} points)")
    intense = INTENSIFIER.search(words)
    if intense and nulls:
        centre = statistics.median(nulls)
        reach = (max(nulls) - centre) if _from_below(entry) else (centre - min(nulls))
        distance = (t - centre) if _from_below(entry) else (centre - t)
        if distance < 2 * reach or distance <= 0:
            found.append(f"says “{intense.group(0)}” but its threshold lies {distance:.3g} from the nulls' median, "
                         f"less than twice the strongest null's {reach:.3g}")
        if intense.group(0).lower() == "many-fold" and not (_from_below(entry) and t >= 3):
            found.append(f"says “many-fold” with threshold {t:g} (needs ≥ 3)")
    return found
