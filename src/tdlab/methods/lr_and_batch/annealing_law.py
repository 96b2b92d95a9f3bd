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

The chapter's plumbing lives here too: its two recipes (:func:`cpu_recipe`, :func:`paper_recipe`,
:func:`passes_over_data`, how many times a recipe reads its data, and :func:`characters_read` against
:func:`stdlib_characters`, the standard library's sources, in one sentence by :func:`text_limit`), the law
fitted on some schedules' mean curves and predicting the others (:func:`mean_curve`, :func:`fit_and_predict`),
the scores over a window of steps (:func:`window_scores`, from :func:`decay_start`), of a prediction
against the law's own in-sample fit (:func:`share_of_fit`; at one λ for each held-out schedule,
:func:`fit_shares`), the no-law predictor that follows a decay (:func:`same_lr_prediction`, its noise
removed by :func:`running_line`) and of a
predicted gap (:func:`gap_factor`),
and the widget panel's three functions (:class:`LawPanel`).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.optimize import minimize

from tdlab.core.config import check_choice, check_range
from tdlab.core.data import Dataset
from tdlab.core.engine import Batch

SHAPES = ("constant", "cosine", "step", "wsd")
PARAMETERS = ("L0", "A", "alpha", "C")
SCHEDULE_KEYS = ("shape", "decay_fraction", "milestones", "factor")     # a member's own schedule settings


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
    procedure of the third-party reproduction (Huber δ = 10⁻³). A and C are fitted in units of the
    median S1 and the largest S2, so that the fit does not depend on the scale of the areas (with
    λ = 0, S2 is a single drop of the learning rate, and C must reach tens). ``annealing=False`` fixes C = 0:
    the plain power law in the forward area, L0 + A · S1^(−α) (the control without S2).
    """
    s1 = np.concatenate([np.asarray(c[0], dtype=float) for c in curves])
    s2 = np.concatenate([np.asarray(c[1], dtype=float) for c in curves])
    loss = np.concatenate([np.asarray(c[2], dtype=float) for c in curves])
    if np.any(loss <= 0) or np.any(s1 <= 0):
        raise ValueError("the law is fitted to positive losses at positive forward areas")
    low = float(loss.min())
    grid = dict(starts or {"L0": [0.5 * low, 0.9 * low], "A": [0.1, 1.0], "alpha": [0.3, 1.0], "C": [0.0, 0.1]})
    if not annealing:
        grid["C"] = [0.0]
    scale_s1 = float(np.median(s1))                               # A is fitted as A' = A · scale^(−α)
    scale_s2 = float(np.abs(s2).max()) or 1.0                     # C is fitted as C' = C · max S2

    def objective(p):
        L0, A, alpha, C = p
        predicted = L0 + A * np.power(s1 / scale_s1, -alpha) - C * s2 / scale_s2
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
    return Law(L0, A * scale_s1 ** alpha, alpha, C / scale_s2)


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
    the recipe allows (one, when the members differ only in their schedule settings and the
    engine's per-member knobs: seed, lr, ...).

    A member is a dict with ``shape`` (one of :data:`SHAPES`), optionally its own ``decay_fraction``,
    ``milestones`` and ``factor``, and engine knobs (``seed``, ``lr``: the peak learning rate). The
    schedules' other settings are shared (keywords); ``knobs`` go to ``recipe.sweep``. Every
    member's History knobs record its schedule's settings (``schedule`` is its shape).
    """
    steps = recipe.steps
    members = [dict(m) for m in members]
    schedules = [lr_schedule(m.get("shape", "constant"), steps, warmup=warmup,
                             decay_fraction=m.get("decay_fraction", decay_fraction), floor=floor,
                             milestones=m.get("milestones", milestones), factor=m.get("factor", factor))
                 for m in members]
    engine_members = [{k: v for k, v in m.items() if k not in SCHEDULE_KEYS} for m in members]
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


