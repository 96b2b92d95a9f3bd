"""The phases of grokking with corrupted labels (Doshi, Das, He & Gromov 2023).

A network trained on modular arithmetic in which a fraction ξ of the training labels
was replaced by random ones ends in one of a few *phases*, told apart by four
accuracies at the end of training:

- test accuracy (clean labels): does it generalize?
- accuracy on the clean training examples: does it fit the rule where the labels are right?
- accuracy on the corrupted training examples against their *given* (wrong) labels:
  does it memorize them?
- the same examples against their *true* labels: does it "invert" them, i.e. predict
  the right answer despite the wrong label it was trained on?

The paper's phases, as :func:`phase` decides them (a network *generalizes* when its test
accuracy is at least ``generalizes``, 0.8 by default — chance is 1/p — and *fits* a set
of examples when its accuracy there is at least ``fits``, 0.9 by default):

======================  ======================================================
phase                   what the network does
======================  ======================================================
coexistence             generalizes *and* memorizes the corrupted labels
partial inversion       generalizes; predicts the true label of only part of the
                        corrupted examples and memorizes only part of them
full inversion          generalizes and predicts the true label of (almost) every
                        corrupted example: train accuracy on the given labels
                        ≈ (1 − ξ) + ξ/p
memorization            fits every training label, does not generalize
confusion               does not generalize, fits the clean examples but not the
                        corrupted ones
forgetting              fits neither the clean training examples nor the test set
generalization          no corrupted examples at all (ξ = 0) and it generalizes
======================  ======================================================
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tdlab.core import models, recipes
from tdlab.core.config import check_range
from tdlab.core.history import History

PHASES = ("coexistence", "partial inversion", "full inversion", "memorization", "confusion",
          "forgetting", "generalization")


def full_inversion_accuracy(noise_rate: float, p: int) -> float:
    """Train accuracy on the given labels of a network that predicts every true label.

    A fraction ξ of the labels was redrawn uniformly from all p classes, so a fraction
    ξ/p of them is right by chance: (1 − ξ) + ξ/p (Doshi et al. 2023).
    """
    check_range("noise rate ξ", noise_rate, 0, 1)
    check_range("p", p, 2)
    return (1 - noise_rate) + noise_rate / p


def phase(test: float, clean: float, corrupted: float | None = None, corrupted_true: float | None = None,
          *, generalizes: float = 0.8, fits: float = 0.9) -> str:
    """The phase name (one of :data:`PHASES`) from the four final accuracies.

    - ``test``: test accuracy; ``clean``: accuracy on the uncorrupted training examples;
    - ``corrupted`` / ``corrupted_true``: accuracy on the corrupted training examples
      against their given and their true labels (``None`` or NaN when there are none).
    - A network *generalizes* when ``test ≥ generalizes``, *fits* a set when its
      accuracy there is ``≥ fits``.
    """
    for name, value in (("generalizes", generalizes), ("fits", fits)):
        check_range(f"threshold {name}", value, 0, 1, low_open=True)
    for name, value in (("test", test), ("clean", clean)):
        check_range(f"{name} accuracy", value, 0, 1)
    no_corruption = corrupted is None or corrupted_true is None or math.isnan(corrupted) \
        or math.isnan(corrupted_true)
    if not no_corruption:
        check_range("corrupted accuracy", corrupted, 0, 1)
        check_range("corrupted true-label accuracy", corrupted_true, 0, 1)
    general = test >= generalizes
    if clean < fits and not general:
        return "forgetting"
    if no_corruption:
        return "generalization" if general else "memorization"
    if general:
        if corrupted >= fits:
            return "coexistence"
        if corrupted_true >= fits:
            return "full inversion"
        return "partial inversion"
    return "memorization" if corrupted >= fits else "confusion"


def final_accuracies(history: History, member: int = 0) -> dict[str, float]:
    """The four accuracies :func:`phase` reads, at the last evaluation of one member."""
    def last(split: str, metric: str) -> float:
        try:
            return history.final(split, metric, member)
        except KeyError:
            return float("nan")

    return {"test": last("test", "acc"), "clean": last("train_clean", "acc") if _has(history, "train_clean")
            else last("train", "acc"),
            "corrupted": last("train_corrupted", "acc"), "corrupted_true": last("train_corrupted", "acc_true")}


def _has(history: History, split: str) -> bool:
    return any(r["split"] == split for r in history.records)


def phase_of(history: History, member: int = 0, **thresholds) -> str:
    """The phase of one member of a run or sweep, from its final accuracies."""
    values = final_accuracies(history, member)
    if any(math.isnan(values[k]) for k in ("test", "clean")):
        return "diverged"
    return phase(**values, **thresholds)


def phase_table(history: History, x: str = "weight_decay", y: str = "noise_rate", **thresholds) -> pd.DataFrame:
    """One row per member: the knobs ``x`` and ``y``, the four final accuracies and the phase."""
    rows = []
    for member, knobs in enumerate(history.knobs):
        if x not in knobs or y not in knobs:
            raise ValueError(f"the sweep did not vary {x!r} and {y!r}; its knobs are {sorted(knobs)}")
        rows.append({x: knobs[x], y: knobs[y], **final_accuracies(history, member),
                     "phase": phase_of(history, member, **thresholds)})
    return pd.DataFrame(rows)


PHASE_COLORS = {"coexistence": "#56B4E9", "partial inversion": "#009E73", "full inversion": "#F0E442",
                "memorization": "#CC79A7", "confusion": "#E69F00", "forgetting": "#999999",
                "generalization": "#0072B2", "diverged": "#000000"}


def plot_phases(table: pd.DataFrame, x: str = "weight_decay", y: str = "noise_rate", ax=None,
                annotate: str | None = "test"):
    """The phase diagram as a seaborn heatmap: one cell per (x, y) setting of :func:`phase_table`,
    coloured by its phase (:data:`PHASE_COLORS`, legend beside the axes), a setting the table lacks
    left blank.

    ``annotate``: a column of ``table`` written into each cell in %, or None.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5), layout="constrained")
    present = [name for name in PHASE_COLORS if name in set(table["phase"])]
    unknown = set(table["phase"]) - set(PHASE_COLORS)
    if unknown:
        raise ValueError(f"phases without a colour: {sorted(unknown)}; known: {list(PHASE_COLORS)}")
    codes = table.assign(code=table["phase"].map(present.index)).pivot(index=y, columns=x, values="code")
    codes = codes.sort_index().sort_index(axis=1).astype(float)
    labels = None
    if annotate is not None:
        cells = table.pivot(index=y, columns=x, values=annotate).reindex_like(codes)
        labels = cells.map(lambda v: f"{v * 100:.0f}" if np.isfinite(v) else "").to_numpy()
    sns.heatmap(codes, ax=ax, cmap=ListedColormap([PHASE_COLORS[n] for n in present]), vmin=-0.5,
                vmax=len(present) - 0.5, mask=codes.isna(), cbar=False, annot=labels if labels is not None else False,
                fmt="", annot_kws={"fontsize": 9}, linewidths=2, linecolor="white")
    ax.invert_yaxis()                                              # the y knob grows upwards
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "))
    ax.set_xticklabels([f"{v:g}" for v in codes.columns])
    ax.set_yticklabels([f"{v:g}" for v in codes.index], rotation=0)
    ax.grid(False)
    ax.legend(handles=[Patch(color=PHASE_COLORS[n], label=n) for n in present], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax


# ----------------------------------------------------------------- the lazy-to-rich delay (Kumar et al. 2024)


def lazy_rich_times(history: History, member: int = 0, train_drop: float = 0.1,
                    test_drop: float = 0.1, interpolate: bool = False) -> dict[str, float]:
    """When a run of :func:`tdlab.methods.grokking.lazy_to_rich.recipe` fits and when it generalizes (Kumar, Bordelon,
    Gershman & Pehlevan 2024), read off its ``train``/``mse``, ``test``/``mse`` and
    ``test``/``kernel_mse`` curves:

    - ``fit step``: the first evaluation at which the train loss is at most ``train_drop`` × its
      initial value;
    - ``generalization step``: the first at which the test loss is at most ``test_drop`` × its initial
      value (the authors' phase diagram uses one level for both; a chapter may ask less of the test
      loss, whose lazy plateau can lie above a tenth of its start);
    - ``delay``: their difference in steps, the authors' "amount of grokking" (their phase diagram
      subtracts the steps at which the two losses first fall below a level);
    - ``test / plateau when fit``: the test loss at the fit step over the plateau (≈ 1: the test loss
      sits at the initial kernel's level while the train loss has fallen);
    - ``final test / plateau`` and ``best test / plateau``.

    A level never reached gives ``inf`` (and an infinite delay when only generalization is missing).

    ``interpolate=True`` reads each crossing between the two evaluations around it instead of at the
    first evaluation past it: the step at which the straight line through them on log-log axes (log
    loss against log step; linear in the step from step 0) meets the level — a step finer than the
    evaluation grid, so that a ratio of two early steps does not move with where the grid falls. The
    test loss "when fit" is then read on the same line at that step.
    """
    check_range("train_drop", train_drop, 0, 1, low_open=True)
    check_range("test_drop", test_drop, 0, 1, low_open=True)
    steps, train = history.curve("train", "mse", member)
    test = history.curve("test", "mse", member)[1]
    plateau = float(history.curve("test", "kernel_mse", member)[1][0])

    def first(values: np.ndarray, level: float) -> float:
        hit = np.nonzero(values <= level)[0]
        if not len(hit):
            return math.inf
        k = int(hit[0])
        if not interpolate or k == 0 or not values[k - 1] > level or not values[k] > 0:
            return float(steps[k])
        s0, s1, v0, v1 = float(steps[k - 1]), float(steps[k]), float(values[k - 1]), float(values[k])
        if s0 <= 0:                                   # from step 0: linear in the step
            return s0 + (s1 - s0) * (v0 - level) / (v0 - v1)
        t = math.log(v0 / level) / math.log(v0 / v1)
        return math.exp(math.log(s0) + t * math.log(s1 / s0))

    def read(values: np.ndarray, step: float) -> float:
        k = int(np.searchsorted(steps, step))
        if not interpolate or k == 0 or steps[k] == step or not (values[k - 1] > 0 and values[k] > 0):
            return float(values[k])
        s0, s1 = float(steps[k - 1]), float(steps[k])
        t = (step - s0) / (s1 - s0) if s0 <= 0 else math.log(step / s0) / math.log(s1 / s0)
        return float(math.exp((1 - t) * math.log(values[k - 1]) + t * math.log(values[k])))

    fit = first(train, train_drop * train[0])
    generalized = first(test, test_drop * test[0])
    when_fit = read(test, fit) / plateau if math.isfinite(fit) else math.nan
    return {"fit step": fit, "generalization step": generalized,
            "delay": generalized - fit if math.isfinite(fit) else math.nan,
            "test / plateau when fit": when_fit, "final test / plateau": float(test[-1]) / plateau,
            "best test / plateau": float(np.nanmin(test)) / plateau,
            "best test / initial": float(np.nanmin(test)) / float(test[0])}


def until(history: History, step: int) -> History:
    """The history of the first ``step`` steps of every member: its evaluations up to ``step``, its
    knob ``steps`` set to ``step``, no trained model (the one it holds trained longer).

    With a constant learning rate and full-batch training, a run's first ``step`` steps are those of
    a run of ``step`` steps, so a long run also gives a shorter budget's cell of a phase diagram.
    """
    check_range("step", step, 0)
    if not any(r["step"] == step for r in history.records):
        raise ValueError(f"no evaluation at step {step}; evaluated at "
                         f"{sorted({r['step'] for r in history.records})[:5]}...")
    records = [dict(r) for r in history.records if r["step"] <= step]
    knobs = [{**k, "steps": step} if "steps" in k else dict(k) for k in history.knobs]
    diverged = [d if d is not None and d <= step else None for d in history.diverged_at]
    return History(records, knobs, diverged, history.seconds, [None] * history.num_members)


# ----------------------------------------------------------------- the paper's setup


def paper_recipe(seed: int = 0) -> "recipes.Recipe":
    """Doshi, Das, He & Gromov's setup (the authors' repo ``d-doshi/Grokking``, ``Training_scripts/phase_diagrams_wd.py``
    and the saved ``Notebooks/Grokking_with_label_corruption.ipynb``), for a GPU: addition mod p = 97 (l.53), half of
    the p² pairs for training (the notebook's fraction 0.5), ξ = 0.35 of the training labels redrawn uniformly from all
    p classes; the quadratic network f(x) = W·(U x_a + V x_b)² of width N = 500 (l.52;
    :class:`tdlab.core.models.QuadraticModularNet`); mean squared error against the one-hot target (l.124,
    ``losstype='MSE'``); full-batch AdamW at lr 10⁻² (l.57), β = (0.9, 0.98) (l.112), one step an epoch; 5000
    steps, the longest of the notebook's budgets (the forgetting run, weight decay 20: the chapter trains each
    regime for its own budget, ``steps=``), the accuracies read every 50 steps. The weight decay is the members'
    knob (the regimes: 0, 5, 15, 20). ``seed`` draws the split, the corrupted labels and the initialisation."""
    p, width = 97, 500
    return recipes.modular_addition(p, lambda: models.QuadraticModularNet(p, width), seed=seed, train_fraction=0.5,
                                    loss="mse", optimizer="adamw", lr=1e-2, betas=(0.9, 0.98), steps=5000,
                                    eval_every=50, noise="uniform", noise_rate=0.35, noise_seed=seed,
                                    data_seed=seed).but(seed=seed)
