"""One visual style and the standard figures of training dynamics.

:func:`explorer` (from :mod:`tdlab.book.explorer`) is the kernel-free interactive figure over a sweep;
what a build checks in every figure (fractions on a percent axis, missing glyphs, text too small on the page)
is :mod:`tdlab.book.figure_checks`, its names importable from here too.

All figures read a :class:`~tdlab.core.history.History` and label their axes with
units (training step; accuracy in %; loss in nats). A diverged run is drawn up to
the step where it diverged and marked with a ✕ and the word "diverged".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

from tdlab.book.explorer import explorer
from tdlab.core.history import FRACTIONS, History, is_fraction  # noqa: F401  (FRACTIONS: the one list, read here too)
from tdlab.book import units
from tdlab.book.figure_checks import (AS_FRACTION, IN_PERCENT, LEGIBLE_PX, PAGE_WIDTH_PX,  # noqa: F401
                                      fractions_on_percent_axes, illegible_text, legible_px, missing_glyphs,
                                      smallest_text)

# seaborn's "colorblind" palette (Waskom 2021: seaborn.color_palette("colorblind")), the book's line colours
# in order; written out so that a figure can name a colour without importing seaborn (a test checks they agree)
COLORBLIND = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
              "#56b4e9"]
PALETTE = {
    "train": "#4C72B0", "test": "#DD8452", "train_clean": "#55A868",
    "train_corrupted": "#C44E52", "train_corrupted_true": "#8172B3",
}
LABELS = {
    ("train", "acc"): "train (given labels)",
    ("test", "acc"): "test",
    ("train_clean", "acc"): "clean train examples",
    ("train_corrupted", "acc"): "corrupted examples vs noisy label",
    ("train_corrupted", "acc_true"): "corrupted examples vs true label",
    ("train", "loss"): "train loss", ("test", "loss"): "test loss",
    ("train", "objective"): "training objective",
}
UNITS = {"acc": "accuracy (%)", "acc_true": "accuracy (%)", "loss": "cross-entropy (nats)",
         "objective": "objective"}


# The book's one figure font: DejaVu Sans ships with matplotlib, so every machine draws with it, and it has
# every character the book's figures use (‖, β₂, v̂, subscripts, ⊥, √, …; :func:`missing_glyphs` checks).
FONT = "DejaVu Sans"


def set_style() -> None:
    """The book's look, from seaborn itself (Waskom 2021): ``set_theme`` with the white grid, the
    notebook context and the colour-blind palette, plus the book's few additions (bold titles,
    frameless legends). Importing seaborn costs a chapter well under a second (measured in the
    closing note of issue 32); every chapter draws, so it is paid once, here."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind",
                  rc={"figure.dpi": 100, "savefig.dpi": 120, "axes.titleweight": "bold", "legend.frameon": False,
                      "figure.autolayout": False, "font.sans-serif": [FONT]})




