"""How the book shows one number, by what it is (issue 35 item 4): a percentage only for accuracies, rates
and fractions; nats, ratios, norms, scores and counts as plain numbers. One formatter, :func:`fmt`, that the
chapters' tables (:func:`tdlab.book.chapter.table`) and the widget panels' readouts
(:func:`tdlab.book.plots.readout_table`) share.

The name says what a value is. A value in [0, 1] is shown as a percentage when its name says it is an
accuracy, an error, a rate, a share or a fraction, or says nothing else; it is a plain number when its name
says it is a loss or an entropy (nats), a ratio (``a / b``, "over"), a norm (‖·‖), a neural collapse
measure (NC1–NC3), a score, a slope or exponent, a temperature, a correlation, a cosine or an AUC.
"""
from __future__ import annotations

import math
import numbers
import re

# names of accuracies, rates and fractions: shown in % whatever else the name holds
FRACTION = re.compile(r"accuracy|\bacc\b|fraction|\brate\b|\bshare\b|error|\bECE\b|sparsity|flagged|fitted|\bfit to",
                      re.IGNORECASE)
# names of quantities that are not fractions even when they lie in [0, 1]
NOT_FRACTION = re.compile(
    r"\bnats?\b|(?<!cross-)\bentropy\b|\bloss\b|\bNLL\b|\bNC[1-4]\b|\bratio\b|\bover\b| / |‖|\bnorm\b|\bscore\b"
    r"|\bslope\b|\bexponent\b|temperature|\bR²|\bAUC\b|\bcosine\b|\bcorrelation\b|\balignment\b|\bIPR\b"
    r"|\bdistance\b|attention logit",
    re.IGNORECASE)


def is_fraction_name(name: str | None) -> bool:
    """Whether a value called ``name`` is an accuracy, a rate or a fraction (shown in %). An unnamed value
    is taken as one when it lies in [0, 1], as the book's tables always did."""
    return name is None or bool(FRACTION.search(str(name))) or not NOT_FRACTION.search(str(name))


def fmt(value, name: str | None = None) -> str:
    """One number as the book shows it: a fraction in [0, 1] as a percentage (when ``name`` does not say it
    is something else: :func:`is_fraction_name`), a whole number as an integer, NaN as "never", anything else
    with four significant digits; text as it is."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "never"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) > 1):
        return f"{int(value)}"
    if 0 <= value <= 1 and is_fraction_name(name):
        return f"{value:.1%}"
    return f"{value:.4g}"