# ----------------------------------------------------------------- the chapter's recipes, fits and scores


def cpu_recipe(seed: int = 0, steps: int = 3000, eval_every: int = 30):
    """The chapter's CPU stand-in for pre-training: the online teacher task (32 → 256 tanh → 10
    classes, temperature 0.3, labels drawn from its softmax, fresh batches of 128 every step from
    :class:`TeacherStream`; 4096 held-out draws), an MLP 32 → 128 → 128 → 10, AdamW (β = 0.9,
    0.999, no weight decay) at peak learning rate 10⁻³, ``steps`` steps."""
    from tdlab.core import models, recipes
    task = teacher_task(num_train=256, num_test=4096, dim=32, hidden=256, classes=10, temperature=0.3, seed=seed)
    return recipes.Recipe(task, lambda: models.MLP(32, 10, width=128, depth=2),
                          dict(optimizer="adamw", lr=1e-3, batch_size=128, steps=steps, eval_every=eval_every,
                               batch_hook=TeacherStream(task, seed), progress=False))


def paper_recipe(steps: int = 20_000, size: int = 480_000):
    """A ~85M-parameter GPT-style decoder (12 blocks of width 768, context 512, near the
    reproduction's 100M) on the bundled character corpus (:mod:`tdlab.core.text`, ``size``
    characters), AdamW (β = 0.9, 0.95, weight decay 0.1), peak learning rate 2·10⁻⁴, batches of
    64 windows, ``steps`` steps (a GPU). The corpus is far smaller than the paper's single pass
    of text: :func:`passes_over_data` says how many times the recipe reads it."""
    from tdlab.core import recipes, text, transformer
    return recipes.Recipe(lambda: text.corpus(context=512, size=size),
                          lambda: transformer.TinyTransformer(vocab=len(text.VOCAB), context=512, width=768,
                                                              depth=12, heads=12),
                          dict(optimizer="adamw", lr=2e-4, betas=(0.9, 0.95), weight_decay=0.1, batch_size=64,
                               steps=steps, eval_every=100))


def passes_over_data(recipe) -> float:
    """How many times ``recipe`` reads its training set: steps × batch size / training examples
    (for a text recipe, windows). Single-pass pre-training, the paper's setting, is ≤ 1."""
    return recipe.steps * recipe.settings["batch_size"] / len(recipe.dataset.y_train)


def stdlib_characters() -> int:
    """The size in bytes (about the characters: the sources are nearly all ASCII) of every ``.py`` file of
    this Python's standard library, its test suites (``test``/``tests``/``idle_test`` folders, ``test_*.py``)
    and ``site-packages`` left out: a fixed amount of local text against which the bundled corpus
    (:data:`tdlab.core.text.STDLIB_FILES`, a cut of a few modules) is small. It is not all the source text on
    disk: the installed packages' sources (``site-packages``, left out) are larger, by how much depends on
    the install."""
    import os
    from tdlab.core import text
    skip = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
    total = 0
    for folder, subfolders, files in os.walk(text.stdlib_dir()):
        subfolders[:] = [d for d in subfolders if d not in skip]        # not walked at all: the walk stays cheap
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files
                     if f.endswith(".py") and not f.startswith("test_"))
    return total


def characters_read(recipe) -> int:
    """How many characters a text recipe reads: steps × batch size × context (its windows' length)."""
    return recipe.steps * recipe.settings["batch_size"] * int(recipe.dataset.x_train.shape[-1])


def text_limit(recipe) -> str:
    """One sentence on how far a text ``recipe`` is from single-pass pre-training: the characters it reads
    (:func:`characters_read`), how many times it reads its corpus (:func:`passes_over_data`) and how many
    times it would read the standard library's sources (:func:`stdlib_characters`)."""
    read, everything = characters_read(recipe), stdlib_characters()
    return (f"the paper recipe reads {read:,} characters: its corpus ({len(recipe.dataset.y_train)} windows of "
            f"{int(recipe.dataset.x_train.shape[-1])}) {passes_over_data(recipe):.0f} times, all the standard "
            f"library's sources on disk ({everything:,} characters) {read / everything:.0f} times: not single-pass")