def _scale(metric: str, percent: bool | None = None) -> float:
    if percent is not None:
        return 100.0 if percent else 1.0
    return 100.0 if is_fraction(metric) else 1.0


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def legend_below(ax, handles=None, labels=None, columns: int = 2, fontsize: int = 10,
                 below_pt: float | None = None):
    """A legend under the axes, outside the plotting area, so it never covers the curves it labels.
    ``below_pt``: hang it that many points under the axes' bottom edge rather than 16% of the axes' height
    below it (a short panel above a tall legend is squeezed until 16% of it no longer clears the x label;
    about 40 pt clears 11-pt tick labels and a 12-pt x label)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    legend = ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=columns,
                       fontsize=fontsize, frameon=False)
    if below_pt is not None:
        from matplotlib.transforms import offset_copy
        legend.set_bbox_to_anchor((0.5, 0.0), transform=offset_copy(ax.transAxes, fig=ax.figure, y=-below_pt,
                                                                     units="points"))
    return legend


def _mark_divergence(ax, history: History, member: int, color) -> None:
    step = history.diverged_at[member]
    if step is None:
        return
    ax.axvline(step, color=color, linestyle=":", linewidth=1)
    ax.plot([step], [ax.get_ylim()[1] * 0.95], marker="x", color=color, markersize=10, mew=2)
    ax.annotate("diverged", (step, ax.get_ylim()[1] * 0.95), xytext=(4, -4), textcoords="offset points",
                color=color, fontsize=9, va="top")


def curve(ax, history: History, split: str, metric: str, member: int = 0, label: str | None = None,
          percent: bool | None = None, **style):
    """Draw one metric of one member; returns the line. ``percent``: draw the values × 100 (True) or as
    they are (False); by default the metrics in :data:`FRACTIONS` are drawn in %."""
    steps, values = history.curve(split, metric, member)
    keep = np.isfinite(values)
    scale = _scale(metric, percent)
    line, = ax.plot(steps[keep], values[keep] * scale,
                    label=label if label is not None else LABELS.get((split, metric), f"{split} {metric}"),
                    **style)
    line.set_gid(IN_PERCENT if scale == 100.0 else AS_FRACTION)   # what the figure watch reads
    _mark_divergence(ax, history, member, line.get_color())
    return line


def training_curves(history: History, member: int = 0, metric: str = "acc", ax=None, title: str | None = None):
    """Train and test ``metric`` against the training step."""
    ax = _axes(ax)
    for split in ("train", "test"):
        curve(ax, history, split, metric, member, color=PALETTE[split])
    ax.set(xlabel="training step", ylabel=UNITS.get(metric, metric), title=title)
    legend_below(ax)
    return ax


def memorization_curves(history: History, member: int = 0, ax=None, title: str | None = None,
                        mark_peak: bool = True):
    """The label-noise picture: test accuracy, clean examples, and the corrupted examples
    measured against their noisy and their true labels (for a run without label noise: test
    and train accuracy)."""
    ax = _axes(ax)
    curve(ax, history, "test", "acc", member, color=PALETTE["test"], linewidth=2.2)
    if not any(r["split"] == "train_corrupted" and r["member"] == member for r in history.records):
        curve(ax, history, "train", "acc", member, color=PALETTE["train_clean"], label="train (no label noise)")
    else:
        curve(ax, history, "train_clean", "acc", member, color=PALETTE["train_clean"])
        curve(ax, history, "train_corrupted", "acc", member, color=PALETTE["train_corrupted"])
        curve(ax, history, "train_corrupted", "acc_true", member, color=PALETTE["train_corrupted_true"],
              linestyle="--")
    if mark_peak:
        steps, values = history.curve("test", "acc", member)
        if np.isfinite(values).any():
            best = int(np.nanargmax(values))
            ax.plot([steps[best]], [values[best] * 100], "o", color=PALETTE["test"])
            high = values[best] > 0.85   # near the top the label goes under the point, inside the axes
            ax.annotate(f"peak {values[best]:.0%}", (steps[best], values[best] * 100), xytext=(6, -8 if high else 6),
                        textcoords="offset points", fontsize=9, color=PALETTE["test"],
                        va="top" if high else "bottom",
                        bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.5))   # legible over curves
    ax.set(xlabel="training step", ylabel="accuracy (%)", ylim=(-2, 102), title=title)
    legend_below(ax)
    return ax


def compare(runs: dict[str, tuple[History, int]], split: str = "test", metric: str = "acc", ax=None,
            title: str | None = None):
    """Overlay one metric of several runs: ``{"CE": (history, member), "ELR": (history, member)}``."""
    ax = _axes(ax)
    for label, (history, member) in runs.items():
        curve(ax, history, split, metric, member, label=label, linewidth=2)
    ax.set(xlabel="training step", ylabel=f"{split} {UNITS.get(metric, metric)}", title=title)
    legend_below(ax)
    return ax


@dataclass
class Facets:
    """The figure of :func:`small_multiples`: its axes (one per panel) and the shared legend."""

    figure: plt.Figure
    axes: np.ndarray
    legend: object | None


def small_multiples(history: History, col: str, hue: str | None = None, split: str = "test",
                    metric: str = "acc", hue_labels: dict | None = None, height: float = 2.8,
                    title: str | None = None) -> Facets:
    """One panel per value of knob ``col`` (shared y axis), one line per value of knob ``hue``;
    a run that diverged is drawn up to where it did and marked."""
    columns = sorted({k[col] for k in history.knobs})
    hues = sorted({k[hue] for k in history.knobs}) if hue is not None else [None]
    colours = dict(zip(hues, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    fig, axes = plt.subplots(1, len(columns), figsize=(1.1 * height * len(columns), height), sharey=True,
                             squeeze=False, layout="constrained")
    axes = axes[0]
    for ax, value in zip(axes, columns):
        for member, knobs in enumerate(history.knobs):
            if knobs[col] != value:
                continue
            key = knobs[hue] if hue is not None else None
            label = (hue_labels or {}).get(key, key) if hue is not None else None
            curve(ax, history, split, metric, member, label=label or "", color=colours[key])
        ax.set(title=f"{col} = {value:g}" if isinstance(value, (int, float)) else f"{col} = {value}",
               xlabel="training step")
    axes[0].set_ylabel(f"{split} {UNITS.get(metric, metric)}")
    legend = None
    if hue is not None:
        handles, labels = axes[0].get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        legend = fig.legend(unique.values(), unique.keys(), loc="outside right center", frameon=False)
    if title:
        fig.suptitle(title, fontweight="bold")
    return Facets(fig, axes, legend)


def final_vs_knob(history: History, knob: str, hue: str | None = None, split: str = "test",
                  metric: str = "acc", summary: str | Sequence[str] = "final", ax=None, log: bool = False,
                  percent: bool = False, hue_labels: dict | None = None, xlabel: str | None = None,
                  title: str | None = None):
    """The ``final`` and/or ``peak`` value of a metric against a swept knob, one colour per ``hue``.

    ``summary``: ``"final"``, ``"peak"`` or both (final solid, peak dashed in the same colour).
    ``log``: a symlog x axis (a knob that includes 0); ``percent``: the knob in % (a rate).
    """
    ax = _axes(ax)
    summaries = [summary] if isinstance(summary, str) else list(summary)
    takes = {"final": History.final, "peak": History.peak}
    for name in summaries:
        if name not in takes:
            raise ValueError(f"summary must be 'final' or 'peak', got {name!r}")
    groups: dict = {}
    for member, knobs in enumerate(history.knobs):
        groups.setdefault(knobs.get(hue) if hue else None, []).append(member)
    xs_all = []
    for key, members in groups.items():
        members = sorted(members, key=lambda m: history.knobs[m][knob])
        xs = [history.knobs[m][knob] * (100 if percent else 1) for m in members]
        xs_all += xs
        label = "" if key is None else f"{(hue_labels or {}).get(key, f'{hue} = {key}')}"
        color = None
        for name in summaries:
            ys = [takes[name](history, split, metric, m) * _scale(metric) for m in members]
            text = ", ".join(t for t in (label, name if len(summaries) > 1 else "") if t) or None
            line, = ax.plot(xs, ys, "o-" if name == "final" else "o--", color=color, label=text,
                            alpha=1.0 if name == "final" else 0.6)
            color = line.get_color()
    if log:
        positive = [x for x in xs_all if x > 0]
        ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    what = " / ".join(summaries)
    ax.set(xlabel=xlabel or (f"{knob} (%)" if percent else knob),
           ylabel=f"{what} {split} {UNITS.get(metric, metric)}", title=title)
    if hue or len(summaries) > 1:
        legend_below(ax)
    return ax


def seed_band(ax, curves: dict, *, xlabel: str = "training step", ylabel: str = "", band: str = "range",
              percent: bool = False, title: str | None = None):
    """Curves measured on several seeds, each drawn as its mean over the seeds with a band (seaborn's
    ``lineplot``): ``curves = {label: (steps, values)}`` with ``values`` of shape (seeds, steps).

    ``band``: ``"range"`` (the band spans the lowest to the highest seed: seaborn's ``("pi", 100)``)
    or ``"sd"`` (one standard deviation either side). The legend says how many seeds and what the
    band is; a single seed is drawn as a line and the legend names it "one seed"."""
    import pandas as pd
    import seaborn as sns

    bands = {"range": ("pi", 100), "sd": "sd"}
    if band not in bands:
        raise ValueError(f"band must be one of {sorted(bands)}, got {band!r}")
    ax = _axes(ax)
    frames, seeds = [], set()
    for label, (steps, values) in curves.items():
        values = np.atleast_2d(np.asarray(values, dtype=float)) * (100.0 if percent else 1.0)
        steps = np.asarray(steps)
        if values.shape[1] != len(steps):
            raise ValueError(f"curve {label!r}: {values.shape[1]} values per seed for {len(steps)} steps")
        seeds.add(values.shape[0])
        for k, row in enumerate(values):
            frames.append(pd.DataFrame({"step": steps, "value": row, "seed": k, "curve": label}))
    data = pd.concat(frames, ignore_index=True)
    sns.lineplot(data=data, x="step", y="value", hue="curve", errorbar=bands[band], estimator="mean", ax=ax,
                 linewidth=2)
    counts = " / ".join(str(n) for n in sorted(seeds))
    what = "one seed" if seeds == {1} else (
        f"mean of {counts} seeds, band: " + ("lowest to highest seed" if band == "range" else "± one s.d."))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    handles, labels = ax.get_legend_handles_labels()
    legend_below(ax, handles, labels)
    ax.get_legend().set_title(what, prop={"size": 9})
    return ax


def heatmap(table, ax=None, *, labels=None, fmt: str = ".2g", cmap: str = "viridis", colorbar: str = "",
            vmin: float | None = None, vmax: float | None = None, blank: str = "", xlabel: str | None = None,
            ylabel: str | None = None, title: str | None = None, fontsize: int = 8, origin: str = "lower"):
    """A grid of numbers as coloured cells with their values written in them (seaborn's ``heatmap``):
    phase diagrams and knob × knob tables.

    ``table``: a DataFrame, rows × columns (its index and columns label the axes); a NaN cell is left
    uncoloured and carries its label, or the word ``blank`` (e.g. "diverged") where it has none.
    ``labels``: the text of each cell (a DataFrame of strings of the same shape), else the number in
    ``fmt``. ``origin="lower"`` puts the
    first row at the bottom (a y axis that grows upwards). seaborn picks black or white text by the
    cell's colour."""
    import pandas as pd
    import seaborn as sns

    ax = _axes(ax)
    data = pd.DataFrame(table).astype(float)
    if labels is not None:
        labels = pd.DataFrame(labels)
        if labels.shape != data.shape:
            raise ValueError(f"labels have shape {labels.shape}, the table {data.shape}")
    missing = data.isna()
    sns.heatmap(data, ax=ax, annot=labels.to_numpy() if labels is not None else True,
                fmt="" if labels is not None else fmt, cmap=cmap, vmin=vmin, vmax=vmax, mask=missing,
                cbar_kws={"label": colorbar}, annot_kws={"fontsize": fontsize}, linewidths=0.5, linecolor="white")
    for i, j in zip(*np.nonzero(missing.to_numpy())):             # seaborn writes nothing in a masked cell
        text = labels.iat[i, j] if labels is not None and labels.iat[i, j] else blank
        ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=fontsize, color="0.35")
    ax.grid(False)                                                 # the style's grid would cross blank cells
    if origin == "lower":
        ax.invert_yaxis()
    ax.set(xlabel=xlabel if xlabel is not None else (data.columns.name or ""),
           ylabel=ylabel if ylabel is not None else (data.index.name or ""), title=title)
    ax.tick_params(axis="y", rotation=0)
    return ax


def memorization_panels(runs: dict[str, History], title: str | None = None, height: float = 4.8,
                        panel_width: float = 5.0):
    """:func:`memorization_curves` of several runs side by side, one panel per ``{title: history}``, each
    ``panel_width`` inches wide with its legend below it in one column: two panels make a 10-in figure, whose
    smallest text (the 9-pt peak label) stays legible on the page (:func:`illegible_text`)."""
    fig, axes = plt.subplots(1, len(runs), figsize=(panel_width * len(runs), height), sharey=True,
                             layout="constrained", squeeze=False)
    for ax, (name, history) in zip(axes[0], runs.items()):
        memorization_curves(history, ax=ax, title=name)
        legend_below(ax, columns=1)          # two columns would run into the neighbouring panel's legend
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def occlusion_grid(x, y, maps: dict, examples: Sequence[int], title: str | None = None):
    """Images (top row) and their occlusion maps (one row per model in ``maps``, a name →
    (N, H, W) map of :func:`tdlab.core.augment.occlusion_map`) for the ``examples`` indices."""
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, len(examples), figsize=(2 * len(examples), 2.1 * rows), layout="constrained",
                             squeeze=False)
    image = None
    for col, index in enumerate(examples):
        axes[0, col].imshow(x[index, 0].cpu(), cmap="gray_r")
        axes[0, col].set_title(f"class {int(y[index])}")
        for row, (name, occ) in enumerate(maps.items(), start=1):
            image = axes[row, col].imshow(occ[index].cpu().clamp_min(0), cmap="magma", vmin=0, vmax=1)
            if col == 0:
                axes[row, col].set_ylabel(name, fontsize=11)
    for ax in axes.flat:
        ax.set(xticks=[], yticks=[])
    fig.colorbar(image, ax=axes[1:, :], shrink=0.8, label="drop of p(true class) when occluded")
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def readout_table(values: dict[str, object]) -> str:
    """A small HTML table of named numbers (the widget panel's readout), each shown by what its name says
    it is (:func:`tdlab.book.units.fmt`, the formatter the chapters' tables use too)."""
    rows = "".join(f"<tr><td style='padding:2px 12px 2px 0'>{k}</td><td><b>{units.fmt(v, k)}</b></td></tr>"
                   for k, v in values.items())
    return f"<table>{rows}</table>"


