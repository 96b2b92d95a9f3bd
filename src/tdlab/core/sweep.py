"""Many configurations trained at once, at about the cost of one run.

:func:`sweep` is the many-member case of the loop in :mod:`tdlab.core.engine`: members may
differ in ``seed``, ``lr``, ``weight_decay``, ``momentum``, ``noise_rate``/``noise_seed`` (each
member its own noisy labels) and the loss's own coefficients (``lam``, ``beta`` for ELR,
...). Stackable models (no batch norm, one dtype) with a named optimizer are stacked and
stepped together; others run one at a time through the same loop. :func:`grid` builds
member lists; :func:`sequential` forces one-at-a-time, the reference the tests compare
a stacked run with.
"""
from __future__ import annotations

import itertools
from typing import Callable

from torch import nn

from tdlab.core.data import Dataset
from tdlab.core.engine import run
from tdlab.core.history import History


def grid(**values: list) -> list[dict]:
    """Every combination of the given knob values, as a list of member settings.

    >>> grid(noise_rate=[0.2, 0.4], lam=[0, 3])
    [{'noise_rate': 0.2, 'lam': 0}, {'noise_rate': 0.2, 'lam': 3}, {'noise_rate': 0.4, 'lam': 0}, {'noise_rate': 0.4, 'lam': 3}]
    """
    keys = list(values)
    for key, options in values.items():
        if not isinstance(options, (list, tuple)):
            raise ValueError(f"grid knob {key!r} must be a list of values, got {options!r}")
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]


def sweep(model_fn: Callable[[], nn.Module], data: Dataset, members, *, data_seed: int = 0,
          **settings) -> History:
    """Train one model per member setting (a list of dicts, a dict of equal-length lists, or
    :func:`grid` output), all at once where they can be stacked; return one History.

    Knobs not given for a member take the keyword values; every other keyword is a setting
    of :func:`tdlab.core.engine.run`. The trained models are ``history.models``.
    """
    return run(model_fn, data, members, data_seed=data_seed, **settings)


def sequential(model_fn: Callable[[], nn.Module], data: Dataset, members, **settings) -> History:
    """The same sweep as :func:`sweep`, one member after another through the same loop."""
    return sweep(model_fn, data, members, batched=False, **settings)