def mean_curve(history, shape: str, lam: float, start: int = 1, seeds: Sequence[int] | None = None):
    """``(steps, S1, S2, L)`` of the schedule ``shape`` in a :func:`sweep` (optionally only the members
    with these ``seeds``), from step ``start`` on; L is the mean of the members' held-out losses."""
    members = [i for i, k in enumerate(history.knobs)
               if k["schedule"] == shape and (seeds is None or k["seed"] in seeds)]
    if not members:
        raise ValueError(f"no member of schedule {shape!r}" + (f" with seeds {list(seeds)}" if seeds else ""))
    parts = [curve_areas(history, i, lam, start=start) for i in members]
    return parts[0][0], parts[0][1], parts[0][2], np.mean([p[3] for p in parts], axis=0)


def fit_and_predict(history, lam: float, fit_on: Sequence[str], start: int = 1, seeds: Sequence[int] | None = None,
                    annealing: bool = True, shapes: Sequence[str] | None = None):
    """The law fitted on the mean curves of the schedules ``fit_on`` and its prediction of every
    schedule of the sweep: ``(law, curves, predictions)``, ``curves[shape] = (steps, S1, S2, L)``.
    ``annealing=False``: the control without the annealing term (C = 0)."""
    shapes = list(shapes or dict.fromkeys(k["schedule"] for k in history.knobs))
    curves = {shape: mean_curve(history, shape, lam, start, seeds) for shape in shapes}
    fitted = fit([curves[shape][1:] for shape in fit_on], annealing=annealing)
    return fitted, curves, {shape: fitted(c[1], c[2]) for shape, c in curves.items()}


def window_scores(curve, predicted: np.ndarray, after: int = 0, until: float = math.inf) -> tuple[float, float]:
    """R² and mean relative error of ``predicted`` against the measured loss of ``curve`` =
    ``(steps, S1, S2, L)`` at the steps in (``after``, ``until``]."""
    steps, loss = curve[0], curve[3]
    keep = (steps > after) & (steps <= until)
    return r2(loss[keep], predicted[keep]), mean_relative_error(loss[keep], predicted[keep])


def share_of_fit(error_predicted: float, error_control: float, error_fitted: float) -> float:
    """How much of what fitting a curve would gain over a control a prediction already gains:
    (e_control − e_predicted) / (e_control − e_fitted), for errors over the same window.

    ``error_fitted`` is the law's error when the curve itself is among the curves it is fitted on (its
    in-sample error: as good as the law gets there), ``error_control`` the control's (the law with C = 0,
    which cannot follow a decay). 1: the prediction is as good as a fit; 0: no better than the control;
    below 0: worse. NaN when the fit does not beat the control (nothing to gain). The paper's claim that a
    law fitted on one or two curves "accurately" predicts other schedules (abstract) read against the
    law's own ceiling instead of a bare R², which also grows with the size of the decay."""
    gain = error_control - error_fitted
    return float((error_control - error_predicted) / gain) if gain > 0 else math.nan


