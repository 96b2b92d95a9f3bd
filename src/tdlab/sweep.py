"""Many configurations trained at once, at about the cost of one run.

At the sizes of this book (MLPs and small CNNs on a few thousand examples) most
of a training step is per-call overhead, not arithmetic. So instead of E runs one
after another, :func:`sweep` stacks the parameters of E models in one ``(E, P)``
buffer (:mod:`tdlab.flat`) and runs one batched forward (batched matrix products for
an MLP, ``vmap(functional_call)`` for any other model), one backward and one
optimizer update per step for all of them. Members may differ in

- ``seed``        — the initialisation of the model;
- ``lr``, ``weight_decay``, ``momentum`` — the optimizer's settings;
- ``noise_rate``, ``noise_seed`` — each member may see its own noisy labels;
- the loss's own coefficients (``lam``, ``beta`` for ELR, ...).

All members see the same batches in the same order (``data_seed``), so a batched
run of E configurations equals E separate :func:`tdlab.train.train` runs (the tests
check it to 1e-5). A member whose loss turns NaN/inf is marked diverged and frozen
(its updates are zeroed); the others keep training.
"""
from __future__ import annotations

import copy
import itertools
import time
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call

from tdlab.config import check_choice
from tdlab.data import Dataset, with_label_noise
from tdlab.flat import FlatOptimizer, flat_grad, stack
from tdlab.history import History
from tdlab.losses import Loss, get_loss
from tdlab.models import MLP
from tdlab.train import (Batch, OPTIMIZERS, batch_order, check_hyperparameters, chunked, measure,
                         progress_bar, schedule)

BASE_KNOBS = ("seed", "lr", "weight_decay", "momentum", "noise_rate", "noise_seed")


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


def _members(spec) -> list[dict]:
    """A list of member dicts from a list of dicts or a dict of equal-length lists."""
    if isinstance(spec, dict):
        lengths = {k: len(v) for k, v in spec.items() if isinstance(v, (list, tuple))}
        if len(lengths) != len(spec):
            scalar = [k for k in spec if k not in lengths]
            raise ValueError(f"sweep knob {scalar[0]!r} must be a list (one value per member)")
        first = next(iter(spec), None)
        expected = lengths.get(first, 0)
        for key, length in lengths.items():
            if length != expected:
                raise ValueError(f"sweep knob {key!r} has {length} values but {first!r} has {expected}")
        return [{k: spec[k][i] for k in spec} for i in range(expected)]
    members = [dict(m) for m in spec]
    if not members:
        raise ValueError("a sweep needs at least one member")
    return members


# ----------------------------------------------------------------- the sweep


