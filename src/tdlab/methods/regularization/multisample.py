"""Multi-sample dropout (Inoue 2019, "Multi-Sample Dropout for Accelerated Training and Better
Generalization", arXiv 1905.09788): M dropout masks on the same features, one shared head, and
the *losses* of the M copies averaged.

The network is split at the dropout layer: a trunk φ computes the features h = φ(x) once,
M independent masks m_1..m_M give M copies m_k ⊙ h / (1 − p) (inverted dropout, rate p), and
the same head g (shared weights) maps every copy to logits. The training loss is

    L = (1/M) Σ_k ℓ(g(m_k ⊙ h / (1 − p)), y),                                   (paper, Fig. 1)

the mean of the M losses — not the loss of the mean logits, which many third-party heads
compute instead (``average="logits"`` here, for comparison). Only the head runs M times, so
a step costs much less than M steps. At test time dropout is off and the M copies are the
same, so the network is an ordinary one.

- :class:`MultiSampleMLP`: an :class:`~tdlab.core.models.MLP` whose last hidden features go through
  M dropout masks before its output layer, in training mode: logits ``(M, B, C)`` (stacked:
  ``(E, M, B, C)``); in eval mode ``(B, C)`` as any model. Stackable by the training loop.
  :class:`MultiSample` does the same for any trunk and head (the paper-scale ResNet).
- :func:`multisample_cross_entropy` and :class:`MultiSampleCrossEntropy` (``loss``): the mean of
  the M cross-entropies (a sample axis just before the example axis), plain cross-entropy
  for logits without one (what the loop's evaluations pass).
- :class:`StepClock`: a batch hook that times every training step of the loop, so that
  training curves can be drawn against the wall time spent *training* (evaluations left out)
  and the per-step cost (CPU time) of each M compared: :func:`step_cost`.
- :func:`steps_to_loss`: the first step a loss curve reaches a level (interpolated between
  evaluations), :func:`mean_steps_to_loss` its mean over a call's seeds, :meth:`StepClock.seconds_to` the
  training time by such a step; :func:`multiply_adds`: a step's arithmetic counted from the layer shapes.
- :func:`panel_summary`, :func:`panel_figure`: the chapter's live panel (one run's summary and curves).
- :func:`recipe`: a :class:`~tdlab.core.recipes.Recipe` of a multi-sample network (:func:`mlp`,
  :func:`resnet18`) whose M, dropout rate and averaging are knobs (members that differ in them
  train in separate engine calls).
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn

from tdlab.core import augment, data
from tdlab.core.config import check_choice, check_range
from tdlab.core.engine import Batch
from tdlab.core.history import History
from tdlab.core.losses import Loss, cross_entropy
from tdlab.core.models import MLP, PreActResNet18
from tdlab.core.recipes import Recipe

AVERAGES = ("loss", "logits")


def dropout_masks(members: int, features: int, samples: int, batch: int, rate: float,
                  dtype=torch.float32, device=None) -> torch.Tensor:
    """M inverted-dropout masks for E members, shape ``(E, features, M, B)``: each entry is 0 with
    probability ``rate`` and 1/(1 − rate) otherwise, independently (so E[mask] = 1 and the test-time
    network, without dropout, needs no rescaling). Drawn from torch's global generator, in this
    layout whichever path (stacked or single) uses them, so a seed fixes them.

    How: every random 64-bit integer gives four 16-bit ones, u uniform on {−2¹⁵, …, 2¹⁵ − 1}, and an
    entry is kept when u ≥ t with t = round(2¹⁶ p) − 2¹⁵ — so p is rounded to a multiple of 2⁻¹⁶
    (exact for 0.5, 0.25, ...). On this book's CPU that is about 6× faster than ``bernoulli_``
    (measured: 1.6 against 10 ms for 3 × 128 × 8 × 128 masks, one thread, a busy machine).
    """
    check_range("dropout rate", rate, 0, 1, high_open=True)
    shape = (members, features, samples, batch)
    if rate == 0:
        return torch.ones(shape, dtype=dtype, device=device)
    dropped = round(rate * 2**16)                               # p ≈ dropped / 2¹⁶
    if dropped >= 2**16:
        raise ValueError(f"dropout rate {rate!r} keeps nothing at a resolution of 2^-16")
    count = math.prod(shape)
    draws = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, 2**63 - 1)
    u = draws.view(torch.int16)[:count].view(shape)               # uniform on {−2¹⁵, ..., 2¹⁵ − 1}
    return u.to(dtype).ge_(dropped - 2**15).mul_(2**16 / (2**16 - dropped))   # 1[kept] / (1 − p)


def masked_copies(h: torch.Tensor, samples: int, rate: float) -> torch.Tensor:
    """M dropout copies of features ``h`` (B, F): ``(M, B, F)``, copy k = m_k ⊙ h / (1 − p), its masks
    drawn by :func:`dropout_masks` (so a seed gives the same masks as the stacked path's member 0)."""
    masks = dropout_masks(1, h.shape[1], samples, h.shape[0], rate, h.dtype, h.device)[0]   # (F, M, B)
    return (h.t().unsqueeze(1) * masks).permute(1, 2, 0)


class MultiSample(nn.Module):
    """Any network split at its dropout layer, ``trunk`` (x → features (B, F)) and ``head`` (features →
    logits), with multi-sample dropout between them (Inoue 2019, Fig. 1): in training mode the trunk
    runs once, the head on M masked copies of its features, logits ``(M, B, C)``; in eval mode
    ``head(trunk(x))``, ``(B, C)``. For networks the loop cannot stack (batch norm): the paper-scale
    ResNet of :func:`resnet18`."""

    def __init__(self, trunk: nn.Module, head: nn.Module, samples: int = 8, dropout: float = 0.5):
        super().__init__()
        check_range("samples", samples, 1)
        check_range("dropout rate", dropout, 0, 1, high_open=True)
        self.trunk, self.head = trunk, head
        self.samples, self.dropout = int(samples), float(dropout)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, dropout={self.dropout:g}"

    def forward(self, x):
        h = self.trunk(x)
        return self.head(masked_copies(h, self.samples, self.dropout) if self.training else h)


class MultiSampleMLP(MLP):
    """An MLP with multi-sample dropout before its output layer (Inoue 2019).

    x → [Linear → activation] × depth = h (the shared trunk); in training mode M masks give
    M copies m_k ⊙ h / (1 − p), and the output Linear (the shared head) maps each: logits
    ``(M, B, C)``, sample k in row k. In eval mode the logits of the ordinary network, ``(B, C)``.
    ``samples=1`` is ordinary dropout before the output layer; ``dropout=0`` makes the M copies
    equal. Same parameters, names and initialisation as :class:`~tdlab.core.models.MLP` (a seed gives
    the same starting network whatever M and p).
    """

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2,
                 samples: int = 8, dropout: float = 0.5, activation: str = "relu", bias: bool = True):
        super().__init__(in_features, num_classes, width=width, depth=depth, activation=activation, bias=bias)
        check_range("samples", samples, 1)
        check_range("dropout rate", dropout, 0, 1, high_open=True)
        self.samples, self.dropout = int(samples), float(dropout)

    def extra_repr(self) -> str:
        return f"samples={self.samples}, dropout={self.dropout:g}"

    def forward(self, x):
        h = self.net[:-1](x)                                       # (B, F): the trunk, run once
        head = self.net[-1]
        return head(masked_copies(h, self.samples, self.dropout) if self.training else h)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E networks at once (the training loop's stacked path): ``(E, M, B, C)`` in training mode,
        ``(E, B, C)`` in eval mode. Feature-major as :meth:`MLP.forward_stacked`: the M masked copies
        are M·B columns, so the shared head is one batched matrix product for all of them."""
        members = next(iter(params.values())).shape[0]
        h = x.flatten(1).t().expand(members, -1, -1)              # (E, features, B)
        last = len(self.net) - 1
        for index, layer in enumerate(self.net):
            if isinstance(layer, nn.Flatten):
                continue
            if index == last:
                break
            if isinstance(layer, nn.Linear):
                h = _linear(params, index, h)
            else:
                h = layer(h)
        batch = h.shape[2]
        if self.training:
            masks = dropout_masks(members, h.shape[1], self.samples, batch, self.dropout, h.dtype, h.device)
            h = (h.unsqueeze(2) * masks).flatten(2)                  # (E, F, M·B): copy k in columns kB..(k+1)B
        out = _linear(params, last, h).transpose(1, 2)             # (E, M·B, C), a view of class-major logits
        return out.unflatten(1, (self.samples, batch)) if self.training else out


def _linear(params: dict[str, torch.Tensor], index: int, h: torch.Tensor) -> torch.Tensor:
    """hᵀ ← b + W hᵀ for E stacked layers ``net.{index}`` (h feature-major, (E, features, columns))."""
    weight, bias = params[f"net.{index}.weight"], params.get(f"net.{index}.bias")
    return torch.bmm(weight, h) if bias is None else torch.baddbmm(bias.unsqueeze(2), weight, h)


def multisample_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, average: str = "loss") -> torch.Tensor:
    """Multi-sample dropout's loss: ``logits`` (..., M, B, C) hold M samples per example, ``targets``
    (..., B) the labels; returns, shape (...),

    - ``average="loss"`` (the paper): (1/M) Σ_k (1/B) Σ_i −log softmax(z_{k,i})_{y_i}, the mean of the
      M losses;
    - ``average="logits"`` (what many third-party heads do): the cross-entropy of the mean logits
      (1/M) Σ_k z_{k,i}.

    Logits without a sample axis (..., B, C) — eval mode, one copy — give plain cross-entropy.
    """
    check_choice("average", average, AVERAGES)
    extra = logits.dim() - targets.dim()
    if extra == 1:
        return cross_entropy(logits, targets)
    if extra != 2:
        raise ValueError(f"logits {tuple(logits.shape)} must be (..., M, B, C) or (..., B, C) "
                         f"for targets {tuple(targets.shape)}")
    if average == "logits":
        return cross_entropy(logits.mean(-3), targets)
    samples = logits.shape[-3]
    # the M·B rows (sample k of example i at row kB + i) against the labels tiled M times:
    # the mean over all of them is the mean of the M per-sample means
    tiled = targets.repeat(*(1,) * (targets.dim() - 1), samples)
    return cross_entropy(logits.flatten(-3, -2), tiled)


class MultiSampleCrossEntropy(Loss):
    """Multi-sample dropout's loss (:func:`multisample_cross_entropy`) for the training loop; its
    setting ``average`` is ``"loss"`` (the paper) or ``"logits"``."""

    name = "multisample_ce"
    settings = ("average",)

    def __init__(self, average: str = "loss"):
        check_choice("average", average, AVERAGES)
        self.average = average

    def __call__(self, logits, targets, index=None):
        return multisample_cross_entropy(logits, targets, self.average)


# ----------------------------------------------------------------- time and steps


class StepClock:
    """A ``batch_hook`` for :func:`tdlab.core.engine.run` that notes when each training step starts and
    passes the batch on — unchanged, or through the hook ``then`` (augmentation) if given.

    It reads two clocks: the wall clock (``time.perf_counter``), for curves against the time
    training took, and the process's CPU time (``time.process_time``), for what a step *costs*:
    on a machine shared with other work the wall time of a step also counts the time other
    processes held the cores, the CPU time only the work this one did.

    The interval between the starts of steps s and s + 1 is what step s cost — its forward,
    backward and update — unless the loop evaluated after step s (every ``eval_every`` steps):
    those intervals, and the last step's, are left out of :meth:`durations` and counted at the
    median of the others in :meth:`seconds_at`, the wall time spent *training* by a step.
    One clock times one engine call (a new call restarts it).
    """

    def __init__(self, eval_every: int, then: Callable[[Batch], Batch] | None = None):
        check_range("eval_every", eval_every, 1)
        self.eval_every, self.then = eval_every, then
        self.starts: list[float] = []
        self.cpu_starts: list[float] = []
        self.settings = getattr(then, "settings", {}) or {}

    def __call__(self, batch: Batch) -> Batch:
        if batch.step == 1:
            self.starts, self.cpu_starts = [], []
        self.starts.append(time.perf_counter())
        self.cpu_starts.append(time.process_time())
        return batch if self.then is None else self.then(batch)

    def durations(self, cpu: bool = False) -> np.ndarray:
        """What each step took, in seconds of wall time (or of the process's CPU time, ``cpu=True``),
        steps 1..S; NaN where an evaluation intervened and for the last step."""
        starts = np.asarray(self.cpu_starts if cpu else self.starts)
        if len(starts) < 2:
            raise ValueError("the clock has timed fewer than two steps")
        durations = np.full(len(starts), np.nan)
        durations[:-1] = np.diff(starts)
        steps = np.arange(1, len(starts) + 1)
        durations[steps % self.eval_every == 0] = np.nan
        return durations

    def step_seconds(self, cpu: bool = False) -> float:
        """The median wall (or CPU) time of one training step, in seconds."""
        return float(np.nanmedian(self.durations(cpu)))

    def seconds_at(self, steps) -> np.ndarray:
        """The wall time spent training (evaluations left out) by the end of each step in ``steps``."""
        durations = self.durations()
        durations[np.isnan(durations)] = np.nanmedian(durations)
        elapsed = np.concatenate([[0.0], np.cumsum(durations)])
        return elapsed[np.asarray(steps, dtype=int)]

    def seconds_to(self, step: float) -> float:
        """The wall time spent training by a fractional ``step`` (a crossing read by :func:`steps_to_loss`),
        interpolated linearly between the whole steps of :meth:`seconds_at`."""
        whole = np.arange(len(self.starts) + 1)
        return float(np.interp(step, whole, self.seconds_at(whole)))


def step_cost(*clocks: StepClock, cpu: bool = True) -> float:
    """The median CPU time (or wall time, ``cpu=False``) of one step over every step timed by
    ``clocks`` — runs of the same shape made at different times, so that a slow spell of the
    machine weighs less — in seconds."""
    return float(np.nanmedian(np.concatenate([clock.durations(cpu) for clock in clocks])))


def steps_to_loss(history: History, level: float, member: int = 0, split: str = "train",
                  metric: str = "loss") -> float:
    """The first step at which the ``split``/``metric`` curve of ``member`` is at or below ``level``,
    interpolated linearly between the two evaluations around the crossing (NaN if it never gets there)."""
    steps, values = history.curve(split, metric, member)
    below = np.nonzero(values <= level)[0]
    if not len(below):
        return math.nan
    k = int(below[0])
    if k == 0:
        return float(steps[0])
    before, after = values[k - 1], values[k]
    fraction = (before - level) / (before - after) if before != after else 1.0
    return float(steps[k - 1] + fraction * (steps[k] - steps[k - 1]))


def mean_steps_to_loss(history: History, level: float, members=None) -> float:
    """The mean over ``members`` (default: every member of ``history``) of :func:`steps_to_loss` at ``level``:
    the steps a group of seeds trained in one call needs to reach a training loss (NaN if one never does)."""
    members = range(history.num_members) if members is None else members
    return float(np.mean([steps_to_loss(history, level, i) for i in members]))


def multiply_adds(model: MultiSampleMLP) -> int:
    """The multiply-adds of one training forward pass of ``model``, per example: every layer before the
    dropout once (in·out each), the M masks (M·F products) and the head M times (M·F·C) — a count from the
    layer shapes that no processor changes. The backward pass repeats each product about twice, so the
    ratio of two counts is about the ratio of the arithmetic of two training steps."""
    linear = [layer for layer in model.net if isinstance(layer, nn.Linear)]
    head = linear[-1]
    trunk = sum(layer.in_features * layer.out_features for layer in linear[:-1])
    return trunk + model.samples * head.in_features * (1 + head.out_features)


# ----------------------------------------------------------------- the chapter's panel


def panel_summary(history: History, level: float) -> dict:
    """The live panel's summary of one run: the step its training loss (no dropout) reaches ``level``
    (:func:`steps_to_loss`), its final training loss, and its final and best test error."""
    return {f"step reaching training loss {level:g}": steps_to_loss(history, level),
            "final training loss": f"{history.final('train', 'loss'):.3f}",
            "final test error": 1 - history.final("test", "acc"), "best test error": 1 - history.peak("test", "acc")}


def panel_figure(history: History, level: float):
    """The live panel's figure of one run: the dropout objective (the mean of its M losses), the training loss
    without dropout and the test loss against the step, on a log axis, with ``level`` dotted."""
    import matplotlib.pyplot as plt

    from tdlab.book import plots

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for (split, metric), label, color in ((("train", "objective"), "dropout objective", plots.COLORBLIND[2]),
                                          (("train", "loss"), "training loss, no dropout", plots.COLORBLIND[0]),
                                          (("test", "loss"), "test loss", plots.COLORBLIND[1])):
        if history.has(split, metric):
            ax.plot(*history.curve(split, metric), color=color, label=label)
    ax.axhline(level, color="0.3", linestyle=":", linewidth=1)
    ax.set(xlabel="training step", ylabel="cross-entropy", yscale="log")
    ax.legend(fontsize=9)
    return fig


# ----------------------------------------------------------------- the recipe


class Factory:
    """A model factory whose M (``samples``) and dropout rate are knobs of a recipe: it calls
    ``build(samples, dropout)``.

    They shape the model (M sets the logits' shape), so they are not per-member knobs of the
    engine: members that differ in them train in separate engine calls, and the recipe's
    derivation (:meth:`derive`) sets them just before each call builds its models. The History
    records them among the knobs.
    """

    def __init__(self, build: Callable[[int, float], nn.Module], samples: int = 8, dropout: float = 0.5):
        self.build, self.samples, self.dropout = build, samples, dropout

    def __call__(self) -> nn.Module:
        return self.build(self.samples, self.dropout)

    def derive(self, samples: int, dropout: float, average: str) -> dict:
        """The recipe's derivation: remember M and the rate of the engine call about to be made,
        and give it the loss that averages as asked."""
        check_range("samples", samples, 1)
        check_range("dropout rate", dropout, 0, 1, high_open=True)
        self.samples, self.dropout = int(samples), float(dropout)
        return {"loss": MultiSampleCrossEntropy(average)}


def mlp(in_features: int, num_classes: int, width: int = 128, depth: int = 2,
        activation: str = "relu") -> Callable[[int, float], MultiSampleMLP]:
    """``build(samples, dropout)`` of a :class:`MultiSampleMLP` (``depth`` hidden layers of ``width``)."""
    return lambda samples, dropout: MultiSampleMLP(in_features, num_classes, width, depth, samples=samples,
                                                   dropout=dropout, activation=activation)


def resnet18(num_classes: int = 10, in_channels: int = 3) -> Callable[[int, float], MultiSample]:
    """``build(samples, dropout)`` of PreAct ResNet-18 (:class:`~tdlab.core.models.PreActResNet18`) with
    multi-sample dropout on its pooled 512 features before the output layer — the paper's
    placement (dropout before the last fully connected layer) on the book's CIFAR network."""
    def build(samples: int, dropout: float) -> MultiSample:
        trunk = PreActResNet18(num_classes, in_channels)
        head, trunk.head = trunk.head, nn.Identity()
        return MultiSample(trunk, head, samples, dropout)

    return build


def recipe(data, build: Callable[[int, float], nn.Module], samples: int = 8, dropout: float = 0.5,
           average: str = "loss", **settings) -> Recipe:
    """A :class:`~tdlab.core.recipes.Recipe` training ``build(samples, dropout)`` (:func:`mlp`,
    :func:`resnet18`) with :class:`MultiSampleCrossEntropy`; ``samples`` (M), ``dropout`` (p) and
    ``average`` are knobs like any other (``recipe.sweep([{"samples": 1}, {"samples": 8}])`` trains
    one engine call per M); ``settings`` are the engine's (optimizer, lr, steps, ...)."""
    factory = Factory(build, samples, dropout)

    def heads(samples: int = samples, dropout: float = dropout, average: str = average) -> dict:
        return factory.derive(samples, dropout, average)

    return Recipe(data, factory, dict(settings), derive=(heads,))


# ----------------------------------------------------------------- the paper's own setup


def paper_recipe(seed: int = 0, dropout: float = 0.5) -> Recipe:
    """The paper-scale run of the multi-sample dropout chapter (book/03_regularization/01_multisample_dropout):
    CIFAR-10 with crop and flip, PreAct ResNet-18 with the multi-sample head (M = 8 masks at rate ``dropout``),
    SGD (lr 0.1, momentum 0.9, weight decay 5·10⁻⁴, batch 128) for 200 epochs on a cosine schedule."""
    epoch = 50_000 // 128
    return recipe(lambda: data.standardize(data.load("cifar10")), resnet18(10, 3), samples=8, dropout=dropout,
                  optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=128, steps=200 * epoch,
                  eval_every=5 * epoch, schedule_name="cosine", batch_hook=augment.crop_flip(padding=4, seed=seed))