def fit_shares(history, lam: float, fit_on: Sequence[str], held_out: Sequence[str], start: int = 1,
               seeds: Sequence[int] | None = None, after: int = 0) -> dict[str, dict[str, float]]:
    """:func:`share_of_fit` of each held-out schedule at one λ, every error a mean relative error over the
    steps after ``after`` of the schedule's mean curve (:func:`window_scores`):
    ``{shape: {"predicted": e, "control": e, "fitted": e, "share": share}}``.

    - ``predicted``: the law fitted on ``fit_on`` at this λ (:func:`fit_and_predict`);
    - ``control``: the same fit with C = 0 (no annealing term: it does not depend on λ);
    - ``fitted``: the law at this λ fitted on ``fit_on`` and the schedule itself, its in-sample fit — so a
      λ is read against its own ceiling, not another λ's."""
    shapes = list(dict.fromkeys([*fit_on, *held_out]))
    _, curves, predicted = fit_and_predict(history, lam, fit_on, start, seeds, shapes=shapes)
    control = fit_and_predict(history, lam, fit_on, start, seeds, annealing=False, shapes=shapes)[2]
    out = {}
    for shape in held_out:
        inside = fit_and_predict(history, lam, [*fit_on, shape], start, seeds, shapes=shapes)[2][shape]
        errors = {name: window_scores(curves[shape], p, after=after)[1]
                  for name, p in (("predicted", predicted[shape]), ("control", control[shape]), ("fitted", inside))}
        out[shape] = {**errors, "share": share_of_fit(errors["predicted"], errors["control"], errors["fitted"])}
    return out


def running_line(values: np.ndarray, window: int) -> np.ndarray:
    """``values`` (one per evaluation, in step order) with their evaluation noise smoothed out: each
    replaced by the value, at its own evaluation, of the least-squares straight line through the
    ``window`` evaluations centred on it (at either end of the curve, the first or last ``window``
    evaluations: no mean is dragged towards the middle of the run). A running mean that keeps a
    straight line exactly — a Savitzky–Golay filter of order 1. ``window`` = 1 returns the values
    unchanged; an even window is made odd, one larger; a window longer than the curve is the whole curve."""
    values = np.asarray(values, dtype=float)
    window = int(window) + (1 - int(window) % 2)                 # odd
    if window <= 1 or len(values) < 2:
        return values.copy()
    from scipy.signal import savgol_filter
    window = min(window, len(values) - (1 - len(values) % 2))   # at most the curve, still odd
    if window < 3:
        return values.copy()
    return savgol_filter(values, window, 1, mode="interp")


def same_lr_prediction(eta: np.ndarray, base: np.ndarray, reference: np.ndarray,
                       reference_eta: np.ndarray, smooth: int = 1) -> np.ndarray:
    """A predictor of a held-out schedule's loss with no law at all, one that follows a decay: the loss
    follows the current learning rate. At each evaluated step the held-out run is predicted to gain over
    the ``base`` run (the constant schedule's loss at the same steps) what the ``reference`` run (cosine)
    had gained over it when the reference's learning rate was at the same level ``eta`` (linear
    interpolation in the reference's learning rates ``reference_eta``; no gain at the peak, where a run
    is still the base run). Every array is over the same evaluated steps, learning rates as fractions of
    the peak. A sudden drop is followed at once, by the gain the reference showed at the new level; the
    cheapest alternative to the law that can follow a decay (the law's C = 0 control cannot).

    ``smooth`` > 1 removes the measurement noise the predictor would otherwise carry and the law does not
    (the law is a smooth curve): the base curve and the reference's gain over it (both in step order) are
    each passed through :func:`running_line` over ``smooth`` evaluations before the lookup. Noiseless
    straight-line curves are left as they are, so the reference still predicts itself."""
    eta, base, reference, reference_eta = (np.asarray(a, dtype=float) for a in (eta, base, reference, reference_eta))
    gain = running_line(base - reference, smooth)                # the gain of the (correlated) pair, then smoothed
    base = running_line(base, smooth)
    keep = reference_eta < 1.0
    x = np.concatenate([reference_eta[keep], [1.0]])
    y = np.concatenate([gain[keep], [0.0]])
    order = np.argsort(x, kind="stable")
    return base - np.interp(eta, x[order], y[order])


def decay_start(knobs: dict) -> int:
    """The last step before a run's learning rate starts to fall, from its History knobs: the end
    of warm-up (cosine), the first milestone (step), the start of the decay (WSD), the last step
    (constant)."""
    steps, shape = knobs["steps"], knobs["shape"]
    if shape == "cosine":
        return knobs["warmup"] + 1
    if shape == "step":
        return int(round(min(knobs["milestones"]) * steps))
    if shape == "wsd":
        return max(knobs["warmup"], steps - int(round(knobs["decay_fraction"] * steps)))
    return steps


