"""Class-incremental learning with experience replay, evaluated continually.

De Lange, van de Ven, Tuytelaars, *Continual evaluation for lifelong learning: identifying
the stability gap*, ICLR 2023 (official code: github.com/Mattdl/ContinualEvaluation). A
data set's classes are split into tasks learned one after the other by one network with one
shared output layer (class-incremental: no task label at test time). Experience replay (ER)
keeps a small class-balanced memory of earlier tasks' examples and adds a batch of them to
every training batch. The paper's point: evaluate **every few steps**, not only at the end
of each task, and a sharp drop of the earlier tasks' accuracy appears right after every task
switch — the *stability gap* — which then partly recovers and which task-end evaluation
never sees.

The pieces, each run by the one training loop (:func:`tdlab.core.engine.run`):

- :class:`Tasks` — which classes each task holds and how many steps each task trains;
- :class:`ExperienceReplay` — a batch hook: the step's batch of the current task's examples,
  followed by a batch drawn from the class-balanced memory (``ERPlugin`` and Avalanche's
  ``ClassBalancedBuffer`` in the official code);
- :class:`ReplayCrossEntropy` — λ·CE(new) + (1 − λ)·CE(replayed), the ER strategy's loss
  weighting (``Lw_new``), with λ a per-member coefficient;
- :func:`task_accuracy` — a monitor: the test accuracy on each task's classes;
- :func:`min_accuracy`, :func:`worst_case_accuracy`, :func:`windowed_forgetting` — the paper's
  continual-evaluation metrics (``src/eval/continual_eval_metrics.py``), functions of those
  curves.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tdlab.core import data as datasets
from tdlab.core import models
from tdlab.core.config import check_range
from tdlab.core.data import Dataset
from tdlab.core.engine import Batch
from tdlab.core.history import History
from tdlab.core.losses import Loss, _member_values, cross_entropy_in
from tdlab.core.monitors import Evaluation
from tdlab.core.recipes import Recipe


# ----------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Tasks:
    """A class-incremental split: ``classes[k]`` are task k's classes (k = 0, 1, ...), each task
    trains ``steps_per_task`` steps, task k on steps k·S + 1 … (k + 1)·S."""

    classes: tuple[tuple[int, ...], ...]
    steps_per_task: int

    @classmethod
    def split(cls, num_classes: int, num_tasks: int, steps_per_task: int) -> "Tasks":
        """Classes 0 … C − 1 in order, C / T per task (Split-MNIST: 5 tasks of 2 digits)."""
        check_range("num_tasks", num_tasks, 1, num_classes)
        check_range("steps_per_task", steps_per_task, 1)
        if num_classes % num_tasks:
            raise ValueError(f"{num_classes} classes do not split into {num_tasks} equal tasks")
        per = num_classes // num_tasks
        return cls(tuple(tuple(range(k * per, (k + 1) * per)) for k in range(num_tasks)), steps_per_task)

    @property
    def count(self) -> int:
        return len(self.classes)

    @property
    def steps(self) -> int:
        return self.count * self.steps_per_task

    def task_at(self, step: int) -> int:
        """The task trained at ``step`` (1-based, as the loop counts); step 0 (before training) is task 0."""
        return min(max(step - 1, 0) // self.steps_per_task, self.count - 1)

    def end(self, task: int) -> int:
        """The last step of ``task``."""
        return (task + 1) * self.steps_per_task

    @property
    def ends(self) -> list[int]:
        return [self.end(k) for k in range(self.count)]

    def task_of(self, labels: torch.Tensor) -> torch.Tensor:
        """The task of each label."""
        lookup = torch.full((max(max(c) for c in self.classes) + 1,), -1, dtype=torch.long)
        for k, classes in enumerate(self.classes):
            lookup[list(classes)] = k
        return lookup.to(labels.device)[labels.long()]


# ----------------------------------------------------------------- experience replay


class ExperienceReplay:
    """A batch hook for class-incremental training with experience replay.

    At step s (task k = ``tasks.task_at(s)``) the batch is ``batch_size`` examples of task k,
    drawn without replacement epoch by epoch from a seeded permutation of the task's training
    examples (the loop's own batch, drawn from the whole set, is discarded), followed — once the
    memory holds something — by ``replay_size`` (default ``batch_size``, as the official
    ``ERPlugin``) examples drawn uniformly without replacement from the memory.

    The memory (Avalanche's ``ClassBalancedBuffer(adaptive_size=True)``) is updated after each
    task: its ``memory`` slots are shared equally between the classes seen so far (the first
    classes get the remainder), each class keeps the first examples of its own fixed random
    order, so an old class keeps a prefix of what it kept before. ``memory=0`` is plain
    fine-tuning (no replay).

    ``data`` is the data set the loop trains on, or a function that returns it (called once,
    at the first step). Labels come from ``data.y_train`` (no per-member label noise).
    """

    def __init__(self, data: Dataset | Callable[[], Dataset], tasks: Tasks, batch_size: int, memory: int,
                 seed: int = 0, replay_size: int | None = None):
        check_range("batch_size", batch_size, 1)
        check_range("memory", memory, 0)
        self._data = data if callable(data) else (lambda: data)
        self.tasks, self.batch_size, self.memory, self.seed = tasks, batch_size, memory, seed
        self.replay_size = batch_size if replay_size is None else replay_size
        self.settings = {"memory": memory, "steps_per_task": tasks.steps_per_task, "tasks": tasks.count,
                         "task_classes": tasks.classes, "replay_size": self.replay_size}
        self._ready = False

    def _prepare(self) -> None:
        data = self._data()
        self.data = data
        gen = torch.Generator().manual_seed(self.seed)
        labels = data.y_train.cpu()
        self._task_examples = [torch.nonzero(torch.isin(labels, torch.tensor(c))).flatten()
                               for c in self.tasks.classes]
        # every class's fixed random order: the memory keeps a prefix of it
        self._class_order = {}
        for c in (c for classes in self.tasks.classes for c in classes):
            examples = torch.nonzero(labels == c).flatten()
            self._class_order[c] = examples[torch.randperm(len(examples), generator=gen)]
        self._gen = gen
        self._queue: list[torch.Tensor] = []
        self._task = -1
        self.buffer = torch.zeros(0, dtype=torch.long)
        self._ready = True

    def memory_after(self, task: int) -> torch.Tensor:
        """The training-set indices the memory holds after ``task`` (0-based) has been trained."""
        if not self._ready:
            self._prepare()
        seen = [c for classes in self.tasks.classes[:task + 1] for c in classes]
        if self.memory == 0:
            return torch.zeros(0, dtype=torch.long)
        per, extra = divmod(self.memory, len(seen))
        kept = [self._class_order[c][:per + (i < extra)] for i, c in enumerate(seen)]
        return torch.cat(kept)

    def _next_new(self, task: int) -> torch.Tensor:
        if task != self._task:                    # a new task: its own epochs start
            self._task, self._queue = task, []
            if task > 0:
                self.buffer = self.memory_after(task - 1)
        examples = self._task_examples[task]
        size = min(self.batch_size, len(examples))
        if not self._queue or len(self._queue[0]) < size:
            order = examples[torch.randperm(len(examples), generator=self._gen)]
            self._queue = [order[i:i + size] for i in range(0, len(order) - size + 1, size)]
        return self._queue.pop(0)

    def __call__(self, batch: Batch) -> Batch:
        if not self._ready:
            self._prepare()
        task = self.tasks.task_at(batch.step)
        index = self._next_new(task)
        if len(self.buffer):
            pick = torch.randperm(len(self.buffer), generator=self._gen)[:min(self.replay_size, len(self.buffer))]
            index = torch.cat([index, self.buffer[pick]])
        index = index.to(self.data.device)
        members = batch.y.shape[0]
        return Batch(self.data.x_train.index_select(0, index),
                     self.data.y_train.index_select(0, index).expand(members, -1), index, batch.step)


class ReplayCrossEntropy(Loss):
    """The ER loss of the official code (``Lw_new``): the batch's first ``new_count`` examples are
    the current task's, the rest replayed from memory,

        L = λ · mean CE(new) + (1 − λ) · mean CE(replayed),

    and L = λ · mean CE(new) while the memory is empty (the first task). ``new_weight`` λ is a
    per-member coefficient (the paper uses 0.3 on Split-MNIST, 0.7 on Split-CIFAR10)."""

    name = "replay_ce"
    hyperparameters = ("new_weight",)
    settings = ("new_count",)

    def __init__(self, new_weight: float = 0.3, new_count: int = 32):
        check_range("new_weight", new_weight, 0, 1)
        self.new_weight, self.new_count = new_weight, new_count

    def __call__(self, logits, targets, index=None):
        per_example = cross_entropy_in(logits, targets, reduction="none")      # (E, B)
        new = per_example[..., :self.new_count].mean(-1)
        weight = _member_values(self.new_weight, new)                         # λ, per member
        loss = weight * new                                                   # λ · CE(new)
        if per_example.shape[-1] > self.new_count:
            loss = loss + (1 - weight) * per_example[..., self.new_count:].mean(-1)   # (1 − λ) · CE(replay)
        return loss


# ----------------------------------------------------------------- measuring


def task_accuracy(tasks: Tasks, split: str = "test") -> Callable[[Evaluation], dict]:
    """A monitor: each task's accuracy on ``split`` (its classes' examples, argmax over *all*
    classes — class-incremental), logged as ``(split, "acc task k")`` for k = 1 … T, and the
    mean over the tasks seen so far as ``(split, "acc seen")``."""

    masks: dict[tuple, list[torch.Tensor]] = {}          # the split's labels do not change: one set of masks

    def monitor(ev: Evaluation) -> dict:
        logits, targets = ev.logits[split], ev.targets[split]
        correct = (logits.argmax(-1) == targets).float()                         # (E, N)
        key = (targets.data_ptr(), targets.shape[-1])
        if key not in masks:
            task = tasks.task_of(targets[0])
            masks[key] = [task == k for k in range(tasks.count)]
        out, seen = {}, []
        for k, mask in enumerate(masks[key]):
            acc = correct[:, mask].mean(-1)
            out[split, f"acc task {k + 1}"] = acc
            if k <= tasks.task_at(ev.step):
                seen.append(acc)
        out[split, "acc seen"] = torch.stack(seen).mean(0)
        return out

    return monitor


def task_curves(history: History, tasks: Tasks, member: int = 0, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """The evaluation steps and a (T, steps) array of each task's accuracy."""
    steps = np.asarray(history.curve(split, "acc task 1", member)[0])
    return steps, np.array([history.curve(split, f"acc task {k + 1}", member)[1] for k in range(tasks.count)])


def min_accuracy(steps: Sequence[int], accuracy: Sequence[float], task_end: int,
                 until: int | None = None) -> float:
    """min-ACC of one task (the paper's Eq. 3; ``TaskTrackingMINAccuracyPluginMetric``): the lowest
    accuracy measured on it at any evaluation after its training ended (step > ``task_end``), up to
    step ``until`` (inclusive; default: all). NaN when there is no such evaluation."""
    steps, accuracy = np.asarray(steps), np.asarray(accuracy, dtype=float)
    after = (steps > task_end) & (steps <= (np.inf if until is None else until))
    return float(accuracy[after].min()) if after.any() else float("nan")


def average_min_accuracy(steps, curves: np.ndarray, tasks: Tasks) -> float:
    """Average min-ACC over the tasks that have a successor (all but the last)."""
    return float(np.mean([min_accuracy(steps, curves[k], tasks.end(k)) for k in range(tasks.count - 1)]))


def stability_gap(steps, curves: np.ndarray, tasks: Tasks, evaluated=None) -> float:
    """The stability gap as one number: the average min-ACC (:func:`average_min_accuracy`) from the
    task-end evaluations alone minus the one from the evaluations ``evaluated`` (a boolean mask over
    ``steps``; default: every one). The paper's point (min-ACC ≪ the accuracy at task ends):
    evaluated at every step, min-ACC sees the drops right after the task switches that the task-end
    evaluation steps over. Never negative when ``evaluated`` holds the task ends."""
    steps = np.asarray(steps)
    ends = np.isin(steps, tasks.ends)
    every = np.ones(len(steps), bool) if evaluated is None else np.asarray(evaluated, bool)
    return (average_min_accuracy(steps[ends], curves[:, ends], tasks)
            - average_min_accuracy(steps[every], curves[:, every], tasks))


def after_switches(steps, tasks: Tasks, window: int) -> np.ndarray:
    """A boolean mask over ``steps``: the first ``window`` steps of every task but the first (the steps
    right after a task switch, where the stability gap's drops lie)."""
    steps = np.asarray(steps)
    return np.any([(steps > tasks.end(k - 1)) & (steps <= tasks.end(k - 1) + window)
                   for k in range(1, tasks.count)], axis=0)


def worst_case_accuracy(steps, curves: np.ndarray, tasks: Tasks, at_step: int) -> float:
    """WC-ACC at ``at_step`` (Eq. 4; ``WCACCPluginMetric``): with k the task being trained and
    T = k + 1 tasks seen, (1/T)·(A_k(at_step) + Σ_{j<k} min-ACC_j up to at_step)."""
    steps = np.asarray(steps)
    k = tasks.task_at(at_step)
    now = int(np.flatnonzero(steps == at_step)[0])
    terms = [float(curves[k][now])] + [min_accuracy(steps, curves[j], tasks.end(j), until=at_step) for j in range(k)]
    return float(np.mean(terms))


@dataclass(frozen=True)
class Switch:
    """What the earlier tasks' mean accuracy did around the switch into task ``task`` (0-based):
    its value at the last evaluation of the previous task (``before``), its lowest value in the
    first ``window`` steps of the new task (``lowest``, at ``lowest_step``) and its value at the
    new task's end (``after``)."""

    task: int
    before: float
    lowest: float
    lowest_step: int
    after: float

    @property
    def dip(self) -> float:
        return self.before - self.lowest

    @property
    def recovery(self) -> float:
        return self.after - self.lowest


def switches(steps, curves: np.ndarray, tasks: Tasks, window: int) -> list[Switch]:
    """One :class:`Switch` per task switch: the mean accuracy over the tasks trained before it,
    just before, at its lowest in the first ``window`` steps after, and at the new task's end."""
    steps = np.asarray(steps)
    at = lambda step: int(np.flatnonzero(steps == step)[0])              # noqa: E731
    out = []
    for k in range(1, tasks.count):
        earlier = curves[:k].mean(0)
        inside = np.flatnonzero((steps > tasks.end(k - 1)) & (steps <= tasks.end(k - 1) + window))
        low = inside[np.argmin(earlier[inside])]
        out.append(Switch(k, float(earlier[at(tasks.end(k - 1))]), float(earlier[low]), int(steps[low]),
                          float(earlier[at(tasks.end(k))])))
    return out


def largest_drop(window: Sequence[float]) -> float:
    """max over i < j of A_i − A_j inside one window (0 for fewer than two values)."""
    best, highest = 0.0, -np.inf
    for value in window:
        best = max(best, highest - value)
        highest = max(highest, value)
    return float(best) if len(window) > 1 else 0.0


def windowed_forgetting(accuracy: Sequence[float], window: int = 10) -> float:
    """WF_w (``WindowedForgettingPluginMetric``): the largest drop A_i − A_j, i < j, between two
    evaluations at most ``window`` − 1 evaluations apart, over the whole curve (the code's
    default window is 10 evaluations)."""
    check_range("window", window, 2)
    values = list(np.asarray(accuracy, dtype=float))
    return max([largest_drop(values[max(0, j - window + 1):j + 1]) for j in range(len(values))] + [0.0])


# ----------------------------------------------------------------- a recipe


def recipe(data: Callable[[], Dataset], model: Callable[[], nn.Module], *, num_tasks: int, steps_per_task: int,
           batch_size: int, memory: int, new_weight: float = 0.3, replay_seed: int = 0, eval_period: int = 1,
           **settings) -> Recipe:
    """A class-incremental recipe: ``data``'s classes split into ``num_tasks`` tasks trained one after
    another with experience replay. Knobs besides the engine's: ``memory`` (replay slots),
    ``steps_per_task``, ``new_weight`` (λ, per member), ``replay_seed`` (the memory's draws and the
    task batches' order), ``eval_period`` (steps between evaluations: the engine's ``eval_every``,
    recorded as a knob). The monitor :func:`task_accuracy` is on."""
    load = functools.cache(data)

    def replay(memory: int = memory, steps_per_task: int = steps_per_task, replay_seed: int = replay_seed,
               eval_period: int = eval_period) -> dict:
        dataset = load()
        tasks = Tasks.split(dataset.num_classes, num_tasks, steps_per_task)
        return {"batch_hook": ExperienceReplay(load, tasks, batch_size, memory, seed=replay_seed),
                "steps": tasks.steps, "monitors": [task_accuracy(tasks)], "eval_every": eval_period}

    loss = ReplayCrossEntropy(new_weight=new_weight, new_count=batch_size)
    return Recipe(load, model, {"batch_size": batch_size, "loss": loss, **settings}, derive=(replay,))


def tasks_of(history: History, member: int = 0) -> Tasks:
    """The task split a run of :func:`recipe` trained on, from its knobs."""
    knobs = history.knobs[member]
    return Tasks(tuple(tuple(c) for c in knobs["task_classes"]), knobs["steps_per_task"])


# ----------------------------------------------------------------- the paper's own setup


def paper_recipe(replay_seed: int = 0):
    """The paper's Split-MNIST run (De Lange et al., ICLR 2023): an MLP 784 → 400 → 400 → 10, SGD (lr 0.01,
    momentum 0.9), batch 256, 10 epochs per task (470 steps) over 5 tasks, replay from a memory of 2000 with the
    new task's loss weighted 0.3 (the stability-gap chapter, book/08_continual/01_stability_gap)."""
    return recipe(lambda: datasets.load("mnist"), lambda: models.MLP(784, 10, width=400, depth=2), num_tasks=5,
                  steps_per_task=470, batch_size=256, memory=2000, new_weight=0.3, replay_seed=replay_seed,
                  optimizer="sgd", lr=0.01, momentum=0.9)
