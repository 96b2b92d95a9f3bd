"""A sweep's members as separate jobs, for runs too large for one machine (issue 34 item 4).

A paper-scale sweep — several seeds and noise rates of a ResNet for 100+ epochs — projects past a GPU-hour,
and research clusters give GPUs as jobs. :func:`run` trains each member of a sweep as its own job on an
executor and merges the results into one :class:`~tdlab.core.history.History`, member by member in the order
given: exactly what :func:`tdlab.core.engine.run` gives when it trains the same members one at a time
(``batched=False``), and what a stacked run gives up to rounding (the engine's tests check that to 1e-5).

The executor is any object with ``submit(fn, *args)`` returning a job with ``result()``:

- `submitit <https://github.com/facebookincubator/submitit>`_ (``pip install submitit``): ``AutoExecutor`` on a
  Slurm cluster — the members then go out as one job array — or ``LocalExecutor`` on this machine;
- ``concurrent.futures`` executors (threads, or processes when the model factory pickles);
- Ray: ``ray.util.multiprocessing.Pool`` does not have this shape; wrap ``ray.remote(fn).remote`` in an
  object whose ``submit`` returns something with ``result()`` (``ray.get``).

Each job receives the model factory, the data and one member's settings, so all three must pickle
(submitit and Ray use cloudpickle, which takes lambdas and closures); a hook with settings per member
(:func:`tdlab.core.augment.per_member`, a flat optimizer rule) is split into each member's own, as the engine
does when it trains members one at a time. Jobs show no progress bar and call no ``callback``.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch.nn as nn

from tdlab.core import engine
from tdlab.core.data import Dataset
from tdlab.core.history import History, concat


def _member_hook(hook, i: int):
    """The hook member ``i`` trains with: its own when the hook has settings per member."""
    return hook.member(i) if getattr(hook, "member_settings", None) is not None else hook


def train_member(model: Callable[[], nn.Module], data: Dataset, member: dict, settings: dict) -> History:
    """One job: :func:`tdlab.core.engine.run` on one member, one at a time, without progress or callback."""
    return engine.run(model, data, [member], **{**settings, "batched": False, "progress": False, "callback": None})


def run(model: Callable[[], nn.Module], data: Dataset, members, *, executor, **settings) -> History:
    """Train every member of ``members`` (as :func:`tdlab.core.engine.run` takes them) as its own job on
    ``executor`` and return one History with the members in the order given. ``settings`` are
    :func:`tdlab.core.engine.run`'s keyword arguments, shared by every member. An executor with ``batch()``
    (submitit) submits the jobs inside it, so a Slurm cluster receives one job array."""
    if not hasattr(executor, "submit"):
        raise ValueError(f"the executor must have submit(fn, *args) returning a job with result(); got {executor!r}")
    if isinstance(model, nn.Module):
        raise ValueError("pass a model factory (a function returning a new model): each job builds its own model")
    if settings.get("callback") is not None:
        raise ValueError("a callback cannot reach jobs on other machines: draw from the History run returns")
    members = engine.member_list(members)
    flat_rule = engine.is_flat_rule(settings.get("optimizer"))
    batch = executor.batch() if hasattr(executor, "batch") else contextlib.nullcontext()
    jobs = []
    with batch:
        for i, member in enumerate(members):
            own = dict(settings)
            for name in ("batch_hook", "step_hook"):
                if settings.get(name) is not None:
                    own[name] = _member_hook(settings[name], i)
            if flat_rule:
                own["optimizer"] = _member_hook(settings["optimizer"], i)
            jobs.append(executor.submit(train_member, model, data, member, own))
    return concat([job.result() for job in jobs])