def gap_factor(ratio: float) -> float:
    """How many times a predicted gap misses the measured one: max(r, 1/r) for the ratio r of
    predicted to measured gap; +inf when the prediction has the wrong sign or is a tie (r ≤ 0)."""
    return math.inf if not ratio > 0 else max(ratio, 1 / ratio)


class LawPanel:
    """The chapter's widget panel: :meth:`run` trains one schedule (one seed) and :meth:`plot`
    draws its held-out loss with the curve predicted by the law fitted on the ``fit_on`` runs of
    ``fitted`` (refitted once per λ, kept). ``schedule`` holds the sweep's shared schedule
    settings; a run's History knobs record the λ it is read with (``anneal_lambda``)."""

    def __init__(self, recipe, fitted, *, fit_on: Sequence[str], seed: int, lam: float, start: int,
                 schedule: dict, laws: dict | None = None, ylim: tuple[float, float] | None = None):
        self.recipe, self.fitted, self.fit_on, self.seed = recipe, fitted, list(fit_on), seed
        self.lam, self.start, self.schedule, self.ylim = lam, start, dict(schedule), ylim
        self.laws = dict(laws or {})

    def tag(self, history, lam: float | None = None):
        """``history`` with every member's knobs recording the λ it is read with."""
        for k in history.knobs:
            k["anneal_lambda"] = self.lam if lam is None else lam
        return history

    def run(self, callback=None, schedule: str = "wsd", lr: float = 1e-3, decay_fraction: float = 0.2,
            anneal_lambda: float | None = None):
        settings = {**self.schedule, "decay_fraction": decay_fraction}
        h = sweep(self.recipe, [{"shape": schedule, "seed": self.seed, "lr": lr, "decay_fraction": decay_fraction}],
                  callback=callback, **settings)
        return self.tag(h, anneal_lambda)

    def law(self, history) -> tuple[Law, float]:
        lam = history.knobs[0].get("anneal_lambda", self.lam)
        if lam not in self.laws:
            self.laws[lam] = fit_and_predict(self.fitted, lam, self.fit_on, self.start, shapes=self.fit_on)[0]
        return self.laws[lam], lam

    def summary(self, history) -> dict:
        fitted, lam = self.law(history)
        curve = curve_areas(history, 0, lam, start=self.start)
        guess = fitted(curve[1], curve[2])
        after = max(self.start, decay_start(history.knobs[0]))
        out = {"final loss, measured": f"{curve[3][-1]:.4f}", "final loss, the law": f"{guess[-1]:.4f}",
               "R² of the law, whole curve": f"{r2(curve[3], guess):.3f}"}
        if np.sum(curve[0] > after) >= 2:                         # the decay: where a held-out run is new
            decay_r2, decay_error = window_scores(curve, guess, after=after)
            out.update({f"R² of the law after step {after} (the decay)": f"{decay_r2:.3f}",
                        "mean relative error there": f"{decay_error:.2%}"})
        return out

    def plot(self, history):
        import matplotlib.pyplot as plt
        from tdlab.book import plots
        fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
        steps, loss = history.curve("test", "loss")
        ax.plot(steps, loss, color=plots.COLORBLIND[0], label="measured held-out loss")
        if steps[-1] >= history.knobs[0]["steps"]:
            fitted, lam = self.law(history)
            s, s1, s2, _ = curve_areas(history, 0, lam, start=self.start)
            ax.plot(s, fitted(s1, s2), color=plots.COLORBLIND[1], linestyle="--", label="the law (fitted above)")
        ax.set(xlabel="training step", ylabel="cross-entropy", ylim=self.ylim)
        ax.legend(fontsize=9)
        return fig
