"""Seeded label noise, returning the noisy labels and the mask of corrupted examples.

Three conventions appear in the papers of this book, and they are *not* the same rate:

- :func:`symmetric` — a fraction ``rate`` of the examples is flipped to a *different*
  class chosen uniformly. The realised flip rate is exactly ``round(rate·n)/n``.
  Used by Co-teaching / Nested Co-teaching and most "symmetric noise" tables.
- :func:`uniform` — a fraction ``rate`` of the examples gets a label redrawn from *all*
  C classes, so it may redraw its own label: the realised flip rate is ≈ ρ(1 − 1/C)
  (36% for "40%" on CIFAR-10). The convention of ELR (Liu et al. 2020, code
  ``CIFAR10_train.symmetric_noise``), LDR, and of Doshi et al. 2023 (with C = p).
- :func:`pairflip` — class-conditional maps: a fraction ``rate`` of each *source*
  class is moved to its target class. ``mapping="cifar10"`` is the asymmetric CIFAR-10
  map of Patrini et al. / ELR (truck→automobile, bird→airplane, cat↔dog, deer→horse);
  ``mapping="next"`` is the generic y → y+1 mod C.

``corrupted_mask`` is always ``noisy != true`` — an example redrawn to its own label
is *not* counted as corrupted.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from tdlab.core.config import check_choice, check_range

# CIFAR-10 classes: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog, 7 horse, 8 ship, 9 truck
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
KINDS = ("symmetric", "uniform", "pairflip", "asymmetric")


class NoisyLabels(NamedTuple):
    labels: torch.Tensor          # the labels after corruption
    corrupted_mask: torch.Tensor  # bool, labels != true labels

    @property
    def realised_rate(self) -> float:
        return self.corrupted_mask.float().mean().item()


def _check(labels: torch.Tensor, rate: float, num_classes: int) -> None:
    check_range("noise rate", float(rate), 0, 1, high_open=True)
    check_range("num_classes", num_classes, 2)
    if labels.dtype not in (torch.int64, torch.int32) or labels.dim() != 1:
        raise ValueError("labels must be a 1-D integer tensor")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}]")


def _chosen(n: int, rate: float, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen)[: int(round(rate * n))]


def symmetric(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0) -> NoisyLabels:
    """Flip exactly round(rate·n) labels, each to a uniformly drawn *different* class."""
    _check(labels, rate, num_classes)
    gen = torch.Generator().manual_seed(seed)
    true = labels.cpu()
    noisy = true.clone()
    idx = _chosen(len(true), rate, gen)
    # an offset in 1..C-1 added mod C is uniform over the other classes
    offset = torch.randint(1, num_classes, (len(idx),), generator=gen)
    noisy[idx] = (true[idx] + offset) % num_classes
    noisy = noisy.to(labels.device)
    return NoisyLabels(noisy, noisy != labels)


def uniform(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0) -> NoisyLabels:
    """Redraw round(rate·n) labels uniformly from all C classes (ELR's "symmetric" noise)."""
    _check(labels, rate, num_classes)
    gen = torch.Generator().manual_seed(seed)
    noisy = labels.cpu().clone()
    idx = _chosen(len(noisy), rate, gen)
    noisy[idx] = torch.randint(0, num_classes, (len(idx),), generator=gen)
    noisy = noisy.to(labels.device)
    return NoisyLabels(noisy, noisy != labels)


def pairflip(labels: torch.Tensor, rate: float, num_classes: int, seed: int = 0,
             mapping: str | dict[int, int] = "next") -> NoisyLabels:
    """Move a fraction ``rate`` of every source class to its target class.

    ``mapping``: ``"next"`` (y → y+1 mod C), ``"cifar10"`` (:data:`CIFAR10_ASYMMETRIC`),
    or an explicit ``{source: target}`` dict.
    """
    _check(labels, rate, num_classes)
    if mapping == "next":
        mapping = {c: (c + 1) % num_classes for c in range(num_classes)}
    elif mapping == "cifar10":
        if num_classes != 10:
            raise ValueError("the 'cifar10' map needs num_classes == 10")
        mapping = CIFAR10_ASYMMETRIC
    elif not isinstance(mapping, dict):
        raise ValueError("mapping must be 'next', 'cifar10' or a {source: target} dict")
    gen = torch.Generator().manual_seed(seed)
    true = labels.cpu()
    noisy = true.clone()
    for source, target in sorted(mapping.items()):
        members = torch.nonzero(true == source).flatten()
        pick = members[torch.randperm(len(members), generator=gen)[: int(round(rate * len(members)))]]
        noisy[pick] = target
    noisy = noisy.to(labels.device)
    return NoisyLabels(noisy, noisy != labels)


def corrupt(labels: torch.Tensor, kind: str, rate: float, num_classes: int, seed: int = 0) -> NoisyLabels:
    """Dispatch by name: ``symmetric``, ``uniform``, ``pairflip`` (y→y+1) or ``asymmetric`` (CIFAR-10 map)."""
    check_choice("noise kind", kind, KINDS)
    if kind == "symmetric":
        return symmetric(labels, rate, num_classes, seed)
    if kind == "uniform":
        return uniform(labels, rate, num_classes, seed)
    if kind == "pairflip":
        return pairflip(labels, rate, num_classes, seed, mapping="next")
    return pairflip(labels, rate, num_classes, seed, mapping="cifar10")
