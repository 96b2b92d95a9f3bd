"""One training run: the one-member case of the loop in :mod:`tdlab.core.engine`.

>>> history = train(lambda: models.MLP(64, 10), data.digits(), lr=3e-3, steps=500)  # doctest: +SKIP
>>> history.final("test", "acc"), history.model                                       # doctest: +SKIP

It takes every setting :func:`tdlab.core.engine.run` takes — ``noise_rate``, the loss's
coefficients, ``betas``, ``monitors``, ``batch_hook``, ... — and returns the same
:class:`~tdlab.core.history.History`, with one member.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from tdlab.core.data import Dataset
from tdlab.core.engine import run
from tdlab.core.history import History


def train(model: nn.Module | Callable[[], nn.Module], data: Dataset, *, seed: int = 0,
          data_seed: int | None = None, **settings) -> History:
    """Train ``model`` (a module, or a factory built under ``torch.manual_seed(seed)``) on ``data``.

    ``data_seed`` (default ``seed``) fixes the batch order; every other keyword is a setting
    of :func:`tdlab.core.engine.run`. The trained model is ``history.model``.
    """
    return run(model, data, [{"seed": seed}], data_seed=seed if data_seed is None else data_seed, **settings)