def sweep(model_fn: Callable[[], nn.Module], data: Dataset, members, *, loss: str | Loss = "ce",
          optimizer: str = "adamw", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          noise: str = "symmetric", noise_rate: float | None = None, noise_seed: int = 0,
          batch_size: int | None = 128, steps: int = 1000, schedule_name="constant",
          eval_every: int = 50, data_seed: int = 0,
          batch_hook: Callable[[Batch], Batch] | None = None,
          callback: Callable[[History], None] | None = None,
          progress: bool = True, description: str = "sweep", **loss_kwargs) -> History:
    """Train one model per member setting, all at once; return one :class:`History`.

    ``members``: a list of dicts (``[{"lr": 1e-3, "lam": 3}, ...]``), a dict of
    equal-length lists, or :func:`grid` output. Knobs not given for a member take the
    keyword defaults. With ``noise_rate`` as a knob (or argument), ``data`` must hold
    clean labels and each member gets ``with_label_noise(data, noise, rate, noise_seed)``.
    ``betas`` and ``eps`` are Adam(W)'s, shared by all members.

    The History has one member per setting, with the settings as columns of
    ``history.frame``. Models, once trained, are in ``history.models`` (a list).
    """
    members = _members(members)
    loss_fn = copy.deepcopy(get_loss(loss, **loss_kwargs))  # its coefficients become per-member tensors
    allowed = BASE_KNOBS + tuple(loss_fn.hyperparameters)
    for member in members:
        for key in member:
            if key not in allowed:
                raise ValueError(f"unknown sweep knob {key!r}: the model/optimizer take {BASE_KNOBS}, "
                                 f"the loss {loss_fn.name!r} takes {loss_fn.hyperparameters or 'none'}")
    check_choice("optimizer", optimizer, OPTIMIZERS)
    defaults = {"seed": 0, "lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                "noise_rate": noise_rate, "noise_seed": noise_seed,
                **{k: getattr(loss_fn, k) for k in loss_fn.hyperparameters}}
    settings = [{**defaults, **m} for m in members]
    for s in settings:
        check_hyperparameters(s["lr"], s["weight_decay"], steps, batch_size, eval_every)
    count = len(settings)
    device = data.device

    # -- labels: shared, or one noisy draw per member
    if any(s["noise_rate"] is not None for s in settings):
        if data.has_noise:
            raise ValueError("sweeping noise_rate needs clean data; got data with corrupted labels already")
        draws = [with_label_noise(data, noise, s["noise_rate"] or 0.0, s["noise_seed"]) for s in settings]
        y_train = torch.stack([d.y_train for d in draws])
        mask = torch.stack([d.corrupted_mask for d in draws])
        y_true = data.y_train
    else:
        y_train = data.y_train   # shared (N,): sliced once per step, then expanded to (E, B)
        mask, y_true = data.corrupted_mask, data.y_train_true

    # -- models, stacked
    models = []
    for s in settings:
        torch.manual_seed(s["seed"])
        models.append(model_fn().to(device))
    flat, params, buffers = stack(models)
    base = models[0]

    if type(base).forward is MLP.forward:   # batched matrix products: measured faster than vmap
        def batched(p, b, x):
            return base.forward_stacked(p, x)
    else:
        def forward(p, b, x):
            return functional_call(base, (p, b), (x,))

        batched = torch.vmap(forward, in_dims=(0, 0, None), randomness="different")
    leaves = list(params.values())
    opt = FlatOptimizer(optimizer, flat, betas=betas, eps=eps)
    as_tensor = lambda key: torch.tensor([float(s[key]) for s in settings], device=device)  # noqa: E731
    lrs, wds, moms = as_tensor("lr"), as_tensor("weight_decay"), as_tensor("momentum")
    for key in loss_fn.hyperparameters:
        setattr(loss_fn, key, as_tensor(key))
    if data.num_classes is not None:
        loss_fn.setup(data.num_train, data.num_classes, members=count, device=device)
    multiplier = schedule(schedule_name, steps)
    active = torch.ones(count, dtype=torch.bool, device=device)
    all_active = True

    knob_names = sorted({k for m in members for k in m})
    history = History(knobs=[{k: s[k] for k in knob_names} for s in settings], diverged_at=[None] * count)

    def evaluate(step: int, running: torch.Tensor | None, seen: int) -> None:
        with torch.no_grad():
            # about 32k (member, example) rows per chunk keeps the activations in cache
            chunk = max(512, 32768 // count)
            logits_train = chunked(lambda x: batched(params, buffers, x), data.x_train, chunk, dim=1)
            logits_test = chunked(lambda x: batched(params, buffers, x), data.x_test, chunk, dim=1)
        results = measure(logits_train, logits_test, y_train, data.y_test, y_true, mask)
        for index, result in enumerate(results):
            if history.diverged_at[index] is not None and history.diverged_at[index] < step:
                result = {key: float("nan") for key in result}
            for (split, metric), value in result.items():
                history.log(step, split, metric, value, member=index)
            if running is not None and seen:
                history.log(step, "train", "objective", running[index].item() / seen, member=index)
        if callback is not None:
            callback(history)

    start = time.perf_counter()
    evaluate(0, None, 0)
    running, seen = torch.zeros(count, device=device), 0
    bar = progress_bar(steps, progress, description)
    for step, index in enumerate(batch_order(data.num_train, batch_size, steps, data_seed, device), start=1):
        labels = y_train.index_select(-1, index).expand(count, -1)     # (E, B), shared or per member
        batch = Batch(data.x_train.index_select(0, index), labels, index, step)
        if batch_hook is not None:
            batch = batch_hook(batch)
        losses = loss_fn(batched(params, buffers, batch.x), batch.y, batch.index)
        if not (all_active and bool(torch.isfinite(losses).all())):   # one check per step when all is well
            finite = torch.isfinite(losses)
            for member in torch.nonzero(active & ~finite).flatten().tolist():
                history.diverged_at[member] = step
            active, all_active = active & finite, False
            losses = torch.where(active, losses, torch.zeros_like(losses))
        grads = torch.autograd.grad(losses.sum(), leaves, allow_unused=True)
        grad = flat_grad(leaves, grads, count)             # (E, P), laid out as flat
        opt.step(grad, lrs * multiplier(step - 1), wds, moms, None if all_active else active)
        running += losses.detach()
        seen += 1
        if step % eval_every == 0 or step == steps:
            evaluate(step, running, seen)
            running, seen = torch.zeros(count, device=device), 0
        bar.update(1)
        if not all_active and not bool(active.any()):
            break
    bar.close()
    history.seconds = time.perf_counter() - start

    # unstack the trained parameters back into ordinary modules
    with torch.no_grad():
        for index, model in enumerate(models):
            for name, parameter in model.named_parameters():
                parameter.copy_(params[name][index])
    history.models = models
    return history


def sequential(model_fn: Callable[[], nn.Module], data: Dataset, members, **kwargs) -> History:
    """The same sweep as :func:`sweep`, one :func:`tdlab.train.train` run after another.

    The slow reference: used by the equivalence tests and the benchmark.
    """
    from tdlab.history import concat
    from tdlab.train import train

    members = _members(members)
    noise_kind = kwargs.pop("noise", "symmetric")
    data_seed = kwargs.pop("data_seed", 0)
    runs = []
    for member in members:
        member = dict(member)
        run_data = data
        rate = member.pop("noise_rate", kwargs.get("noise_rate"))
        noise_seed = member.pop("noise_seed", kwargs.get("noise_seed", 0))
        if rate is not None:
            run_data = with_label_noise(data, noise_kind, rate, noise_seed)
        run_kwargs = {k: v for k, v in kwargs.items() if k not in ("noise_rate", "noise_seed")}
        run_kwargs.update(member)
        history = train(model_fn, run_data, data_seed=data_seed, **run_kwargs)
        history.knobs = [{**({"noise_rate": rate} if rate is not None else {}), **member}]
        runs.append(history)
    return concat(runs)
