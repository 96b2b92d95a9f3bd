"""What each step of the loop sees: the batches' order, the epoch, the learning-rate schedule, the hooks' records.

:func:`batch_order` draws one seeded permutation of the training set per epoch and slices it in batches
(every member of a run sees the same batches: ``data_seed``); :func:`schedule` is the learning-rate
multiplier by name; :class:`Batch` is what a ``batch_hook`` gets and returns, :class:`StepState` what a
``step_hook`` gets after each step; :func:`flat_layout` says where each parameter lies in a row of the
``(E, P)`` buffer; :func:`train_subset` which training examples an evaluation on a subset reads.
:mod:`tdlab.core.engine`, the loop, imports them all (and ``engine.batch_order`` & co. still work).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from tdlab.core.config import check_choice
from tdlab.core.flat import FlatOptimizer

SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")


@dataclass
class Batch:
    """What a ``batch_hook`` receives and returns: inputs, targets (E, B), dataset indices, step.

    ``x`` is shared by the members, (B, ...), unless ``per_member`` is set: then it is (E, B, ...),
    one batch of inputs per member (what :func:`tdlab.core.augment.per_member` returns when members
    mix their batches differently)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    step: int
    per_member: bool = False


@dataclass
class StepState:
    """What a ``step_hook`` receives right after each optimizer step (before any evaluation).

    ``flat`` is the ``(E, P)`` buffer every parameter of every member is a view of (edit it in
    place: masks, resets), ``grad`` the ``(E, P)`` minibatch gradient this step used (without
    weight decay), ``layout[name] = (start, stop, shape)`` where a parameter lies in a row of
    ``flat``, ``optimizer`` the :class:`~tdlab.core.flat.FlatOptimizer` whose state (momentum) is laid
    out like ``flat``. ``step`` counts from 1; ``steps`` is the run's length.
    """

    step: int
    steps: int
    epoch_length: int
    flat: torch.Tensor
    grad: torch.Tensor
    layout: dict[str, tuple[int, int, tuple[int, ...]]]
    optimizer: FlatOptimizer


def flat_layout(shapes: Sequence[tuple[str, tuple[int, ...]]]) -> dict[str, tuple[int, int, tuple[int, ...]]]:
    """``name -> (start, stop, shape)`` of parameters laid one after another in a flat row."""
    layout, offset = {}, 0
    for name, shape in shapes:
        size = math.prod(shape)
        layout[name] = (offset, offset + size, tuple(shape))
        offset += size
    return layout


def steps_per_epoch(num_examples: int, batch_size: int | None) -> int:
    """How many steps of :func:`batch_order` make one epoch: n // batch_size (the last incomplete
    batch is dropped), or 1 for full-batch training."""
    if batch_size is None or batch_size >= num_examples:
        return 1
    return num_examples // batch_size


def batch_order(num_examples: int, batch_size: int | None, steps: int, seed: int,
                device=None) -> Iterator[torch.Tensor]:
    """Example indices for each step: a fresh seeded permutation every epoch, sliced in batches.

    ``batch_size=None`` (or ≥ n) is full-batch training: every step sees ``arange(n)``.
    The last incomplete batch of an epoch is dropped, as most of the papers' loaders do.
    """
    if batch_size is None or batch_size >= num_examples:
        everything = torch.arange(num_examples, device=device)
        for _ in range(steps):
            yield everything
        return
    gen = torch.Generator().manual_seed(seed)
    per_epoch = steps_per_epoch(num_examples, batch_size)
    done = 0
    while done < steps:
        order = torch.randperm(num_examples, generator=gen).to(device)
        for b in range(min(per_epoch, steps - done)):
            yield order[b * batch_size:(b + 1) * batch_size]
        done += min(per_epoch, steps - done)


def schedule(name: str | Callable[[int], float], steps: int, warmup: int = 0,
             milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1) -> Callable[[int], float]:
    """A learning-rate multiplier ``step -> factor`` by name.

    - ``constant``;
    - ``cosine``: 1 → 0 over the run;
    - ``step``: × ``factor`` at each of the ``milestones`` (fractions of the run; by default
      ×0.1 at 50% and 75%, the schedule of the mixup and CutMix code; ELR's CIFAR runs use
      ×0.01 at 1/3 and 2/3 of 120 epochs);
    - ``warmup_cosine``: linear warm-up over ``warmup`` steps, then cosine.

    A callable is returned unchanged.
    """
    if callable(name):
        return name
    check_choice("schedule", name, SCHEDULES)
    if name == "constant":
        return lambda step: 1.0
    if name == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    if name == "step":
        marks = [int(round(m * steps)) for m in milestones]
        return lambda step: factor ** sum(step >= mark for mark in marks)

    def warmup_cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress_ = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))

    return warmup_cosine


def train_subset(num_train: int, n: int, seed: int, device=None) -> torch.Tensor:
    """The n training examples an evaluation with ``eval_train_subset=n`` reads: the first n of a
    permutation of ``num_train`` drawn from ``seed`` (a generator of its own), in ascending order."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(num_train, generator=generator)[:n].sort().values.to(device)
