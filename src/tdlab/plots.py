"""One visual style and the standard figures of training dynamics.

All figures read a :class:`~tdlab.history.History` and label their axes with
units (training step; accuracy in %; loss in nats). A diverged run is drawn up to
the step where it diverged and marked with a ✕ and the word "diverged".
"""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from tdlab.history import History

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


def set_style() -> None:
    """The book's look: seaborn whitegrid, colour-blind palette, readable fonts."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 120, "axes.titleweight": "bold",
                         "legend.frameon": False, "figure.autolayout": False})


def _scale(metric: str) -> float:
    return 100.0 if metric.startswith("acc") else 1.0


def _axes(ax, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _mark_divergence(ax, history: History, member: int, color) -> None:
    step = history.diverged_at[member]
    if step is None:
        return
    ax.axvline(step, color=color, linestyle=":", linewidth=1)
    ax.plot([step], [ax.get_ylim()[1] * 0.95], marker="x", color=color, markersize=10, mew=2)
    ax.annotate("diverged", (step, ax.get_ylim()[1] * 0.95), xytext=(4, -4), textcoords="offset points",
                color=color, fontsize=9, va="top")


def curve(ax, history: History, split: str, metric: str, member: int = 0, label: str | None = None,
          **style):
    """Draw one metric of one member; returns the line."""
    steps, values = history.curve(split, metric, member)
    keep = np.isfinite(values)
    line, = ax.plot(steps[keep], values[keep] * _scale(metric),
                    label=label if label is not None else LABELS.get((split, metric), f"{split} {metric}"),
                    **style)
    _mark_divergence(ax, history, member, line.get_color())
    return line


def training_curves(history: History, member: int = 0, metric: str = "acc", ax=None, title: str | None = None):
    """Train and test ``metric`` against the training step."""
    ax = _axes(ax)
    for split in ("train", "test"):
        curve(ax, history, split, metric, member, color=PALETTE[split])
    ax.set(xlabel="training step", ylabel=UNITS.get(metric, metric), title=title)
    ax.legend()
    return ax


def memorization_curves(history: History, member: int = 0, ax=None, title: str | None = None,
                        mark_peak: bool = True):
    """The label-noise picture: test accuracy, clean examples, and the corrupted examples
    measured against their noisy and their true labels."""
    ax = _axes(ax)
    curve(ax, history, "test", "acc", member, color=PALETTE["test"], linewidth=2.2)
    curve(ax, history, "train_clean", "acc", member, color=PALETTE["train_clean"])
    curve(ax, history, "train_corrupted", "acc", member, color=PALETTE["train_corrupted"])
    curve(ax, history, "train_corrupted", "acc_true", member, color=PALETTE["train_corrupted_true"],
          linestyle="--")
    if mark_peak:
        steps, values = history.curve("test", "acc", member)
        if np.isfinite(values).any():
            best = int(np.nanargmax(values))
            ax.plot([steps[best]], [values[best] * 100], "o", color=PALETTE["test"])
            ax.annotate(f"peak {values[best]:.0%}", (steps[best], values[best] * 100), xytext=(6, 6),
                        textcoords="offset points", fontsize=9, color=PALETTE["test"])
    ax.set(xlabel="training step", ylabel="accuracy (%)", ylim=(-2, 102), title=title)
    ax.legend(fontsize=8, loc="center right")
    return ax


def compare(runs: dict[str, tuple[History, int]], split: str = "test", metric: str = "acc", ax=None,
            title: str | None = None):
    """Overlay one metric of several runs: ``{"CE": (history, member), "ELR": (history, member)}``."""
    ax = _axes(ax)
    for label, (history, member) in runs.items():
        curve(ax, history, split, metric, member, label=label, linewidth=2)
    ax.set(xlabel="training step", ylabel=f"{split} {UNITS.get(metric, metric)}", title=title)
    ax.legend()
    return ax


def small_multiples(history: History, col: str, hue: str | None = None, split: str = "test",
                    metric: str = "acc", hue_labels: dict | None = None, height: float = 2.8,
                    title: str | None = None):
    """One panel per value of knob ``col``, one line per value of knob ``hue``."""
    frame = history.frame
    frame = frame[(frame["split"] == split) & (frame["metric"] == metric)].copy()
    frame["value"] = frame["value"] * _scale(metric)
    if hue is not None and hue_labels:
        frame[hue] = frame[hue].map(lambda v: hue_labels.get(v, v))
    grid = sns.relplot(data=frame, x="step", y="value", col=col, hue=hue, kind="line", height=height,
                       aspect=1.1, facet_kws={"sharey": True}, errorbar=None,
                       palette="colorblind" if hue else None)
    grid.set_axis_labels("training step", f"{split} {UNITS.get(metric, metric)}")
    grid.set_titles(col_template=f"{col} = {{col_name}}")
    for (member, diverged_step) in enumerate(history.diverged_at):
        if diverged_step is not None:
            value = history.knobs[member][col]
            for ax, name in zip(grid.axes.flat, grid.col_names):
                if name == value:
                    ax.axvline(diverged_step, color="k", linestyle=":")
                    ax.annotate("diverged", (diverged_step, 5), fontsize=8)
    if title:
        grid.figure.suptitle(title, y=1.04, fontweight="bold")
    return grid


def final_vs_knob(history: History, knob: str, hue: str | None = None, split: str = "test",
                  metric: str = "acc", summary: str = "final", ax=None, log: bool = False,
                  hue_labels: dict | None = None, title: str | None = None):
    """The ``final`` (or ``peak``) value of a metric against a swept knob, one line per ``hue``."""
    ax = _axes(ax)
    take = History.final if summary == "final" else History.peak
    rows = {}
    for member, knobs in enumerate(history.knobs):
        key = knobs.get(hue) if hue else None
        rows.setdefault(key, []).append((knobs[knob], take(history, split, metric, member) * _scale(metric)))
    for key, points in rows.items():
        points.sort()
        xs, ys = zip(*points)
        label = None if key is None else f"{hue} = {(hue_labels or {}).get(key, key)}"
        ax.plot(xs, ys, "o-", label=label)
    if log:
        ax.set_xscale("symlog", linthresh=min(x for pts in rows.values() for x, _ in pts if x > 0))
    ax.set(xlabel=knob, ylabel=f"{summary} {split} {UNITS.get(metric, metric)}", title=title)
    if hue:
        ax.legend()
    return ax


def readout_table(values: dict[str, object]) -> str:
    """A small HTML table of named numbers (the widget panel's readout)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.1%}" if 0 <= v <= 1 else f"{v:.4g}"
        return str(v)

    rows = "".join(f"<tr><td style='padding:2px 12px 2px 0'>{k}</td><td><b>{fmt(v)}</b></td></tr>"
                   for k, v in values.items())
    return f"<table>{rows}</table>"


__all__: Sequence[str] = ["set_style", "curve", "training_curves", "memorization_curves", "compare",
                          "small_multiples", "final_vs_knob", "readout_table"]
