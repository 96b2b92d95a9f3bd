"""The scaling law with learning-rate annealing (Tissue, Wang & Wang 2024, arXiv:2408.11029).

The validation loss after ``s`` steps of a learning-rate schedule η_1, η_2, ... follows

    L(s) = L0 + A · S1(s)^(−α) − C · S2(s)                                   (paper, eq. 1)

- the *forward area* S1(s) = Σ_{i=1}^{s} η_i, the area under the learning-rate curve;
- the *annealing area* S2(s) = Σ_{i=1}^{s} m_i with the momentum-like recursion
  m_i = λ · m_{i−1} + (η_{i−1} − η_i), m_0 = 0 and η_0 = η_1 (so the first term is 0);
  λ (typically 0.999) lets a drop of the learning rate keep lowering the loss for a while
  after it happened. λ = 0 gives S2 = η_1 − η_s, the plain drop.

This module has the schedules of the chapter (:func:`lr_schedule`: constant, cosine, step,
warmup-stable-decay, each with an optional linear warm-up), the two areas (:func:`areas`), the
law (:func:`law`) and its fit to one or several loss curves (:func:`fit`: a Huber loss on
log L − log L̂, L-BFGS-B from a grid of starts, as the third-party reproduction
``zkshan2002/ScalingLaw`` does), and the measures of a prediction (:func:`r2`,
:func:`mean_relative_error`).

The paper trains language models; the chapter's stand-in is an online *teacher task*
(:func:`teacher_task`, :class:`TeacherStream`): fresh inputs every step, labels drawn from a
random teacher network's softmax, so that — as in single-epoch pre-training — no example is
seen twice, the loss has an irreducible floor (the teacher's entropy), and the gradient noise
that annealing removes is real. Several schedules train as members of one stacked engine call:
:class:`MemberSchedules` returns one learning-rate multiplier per member, which the engine's
flat optimizer multiplies into each member's learning rate.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from tdlab.config import check_choice, check_range
from tdlab.data import Dataset
from tdlab.engine import Batch

SHAPES = ("constant", "cosine", "step", "wsd")
PARAMETERS = ("L0", "A", "alpha", "C")


# ----------------------------------------------------------------- schedules


def lr_schedule(shape: str, steps: int, *, warmup: int = 0, decay_fraction: float = 0.2, floor: float = 0.0,
                milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1) -> Callable[[int], float]:
    """A learning-rate multiplier ``i -> η_{i+1} / η_max`` for the engine (which calls it with
    ``i = step − 1``, ``i = 0 .. steps − 1``).

    Every shape starts with a linear warm-up ``(i + 1) / warmup`` over ``warmup`` steps, then:

    - ``constant``: 1;
    - ``cosine``: ``floor + (1 − floor) · ½ (1 + cos(π p))``, p from 0 at the end of warm-up to 1 at
      the last step;
    - ``step``: × ``factor`` at each of the ``milestones`` (fractions of the run);
    - ``wsd`` (warmup-stable-decay): 1 until the last ``decay_fraction`` of the run, then a linear
      decay to ``floor`` at the last step.
    """
    check_choice("schedule shape", shape, SHAPES)
    check_range("steps", steps, 1)
    check_range("warmup", warmup, 0, steps - 1)
    check_range("decay_fraction", decay_fraction, 0, 1, low_open=True)
    check_range("floor", floor, 0, 1)
    last = steps - 1
    decay_start = max(warmup, steps - int(round(decay_fraction * steps)))
    marks = [int(round(m * steps)) for m in milestones]

    def multiplier(i: int) -> float:
        if i < warmup:
            return (i + 1) / warmup
        if shape == "constant":
            return 1.0
        if shape == "cosine":
            p = min(1.0, (i - warmup) / max(1, last - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))
        if shape == "step":
            return factor ** sum(i >= mark for mark in marks)
        if i < decay_start:                                    # wsd: stable
            return 1.0
        p = min(1.0, (i - decay_start + 1) / max(1, last - decay_start + 1))
        return 1.0 - (1.0 - floor) * p                          # wsd: linear decay to the floor

    multiplier.settings = {"shape": shape, "warmup": warmup, "decay_fraction": decay_fraction, "floor": floor,
                           "milestones": tuple(milestones), "factor": factor}
    return multiplier


def lr_values(schedule: Callable[[int], float], steps: int, peak: float = 1.0) -> np.ndarray:
    """η_1 .. η_steps: ``peak`` times the multipliers the engine uses at steps 1 .. ``steps``."""
    return peak * np.array([schedule(i) for i in range(steps)], dtype=float)


class MemberSchedules:
    """One schedule per member of a stacked run: ``i -> (E,)`` multipliers.

    The engine multiplies the schedule's value into the members' learning rates, an ``(E,)``
    tensor, so a tensor of multipliers gives each member its own schedule in one call.
    """

    def __init__(self, schedules: Sequence[Callable[[int], float]], device=None):
        self.schedules = list(schedules)
        self.device = device

    def __call__(self, i: int) -> torch.Tensor:
        return torch.tensor([s(i) for s in self.schedules], dtype=torch.float32, device=self.device)


# ----------------------------------------------------------------- the two areas and the law


def areas(etas: np.ndarray, lam: float = 0.999, warmup: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """S1(s) and S2(s) for s = 1 .. len(etas), from the learning rates ``etas`` = η_1, η_2, ...

    S1(s) = Σ_{i≤s} η_i (warm-up steps included); S2(s) = Σ_{i≤s} m_i with
    m_i = λ m_{i−1} + (η_{i−1} − η_i), m_0 = 0. The law does not model warm-up: the recursion
    starts after the ``warmup`` steps (m_i = 0 during warm-up, η_warmup plays η_0; with no
    warm-up η_0 = η_1, the paper's convention, so the first term is 0).
    """
    etas = np.asarray(etas, dtype=float)
    check_range("lambda", lam, 0, 1, high_open=True)
    s1 = np.cumsum(etas)
    drops = np.zeros_like(etas)
    start = max(1, warmup)
    drops[start:] = etas[start - 1:-1] - etas[start:]             # η_{i−1} − η_i after warm-up
    m = np.zeros_like(etas)
    previous = 0.0
    for i in range(len(etas)):                                    # m_i = λ m_{i−1} + (η_{i−1} − η_i)
        previous = lam * previous + drops[i]
        m[i] = previous
    return s1, np.cumsum(m)


@dataclass
class Law:
    """The fitted constants of L(s) = L0 + A · S1^(−α) − C · S2."""

    L0: float
    A: float
    alpha: float
    C: float

    def __call__(self, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        return law(s1, s2, self.L0, self.A, self.alpha, self.C)

    def as_dict(self) -> dict[str, float]:
        return {"L0": self.L0, "A": self.A, "alpha": self.alpha, "C": self.C}


def law(s1, s2, L0: float, A: float, alpha: float, C: float) -> np.ndarray:
    """L = L0 + A · S1^(−α) − C · S2 (paper, eq. 1)."""
    return L0 + A * np.power(np.asarray(s1, dtype=float), -alpha) - C * np.asarray(s2, dtype=float)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r ** 2, delta * (a - 0.5 * delta))


def fit(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], delta: float = 1e-3,
        starts: dict[str, Sequence[float]] | None = None, annealing: bool = True) -> Law:
    """The law fitted to one or several curves, each ``(S1, S2, L)`` at the measured steps.

    Minimises Σ Huber_δ(log L − log L̂) over (L0, A, α, C) with L-BFGS-B from every point of a
    grid of starting values (L0, A, C ≥ 0, α in (0, 3]), keeping the best — the fitting
    procedure of the third-party reproduction (Huber δ = 10⁻³). ``annealing=False`` fixes C = 0:
    the plain power law in the forward area, L0 + A · S1^(−α) (the control without S2).
    """
    s1 = np.concatenate([np.asarray(c[0], dtype=float) for c in curves])
    s2 = np.concatenate([np.asarray(c[1], dtype=float) for c in curves])
    loss = np.concatenate([np.asarray(c[2], dtype=float) for c in curves])
    if np.any(loss <= 0) or np.any(s1 <= 0):
        raise ValueError("the law is fitted to positive losses at positive forward areas")
    low = float(loss.min())
    grid = dict(starts or {"L0": [0.5 * low, 0.9 * low], "A": [0.1, 1.0], "alpha": [0.3, 1.0], "C": [0.0, 1.0]})
    if not annealing:
        grid["C"] = [0.0]
    scale_s1 = float(np.median(s1))                               # A is fitted as A' = A · scale^(−α)

    def objective(p):
        L0, A, alpha, C = p
        predicted = L0 + A * np.power(s1 / scale_s1, -alpha) - C * s2
        if np.any(predicted <= 0):
            return 1e6
        return float(np.sum(_huber(np.log(loss) - np.log(predicted), delta)))

    best = None
    bounds = [(0.0, float(loss.max())), (0.0, None), (1e-3, 3.0), (0.0, None if annealing else 0.0)]
    for L0, A, alpha, C in itertools.product(grid["L0"], grid["A"], grid["alpha"], grid["C"]):
        result = minimize(objective, [L0, A, alpha, C], method="L-BFGS-B", bounds=bounds)
        if best is None or result.fun < best.fun:
            best = result
    L0, A, alpha, C = (float(v) for v in best.x)
    return Law(L0, A * scale_s1 ** alpha, alpha, C)


def r2(measured: np.ndarray, predicted: np.ndarray) -> float:
    """The coefficient of determination 1 − Σ(L − L̂)² / Σ(L − mean L)²."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    return float(1 - np.sum((measured - predicted) ** 2) / np.sum((measured - measured.mean()) ** 2))


def mean_relative_error(measured: np.ndarray, predicted: np.ndarray) -> float:
    """mean |L̂ − L| / L."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    return float(np.mean(np.abs(predicted - measured) / measured))


# ----------------------------------------------------------------- the online teacher task


@dataclass
class Teacher:
    """A random two-layer tanh network whose softmax gives the label distribution p(y | x)."""

    w: torch.Tensor          # (hidden, dim)
    a: torch.Tensor          # (classes, hidden)
    temperature: float

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.w.T) @ self.a.T / self.temperature

    def sample(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        probabilities = torch.softmax(self.logits(x), dim=-1)
        return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)

    def entropy(self, x: torch.Tensor) -> float:
        """The mean entropy of p(y | x): the lowest cross-entropy any model can reach."""
        log_p = torch.log_softmax(self.logits(x), dim=-1)
        return float(-(log_p.exp() * log_p).sum(-1).mean())


def make_teacher(dim: int = 32, hidden: int = 64, classes: int = 10, temperature: float = 0.5,
                 seed: int = 0) -> Teacher:
    """A seeded :class:`Teacher`: W ~ N(0, 1/dim), a ~ N(0, 1/hidden)·√hidden-scaled logits."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(hidden, dim, generator=gen) / math.sqrt(dim)
    a = torch.randn(classes, hidden, generator=gen) / math.sqrt(hidden) * 3.0
    return Teacher(w, a, temperature)


def teacher_task(num_train: int = 1024, num_test: int = 4096, dim: int = 32, hidden: int = 64, classes: int = 10,
                 temperature: float = 0.5, seed: int = 0) -> Dataset:
    """Gaussian inputs, labels drawn from a random teacher's softmax (:func:`make_teacher`).

    The training split only sets the shapes and gives the engine something to evaluate; the
    training batches come from :class:`TeacherStream` (fresh every step). The test split is the
    held-out set on which the loss curves are measured. ``info`` holds the teacher (for the
    stream) and its entropy on the test inputs (the irreducible loss).
    """
    teacher = make_teacher(dim, hidden, classes, temperature, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(num_train + num_test, dim, generator=gen)
    y = teacher.sample(x, gen)
    return Dataset("teacher-classes", x[:num_train], y[:num_train], x[num_train:], y[num_train:], classes,
                   info={"teacher": teacher, "entropy": teacher.entropy(x[num_train:]), "dim": dim,
                         "hidden": hidden, "temperature": temperature, "seed": seed})


class TeacherStream:
    """A batch hook that replaces every training batch by fresh teacher draws (online learning:
    no example is seen twice, as in single-epoch language-model pre-training). The draws depend
    on ``seed`` and the step only, so every member and every run with the same seed sees the
    same stream."""

    def __init__(self, data: Dataset, seed: int = 0):
        self.teacher: Teacher = data.info["teacher"]
        self.dim = data.info["dim"]
        self.seed = seed
        self.settings = {"stream_seed": seed}

    def __call__(self, batch: Batch) -> Batch:
        gen = torch.Generator().manual_seed(1_000_003 * self.seed + batch.step)
        size = batch.y.shape[-1]
        x = torch.randn(size, self.dim, generator=gen).to(batch.x.device)
        y = self.teacher.sample(x, gen).to(batch.x.device)
        return Batch(x, y.expand(batch.y.shape[0], -1), batch.index, batch.step)


# ----------------------------------------------------------------- training several schedules at once


def sweep(recipe, members: Sequence[dict], *, warmup: int = 0, decay_fraction: float = 0.2, floor: float = 0.0,
          milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1, **knobs):
    """Train ``recipe`` once per member, each under its own schedule, in as few engine calls as
    the recipe allows (one, when the members differ only in ``shape``, ``decay_fraction`` and the
    engine's per-member knobs: seed, lr, ...).

    A member is a dict with ``shape`` (one of :data:`SHAPES`), optionally ``decay_fraction``, and
    engine knobs (``seed``, ``lr``: the peak learning rate). The schedules' other settings are
    shared (keywords); ``knobs`` go to ``recipe.sweep``. Every member's History knobs record its
    ``shape``, ``decay_fraction``, ``warmup`` and ``floor`` (``schedule`` is its shape).
    """
    steps = recipe.steps
    members = [dict(m) for m in members]
    schedules = [lr_schedule(m.get("shape", "constant"), steps, warmup=warmup,
                             decay_fraction=m.get("decay_fraction", decay_fraction), floor=floor,
                             milestones=milestones, factor=factor) for m in members]
    engine_members = [{k: v for k, v in m.items() if k not in ("shape", "decay_fraction")} for m in members]
    device = recipe.dataset.device
    history = recipe.sweep(engine_members, schedule_name=MemberSchedules(schedules, device), **knobs)
    for k, schedule in zip(history.knobs, schedules):
        k.update(schedule.settings)
        k["schedule"] = schedule.settings["shape"]
    return history


def curve_areas(history, member: int, lam: float, split: str = "test", metric: str = "loss",
                start: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, S1, S2, L)`` of one member of a :func:`sweep`, at its evaluations from step
    ``start`` on: its schedule rebuilt from its knobs, S1 and S2 at each evaluated step."""
    k = history.knobs[member]
    schedule = lr_schedule(k["shape"], k["steps"], warmup=k["warmup"], decay_fraction=k["decay_fraction"],
                           floor=k["floor"], milestones=k["milestones"], factor=k["factor"])
    etas = lr_values(schedule, k["steps"], k["lr"])
    s1, s2 = areas(etas, lam, k["warmup"])
    steps, values = history.curve(split, metric, member)
    keep = steps >= max(1, start)
    steps, values = steps[keep], values[keep]
    return steps, s1[steps - 1], s2[steps - 1], values


def pair_agreement(measured: Sequence[float], predicted: Sequence[float],
                   tolerance: Sequence[Sequence[float]] | float = 0.0) -> tuple[int, int]:
    """How many pairs of schedules the prediction orders as measured, among the pairs whose
    measured final losses differ by more than ``tolerance`` (a number, or a matrix per pair):
    ``(agreeing, resolved)``."""
    measured, predicted = np.asarray(measured, dtype=float), np.asarray(predicted, dtype=float)
    n = len(measured)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=float), (n, n))
    agreeing = resolved = 0
    for i, j in itertools.combinations(range(n), 2):
        gap = measured[i] - measured[j]
        if abs(gap) <= tol[i, j]:
            continue
        resolved += 1
        agreeing += int(np.sign(gap) == np.sign(predicted[i] - predicted[j]))
    return agreeing, resolved