__all__: Sequence[str] = ["set_style", "seed_band", "heatmap", "curve", "training_curves", "memorization_curves",
                          "compare", "small_multiples", "final_vs_knob", "memorization_panels",
                          "occlusion_grid", "readout_table", "explorer", "legend_below"]


def reliability_diagrams(runs: dict, title: str | None = None, height: float = 4.4,
                         colors: Sequence[str] | None = None, columns: int | None = None):
    """Reliability diagrams side by side, one per run: ``runs`` maps a name to a
    :class:`tdlab.methods.noisy_labels.calibration.Reliability` (one model's bins). Top: each confidence bin's accuracy
    (bars) against the diagonal of perfect calibration, the gap to the bin's mean confidence
    hatched, the ECE in the panel's title; bottom: the fraction of examples in each bin. ``columns``: runs per
    row (``height`` each row); by default every run up to three, else half of them: four 3.3-in panels in a row
    would be scaled down on the page below legible text (:func:`illegible_text`), so they wrap to two rows."""
    colors = list(colors or COLORBLIND)
    columns = columns or (len(runs) if len(runs) <= 3 else math.ceil(len(runs) / 2))
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(2 * rows, columns, figsize=(3.3 * columns, height * rows), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * rows}, layout="constrained")
    for index in range(len(runs), rows * columns):          # a last row with fewer runs: its empty cells hidden
        row, column = divmod(index, columns)
        axes[2 * row, column].set_visible(False)
        axes[2 * row + 1, column].set_visible(False)
    for index, ((name, bins), color) in enumerate(zip(runs.items(), colors)):
        row, column = divmod(index, columns)
        top, bottom = axes[2 * row, column], axes[2 * row + 1, column]
        top.sharex(bottom)
        top.tick_params(labelbottom=False)              # the bottom panel's confidence axis serves both
        left, width = bins.edges[:-1], np.diff(bins.edges)
        filled = bins.count > 0
        top.bar(left[filled], bins.accuracy[filled] * 100, width=width[filled], align="edge", color=color,
                edgecolor="white", label="accuracy in the bin")
        gap_low = np.minimum(bins.accuracy, bins.confidence)[filled] * 100
        gap = np.abs(bins.accuracy - bins.confidence)[filled] * 100
        top.bar(left[filled], gap, bottom=gap_low, width=width[filled], align="edge", fill=False, hatch="///",
                edgecolor="#c44e52", linewidth=0.8, label="gap to mean confidence")
        top.plot([0, 1], [0, 100], color="#333333", linestyle="--", linewidth=1, label="perfect calibration")
        top.set(xlim=(0, 1), ylim=(0, 100), title=f"{name}\nECE {bins.ece:.1%}")
        if column == 0:
            top.set_ylabel("accuracy (%)")
        bottom.bar(left, bins.count / bins.count.sum() * 100, width=width, align="edge", color=color,
                   edgecolor="white")
        bottom.set(xlabel="confidence max p", ylim=(0, 100))
        if column == 0:
            bottom.set_ylabel("% of examples")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=10, frameon=False)
    if title:
        fig.suptitle(title, fontweight="bold")
    return fig


def calibration_curves(history: History, member: int = 0, ax=None, title: str | None = None, split: str = "test"):
    """Accuracy, mean confidence and ECE (all in %) of one run against the training step (the
    :func:`tdlab.methods.noisy_labels.calibration.monitor` metrics): confidence above accuracy is over-confidence."""
    ax = _axes(ax)
    for metric, label, style in (("acc", "accuracy", "-"), ("confidence", "mean confidence max p", "--"),
                                 ("ece", "ECE", ":")):
        steps, values = history.curve(split, metric, member)
        keep = np.isfinite(values)
        ax.plot(steps[keep], values[keep] * 100, style, color=PALETTE["test"] if metric != "ece" else "#c44e52",
                linewidth=2, label=f"{split} {label}")
    ax.set(xlabel="training step", ylabel="%", ylim=(0, 100), title=title)
    legend_below(ax, columns=3)
    return ax


__all__ = [*__all__, "reliability_diagrams", "calibration_curves"]
