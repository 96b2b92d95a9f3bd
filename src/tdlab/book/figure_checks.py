"""What a build checks in every figure a chapter draws (:func:`tdlab.book.chapter.check_open_figures`):
fractions drawn on a percent axis (issue 28's blank figure), a character its font lacks (drawn as a box), and
text too small to read once the page scales the figure to its content width (issue 35 item 1)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

IN_PERCENT, AS_FRACTION = "tdlab:percent", "tdlab:fraction"   # the gid :func:`tdlab.book.plots.curve` gives its lines


# ----------------------------------------------------------------- a figure's fractions on a percent axis


def fractions_on_percent_axes(figure) -> list[str]:
    """The axes of ``figure`` that draw fractions on a percent axis, one description per such axes (empty:
    none). A line drawn by :func:`tdlab.book.plots.curve` says how it was scaled (its gid): one drawn in % is never taken
    for a fraction, however small its values (a curve at 0–1 % is legitimate). On a y axis spanning at
    least 50:

    - every data line lies within [−0.01, 1.01], some line varies, and not every line is one :func:`tdlab.book.plots.curve`
      drew in % — the curves hug the axis at 0–1 % and the figure looks blank;
    - mixed: on an axis labelled in % where some line rises above 5, a line :func:`tdlab.book.plots.curve` drew as a
      fraction, or a line drawn by hand that spans at least 0.3 while staying within [−0.01, 1.01] — one
      curve was drawn as a fraction beside curves in %."""
    problems = []
    for ax in figure.get_axes():
        low, high = sorted(ax.get_ylim())
        if high - low < 50:
            continue
        lines = [line for line in ax.get_lines() if line.get_transform() == ax.transData and len(line.get_ydata())]
        data = [(line.get_gid(), np.asarray(line.get_ydata(), dtype=float)) for line in lines]
        data = [(gid, y[np.isfinite(y)]) for gid, y in data]
        data = [(gid, y) for gid, y in data if y.size]
        if not data:
            continue
        title = ax.get_title() or ax.get_ylabel() or "untitled axes"
        small = [y.min() >= -0.01 and y.max() <= 1.01 for _, y in data]
        if all(small):
            if any(np.ptp(y) > 0 for _, y in data) and not all(gid == IN_PERCENT for gid, _ in data):
                problems.append(f"“{title}”: every line lies within [−0.01, 1.01] on a y axis from {low:g} to "
                                f"{high:g} — fractions drawn on a percent axis (draw them × 100, e.g. "
                                "plots.curve(..., percent=True))")
            continue
        suspect = [gid == AS_FRACTION or (gid != IN_PERCENT and np.ptp(y) >= 0.3)
                   for (gid, y), s in zip(data, small) if s]
        if "%" in ax.get_ylabel() and any(y.max() > 5 for _, y in data) and any(suspect):
            problems.append(f"“{title}”: a line varies within [−0.01, 1.01] beside lines in % on a y axis from "
                            f"{low:g} to {high:g} — one curve drawn as a fraction (draw it × 100)")
    return problems


# ----------------------------------------------------------------- a figure's characters in its font


_CHARMAPS: dict[str, set[int]] = {}


def missing_glyphs(figure) -> list[str]:
    """The texts of ``figure`` with a character its font lacks (drawn as an empty box), one description per
    text (empty: none). Mathtext (``$…$``) is drawn by matplotlib's math fonts and is not read here."""
    from matplotlib import font_manager, ft2font
    from matplotlib.text import Text

    problems = []
    for text in figure.findobj(Text):
        content = text.get_text()
        if not content or not text.get_visible() or "$" in content:
            continue
        path = font_manager.findfont(text.get_fontproperties())
        if path not in _CHARMAPS:
            _CHARMAPS[path] = set(ft2font.FT2Font(path).get_charmap())
        lacking = sorted({ch for ch in content if not ch.isspace() and ord(ch) not in _CHARMAPS[path]})
        if lacking:
            problems.append(f"“{content[:60]}”: {' '.join(lacking)} not in {Path(path).name}")
    return problems


# ----------------------------------------------------------------- a figure's smallest text on the page


# The book page's content width in CSS px: what Jupyter Book 1's theme gives a figure in a 1400 px window
# (measured in headless Chromium; tests_browser checks it). A wider figure is scaled down to it, its text with it.
PAGE_WIDTH_PX = 772
LEGIBLE_PX = 9.0          # the smallest text a reader should have to read, in CSS px (issue 35 item 1)


def smallest_text(figure) -> tuple[float, str]:
    """The font size (pt) of the smallest visible, non-empty text of ``figure`` and that text."""
    from matplotlib.text import Text

    texts = [(t.get_fontsize(), t.get_text()) for t in figure.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return min(texts, key=lambda x: x[0], default=(math.nan, ""))


def legible_px(points: float, width_in: float, dpi: float, page_px: float = PAGE_WIDTH_PX) -> float:
    """The CSS px that a ``points``-size text of a ``width_in``-inch figure drawn at ``dpi`` measures on the
    page: the image is ``width_in × dpi`` px wide, shown at most ``page_px`` wide (scaled down with its text)."""
    natural = width_in * dpi
    return points / 72 * dpi * min(1.0, page_px / natural)


def title_of(figure) -> str:
    """A figure's name in reports: its suptitle, else its first axes title, else ``""``."""
    if figure._suptitle is not None:
        return figure._suptitle.get_text()
    return next((ax.get_title() for ax in figure.get_axes() if ax.get_title()), "")


def illegible_text(figure, page_px: float = PAGE_WIDTH_PX) -> list[str]:
    """``[problem]`` when ``figure``'s smallest text measures under :data:`LEGIBLE_PX` CSS px on the page
    (:func:`legible_px`; issue 35 item 1), else ``[]``. The figure's full width is used: the inline backend's
    tight crop can only make the image narrower and its text larger on the page. The cure is a narrower figure
    (wide grids wrapped to fewer panels per row) or a larger font, chosen together."""
    points, text = smallest_text(figure)
    if math.isnan(points):
        return []
    width_in = float(figure.get_size_inches()[0])
    px = legible_px(points, width_in, float(figure.dpi), page_px)
    if px >= LEGIBLE_PX:
        return []
    title = title_of(figure) or "untitled"
    need = LEGIBLE_PX * 72 / page_px * width_in if width_in * figure.dpi > page_px else LEGIBLE_PX * 72 / figure.dpi
    return [f"“{title[:60]}”: its smallest text “{text[:30]}” ({points:g} pt in a {width_in:g}-in figure) is "
            f"{px:.1f} CSS px on the page; at this width it needs {need:.1f} pt"]
