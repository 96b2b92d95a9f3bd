"""Large-batch training as Hoffer, Hubara & Soudry (NeurIPS 2017) fix it: "Train longer, generalize better".

Three changes that, the paper says, turn a large-batch run into one that generalizes like the
small-batch run it replaces (official code: eladhoffer/bigBatch, ``main_gbn.py``); the book's chapter
measures which of them do at its scale:

- :func:`sqrt_lr` — the learning rate scaled with the square root of the batch ratio,
  η = η₀ √(B / B₀) (Sec. 3, Eq. 6): the covariance of the update then matches small batches;
- ghost batch norm — :class:`tdlab.core.models.GhostBatchNorm`, batch statistics over ghost batches
  of B_g examples inside the large batch (Sec. 4, Algorithm 1);
- :func:`regime_steps` — *regime adaptation* (Sec. 5): as many updates as the small batch made,
  every epoch count and schedule milestone multiplied by B / B₀.

and one diagnostic: the distance the weights travel from their initialisation,
‖w_t − w_0‖, which the paper finds to grow like log t while the learning rate is high
(Sec. 3, Fig. 2; the "ultra-slow diffusion" argument), measured by :func:`weight_distance`,
fitted by :func:`log_fit` and by a free power law (:func:`power_fit`, whose exponent decides between
log t and √t), and compared with :func:`uncorrelated_distance`, the distance a walk of the same steps
would reach if they were uncorrelated (ordinary diffusion).

:func:`recipe` makes batch size, ghost batch size, learning rate, weight decay, the √ scaling
and regime adaptation knobs of one :class:`~tdlab.core.recipes.Recipe`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tdlab.core.config import check_range
from tdlab.core.models import GhostBatchNorm, _activation
from tdlab.core.monitors import Evaluation
from tdlab.core.recipes import Recipe


def sqrt_lr(lr: float, batch_size: int, base_batch: int) -> float:
    """η = η₀ √(B / B₀): the small-batch rate η₀ (batch B₀) scaled for batch B (Hoffer et al. 2017, Eq. 6)."""
    check_range("batch_size", batch_size, 1)
    check_range("base_batch", base_batch, 1)
    return lr * math.sqrt(batch_size / base_batch)


def regime_steps(epochs: float, num_train: int, batch_size: int, base_batch: int, adapt: bool) -> int:
    """The updates of a run of ``epochs`` epochs at batch B: ⌊n / B⌋ per epoch, times B / B₀ with regime
    adaptation (Sec. 5), which gives the large batch the updates of the small one (epochs × ⌊n / B₀⌋)."""
    per_epoch = max(1, num_train // batch_size)
    if adapt:
        per_epoch = max(1, num_train // base_batch)          # epochs × B/B₀ at ⌊n/B⌋ updates each
    return max(1, int(round(epochs * per_epoch)))


def step_schedule(milestones: Sequence[float], factor: float = 0.1) -> Callable[[int, int], Callable[[int], float]]:
    """``(steps) -> multiplier``: the learning rate × ``factor`` at each milestone, given as fractions of
    the run, so that regime adaptation stretches the milestones with the run (the paper multiplies
    every milestone epoch by B / B₀)."""
    def make(steps: int) -> Callable[[int], float]:
        marks = [int(round(m * steps)) for m in milestones]
        return lambda step: factor ** sum(step >= mark for mark in marks)
    return make


class BatchNormMLP(nn.Module):
    """x → [Linear → GhostBatchNorm → ReLU] × depth → Linear: the paper's F1 (Keskar et al. 2017's
    MNIST network, five hidden layers of 512 with batch norm) at any width and depth.
    ``ghost_batch_size=None`` is plain batch norm."""

    def __init__(self, in_features: int, num_classes: int, width: int = 512, depth: int = 5,
                 ghost_batch_size: int | None = None, activation: str = "relu"):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += [nn.Linear(features, width), GhostBatchNorm(width, ghost_batch_size), _activation(activation)]
            features = width
        layers.append(nn.Linear(features, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class GhostFactory:
    """A model factory whose ghost batch size is a recipe knob (set by :meth:`derive` before each
    engine call builds its models, as :class:`tdlab.core.recipes.ScaledInit` does for the init scale)."""

    def __init__(self, build: Callable[[int | None], nn.Module]):
        self.build, self.ghost_batch = build, None

    def __call__(self) -> nn.Module:
        return self.build(self.ghost_batch)


@dataclass
class Regime:
    """The derivation of :func:`recipe`: the chapter's knobs → the engine's ``lr``, ``steps``,
    ``schedule_name``, ``eval_every`` and ``batch_size``."""

    num_train: int
    base_batch: int
    factory: GhostFactory
    milestones: Sequence[float] = ()
    evaluations: int = 25

    def __call__(self, batch_size: int = 128, ghost_batch: int = 0, lr: float = 0.1,
                 sqrt_scaling: bool = False, regime_adaptation: bool = False, epochs: float = 10.0) -> dict:
        self.factory.ghost_batch = ghost_batch if ghost_batch and ghost_batch < batch_size else None
        steps = regime_steps(epochs, self.num_train, batch_size, self.base_batch, regime_adaptation)
        step_lr = sqrt_lr(lr, batch_size, self.base_batch) if sqrt_scaling else lr
        return {"batch_size": batch_size, "lr": step_lr, "steps": steps,
                "eval_every": max(1, steps // self.evaluations),
                "schedule_name": step_schedule(self.milestones)(steps) if self.milestones else "constant",
                "tags": {"step_lr": step_lr}}


def recipe(data: Callable, num_train: int, build: Callable[[int | None], nn.Module], base_batch: int,
           milestones: Sequence[float] = (), evaluations: int = 25, **settings) -> Recipe:
    """A :class:`~tdlab.core.recipes.Recipe` with the knobs of the paper's recipe:

    - ``batch_size`` B, ``ghost_batch`` B_g (0 or ≥ B: plain batch norm), ``lr`` η₀ (the rate of the
      small batch B₀ = ``base_batch``), ``weight_decay``;
    - ``sqrt_scaling`` (η = η₀ √(B/B₀)), ``regime_adaptation`` (the updates of B₀), ``epochs``.

    ``build(ghost_batch_size) -> model``; ``milestones``: fractions of the run where the rate drops ×0.1
    (none: constant). The History records the knobs; ``step_lr`` is the rate the optimizer used.
    """
    factory = GhostFactory(build)
    regime = Regime(num_train, base_batch, factory, tuple(milestones), evaluations)

    def derive(batch_size: int = base_batch, ghost_batch: int = 0, lr: float = settings.get("lr", 0.1),
               sqrt_scaling: bool = False, regime_adaptation: bool = False, epochs: float = 10.0) -> dict:
        return regime(batch_size, ghost_batch, lr, sqrt_scaling, regime_adaptation, epochs)

    return Recipe(data, factory, {"progress": False, **settings}, derive=(derive,))


# ----------------------------------------------------------------- ‖w_t − w_0‖ and its fit


def weight_distance(names: Sequence[str] | None = None) -> Callable[[Evaluation], dict]:
    """A monitor of ‖w_t − w_0‖, the Euclidean distance of the weights ``names`` (all parameters when
    ``None``) from their values at step 0 of the engine call (Hoffer et al. 2017, Sec. 3 and Fig. 2,
    where it is the first layer's): ``("train", "weight_distance")`` per member; and the distance
    from the previous evaluation, ``("train", "weight_step")`` (0 at the first), from which
    :func:`uncorrelated_distance` builds the control of the log t law."""
    initial: dict[int, dict[str, torch.Tensor]] = {}
    previous: dict[int, dict[str, torch.Tensor]] = {}

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return math.sqrt(sum(float(((v - b[k]) ** 2).sum()) for k, v in a.items()))

    def monitor(ev: Evaluation) -> dict:
        values, steps = [], []
        for member in range(ev.members):
            params = ev.parameters(member)
            chosen = {k: v.detach().clone() for k, v in params.items() if names is None or k in names}
            if ev.step == 0 or member not in initial:
                initial[member] = previous[member] = chosen
            values.append(distance(chosen, initial[member]))
            steps.append(distance(chosen, previous[member]))
            previous[member] = chosen
        return {("train", "weight_distance"): values, ("train", "weight_step"): steps}

    return monitor


def uncorrelated_distance(steps) -> np.ndarray:
    """The distance from the start that a walk made of the same steps would reach if the steps were
    uncorrelated: √(Σ_{j≤k} ‖Δ_j‖²) after the k-th step, for ``steps`` = ‖Δ_1‖, ‖Δ_2‖, ... (the
    ``weight_step`` curve of :func:`weight_distance`). Ordinary diffusion: with steps of a constant
    size it grows like √t."""
    steps = np.asarray(steps, dtype=float)
    return np.sqrt(np.cumsum(steps ** 2))


@dataclass
class Fit:
    """d ≈ a + b·f(t), by least squares: the intercept, slope and the fraction of variance explained."""

    intercept: float
    slope: float
    r2: float

    def __call__(self, t, transform=np.log) -> np.ndarray:
        return self.intercept + self.slope * transform(np.asarray(t, dtype=float))


def linear_fit(x, y) -> Fit:
    """y ≈ a + b x by least squares, with R² = 1 − Σ residual² / Σ (y − ȳ)²."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    return Fit(float(intercept), float(slope), 1 - float((residual ** 2).sum()) / total if total else math.nan)


def log_fit(t, d) -> Fit:
    """‖w_t − w_0‖ ≈ a + b log t (Hoffer et al. 2017, Sec. 3): the fit over the steps t > 0 given."""
    t, d = np.asarray(t, dtype=float), np.asarray(d, dtype=float)
    keep = t > 0
    return linear_fit(np.log(t[keep]), d[keep])


@dataclass
class PowerFit:
    """d ≈ a + c·(t^β − 1)/β by least squares with the exponent β free (the Box–Cox family: β = 0 is
    a + c log t, β = ½ is a + c′√t up to the intercept, β = 1 a straight line in t)."""

    intercept: float
    slope: float
    beta: float
    r2: float

    def __call__(self, t) -> np.ndarray:
        return self.intercept + self.slope * box_cox(np.asarray(t, dtype=float), self.beta)


def box_cox(t: np.ndarray, beta: float) -> np.ndarray:
    """(t^β − 1)/β, and log t at β = 0 (its limit)."""
    t = np.asarray(t, dtype=float)
    return np.log(t) if abs(beta) < 1e-12 else (np.power(t, beta) - 1) / beta


def power_fit(t, d, betas: Sequence[float] = tuple(np.round(np.arange(-1.0, 1.5001, 0.005), 3))) -> PowerFit:
    """d ≈ a + c·(t^β − 1)/β over the steps t > 0 given: for every β of ``betas`` the least-squares a
    and c, keeping the β with the smallest residual — the free power law that decides between the
    paper's log t (β = 0) and the √t of ordinary diffusion (β = ½)."""
    t, d = np.asarray(t, dtype=float), np.asarray(d, dtype=float)
    keep = t > 0
    t, d = t[keep], d[keep]
    best = None
    for beta in betas:
        fit = linear_fit(box_cox(t, beta), d)
        if best is None or fit.r2 > best[1].r2:
            best = (float(beta), fit)
    beta, fit = best
    return PowerFit(fit.intercept, fit.slope, beta, fit.r2)


# ----------------------------------------------------------------- the chapter's setups and comparisons


def mnist1d_recipe(base_batch: int = 32, width: int = 128, depth: int = 3, lr: float = 0.03,
                   milestones: Sequence[float] = (0.5, 0.75), evaluations: int = 125,
                   first_layer: Sequence[str] = ("net.1.weight",)) -> Recipe:
    """The chapter's CPU setup: MNIST-1D (4000 training sequences of length 40), an MLP of ``depth``
    hidden layers of ``width`` units, each Linear → ghost (or plain) batch norm → ReLU (the shape of the
    paper's F1, narrower and shallower); SGD with momentum 0.9 and weight decay 10⁻⁴ (the official
    code's defaults), η₀ = ``lr`` for the small batch ``base_batch``, ÷10 at ``milestones`` of the run;
    ‖w_t − w_0‖ of ``first_layer`` monitored (the official code's ``step_dist_n0``)."""
    from tdlab.core import data

    ds = data.load("mnist1d")
    return recipe(lambda: ds, ds.num_train, lambda g: BatchNormMLP(40, 10, width, depth, g), base_batch=base_batch,
                  optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr=lr, milestones=milestones,
                  evaluations=evaluations, monitors=[weight_distance(list(first_layer))])


def mnist_f1_recipe(base_batch: int = 128, lr: float = 0.1, milestones: Sequence[float] = (0.25, 0.5, 0.75),
                    evaluations: int = 50, first_layer: Sequence[str] = ("net.1.weight",)) -> Recipe:
    """The paper's F1 on MNIST (Keskar et al. 2017's network, ``models/mnist_f1.py`` of the official
    code): 784 → 5 × [512, batch norm, ReLU] → 10, SGD momentum 0.9, weight decay 10⁻⁴, η₀ = 0.1 for
    B₀ = 128, ÷10 at a quarter, half and three quarters of the run (the official regime: epochs 10, 20, 30
    of 40)."""
    from tdlab.core import data

    return recipe(lambda: data.load("mnist"), 60_000, lambda g: BatchNormMLP(784, 10, 512, 5, g),
                  base_batch=base_batch, optimizer="sgd", momentum=0.9, weight_decay=1e-4, lr=lr,
                  milestones=milestones, evaluations=evaluations, monitors=[weight_distance(list(first_layer))])


def stages(small: int, large: int, epochs: float, long_epochs: float) -> dict[str, dict]:
    """The chapter's settings, each a dict of :func:`recipe` knobs.

    - The under-fitting regime, ``epochs`` epochs: the small batch B₀, the large batch B, then,
      cumulatively, √ lr and ghost batch norm (ghost batches of B₀), the first columns of the paper's
      Table 1.
    - The base regime where both fit the training set, ``long_epochs`` epochs: the small batch; the large
      batch with √ lr and ghost batch norm (the paper's "+LR +GBN" column, whose gap to the small batch is
      the generalization gap); the same with plain batch norm (the official ``main_normal.py --lr_bb_fix``),
      which isolates ghost batch norm where both fit; and that large batch with regime adaptation
      (B / B₀ times the epochs: the small batch's updates; Sec. 5), the paper's last column."""
    gbn = dict(batch_size=large, sqrt_scaling=True, ghost_batch=small)
    return {"small batch": dict(batch_size=small, epochs=epochs),
            "large batch": dict(batch_size=large, epochs=epochs),
            "+ √ lr": dict(batch_size=large, sqrt_scaling=True, epochs=epochs),
            "+ ghost BN": dict(gbn, epochs=epochs),
            "small batch, long run": dict(batch_size=small, epochs=long_epochs),
            "large batch, long run": dict(gbn, epochs=long_epochs),
            "plain BN, long run": dict(batch_size=large, sqrt_scaling=True, epochs=long_epochs),
            "+ regime adaptation": dict(gbn, regime_adaptation=True, epochs=long_epochs)}


def stage_table(num_train: int, lr: float, settings: dict[str, dict], small: int) -> dict[str, dict]:
    """Per setting: its batch, ghost batch, the learning rate the optimizer uses, its epochs and updates."""
    rows = {}
    for name, s in settings.items():
        e = s["epochs"] * (s["batch_size"] / small if s.get("regime_adaptation") else 1)
        rows[name] = {"batch": s["batch_size"], "ghost batch": s.get("ghost_batch") or "—",
                      "learning rate": f"{sqrt_lr(lr, s['batch_size'], small) if s.get('sqrt_scaling') else lr:g}",
                      "epochs": f"{e:g}",
                      "updates": regime_steps(s["epochs"], num_train, s["batch_size"], small,
                                              s.get("regime_adaptation", False))}
    return rows


def at_equal_loss(steps, train_loss, test_acc, level: float) -> tuple[float, float]:
    """The test accuracy of a run at the moment its training loss first falls to ``level``, and that
    step, each linearly interpolated between the two evaluations around the crossing; (NaN, NaN) if the
    loss never gets there. The comparison *at equal training loss*: a large batch that generalizes worse
    has a lower test accuracy than the small batch had at the same training loss."""
    steps, loss, acc = (np.asarray(a, dtype=float) for a in (steps, train_loss, test_acc))
    below = np.flatnonzero(loss <= level)
    if not len(below):
        return math.nan, math.nan
    i = int(below[0])
    if i == 0:
        return float(acc[0]), float(steps[0])
    f = (loss[i - 1] - level) / (loss[i - 1] - loss[i])
    return float(acc[i - 1] + f * (acc[i] - acc[i - 1])), float(steps[i - 1] + f * (steps[i] - steps[i - 1]))


def window(steps, values, total: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """The evaluations of a curve at steps t with start·total ≤ t ≤ stop·total and t > 0 (fractions of a
    run of ``total`` updates: the high-learning-rate phase is ``stop`` = the first milestone)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = (steps >= start * total) & (steps <= stop * total) & (steps > 0)
    return steps[keep], values[keep]


@dataclass
class DistanceFits:
    """The fits of ‖w_t − w_0‖ over one window: a + b log t (the paper's law), a + b √t (ordinary
    diffusion), the free power law, and the free power law of the uncorrelated control."""

    t: np.ndarray
    d: np.ndarray
    log: Fit
    root: Fit
    power: PowerFit
    control: PowerFit


def distance_fits(history, member: int, start: float, stop: float) -> DistanceFits:
    """The log, √t and free power-law fits of one run's ‖w_t − w_0‖ (the :func:`weight_distance` monitor)
    over the window [start, stop] of its updates, and the free power law of the walk of the same steps in
    uncorrelated directions (:func:`uncorrelated_distance`) over the same window."""
    total = history.knobs[member]["steps"]
    steps, distance = history.curve("train", "weight_distance", member)
    _, step = history.curve("train", "weight_step", member)
    t, d = window(steps, distance, total, start, stop)
    tu, du = window(steps, uncorrelated_distance(step), total, start, stop)
    return DistanceFits(t, d, log_fit(t, d), linear_fit(np.sqrt(t), d), power_fit(t, d), power_fit(tu, du))


def panel_summary(history) -> dict:
    """The widget panel's readout of one run: its updates, learning rate, final accuracies and ‖w_t − w_0‖."""
    knobs = history.knobs[0]
    return {"updates": knobs["steps"], "learning rate used": f"{knobs['step_lr']:g}",
            "final train accuracy": history.final("train", "acc"), "final test accuracy": history.final("test", "acc"),
            "final ‖w_t − w_0‖ (first layer)": f"{history.final('train', 'weight_distance'):.2f}"}


def panel_plot(history):
    """The widget panel's figure of one run: training and test accuracy, and ‖w_t − w_0‖ of the first layer,
    against the update step (log axes)."""
    import matplotlib.pyplot as plt

    from tdlab.book.plots import COLORBLIND

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for split, color in (("train", COLORBLIND[0]), ("test", COLORBLIND[1])):
        steps, values = history.curve(split, "acc")
        ax.plot(steps[1:], 100 * values[1:], color=color, label=split)
    ax.set(xscale="log", xlabel="update step", ylabel="accuracy (%)")
    ax.legend(fontsize=9)
    steps, distance = history.curve("train", "weight_distance")
    ax2.plot(steps[1:], distance[1:], color=COLORBLIND[2])
    ax2.set(xscale="log", xlabel="update step", ylabel="‖w_t − w_0‖ (first layer)")
    return fig


def equal_loss_accuracies(small, large) -> tuple[float, float]:
    """Two runs compared at equal training loss, each given as ``(steps, training loss, test accuracy)``:
    at the training loss both reach (the higher of their final ones), the small batch's test accuracy
    and the large batch's (:func:`at_equal_loss`)."""
    level = max(float(np.asarray(small[1])[-1]), float(np.asarray(large[1])[-1]))
    return at_equal_loss(*small, level)[0], at_equal_loss(*large, level)[0]


def equal_loss_gap(small, large) -> float:
    """The generalization gap at equal training loss (:func:`equal_loss_accuracies`): the small batch's
    test accuracy minus the large batch's. Positive: the large batch generalizes worse at the same fit;
    about 0: a gap in final test accuracy is one of fit (under-fitting)."""
    a, b = equal_loss_accuracies(small, large)
    return a - b


def loss_curves(history, member: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, training loss, test accuracy)`` of one member of a History, for :func:`equal_loss_gap`."""
    steps, loss = history.curve("train", "loss", member)
    return steps, loss, history.curve("test", "acc", member)[1]
