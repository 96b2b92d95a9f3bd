"""The one training loop of tdlab: one run or many, batched or one at a time.

No ``DataLoader`` in the hot loop: the whole dataset sits on the device and each step
slices a batch by index, ``x_train[index]``; the index is also what losses with
per-example state (ELR) receive. Before each step the loop tells the loss where training
is (:meth:`~tdlab.core.losses.Loss.at_step`: step, steps, steps per epoch), for losses whose
targets follow the progress of training (PS-KD's α_t). :func:`run` trains E *members* — configurations that
may differ in their seed, learning rate, weight decay, momentum, label-noise kind, rate and
draw, and the loss's own coefficients — in one of two ways, through the same loop:

- **stacked**: the parameters of all E models are one ``(E, P)`` buffer
  (:mod:`tdlab.core.flat`); each step is one batched forward (batched matrix products for an
  MLP, ``vmap(functional_call)`` otherwise), one backward and one optimizer update for
  all members. At the sizes of this book most of a step is per-call overhead, so E
  members cost far less than E runs.
- **one at a time**: for models that cannot be stacked (batch norm keeps running
  statistics, parameters of mixed dtype) and optimizers other than the named ones (⊥Grad,
  any ``torch.optim`` factory), each member runs through the loop alone.

Besides the named optimizers, a *flat rule* — an object whose ``flat(flat, layout)`` returns a
stepper of the ``(E, P)`` buffer with :class:`~tdlab.core.flat.FlatOptimizer`'s ``step`` (SPAM:
:func:`tdlab.methods.stability.spam.flat_spam`) — stacks too; its ``member_settings`` (one dict per member), if
any, land in each member's knobs, and its ``member(i)`` is member i's rule alone.

:func:`tdlab.core.train.train` is the one-member case, :func:`tdlab.core.sweep.sweep` the
many-member one. All members see the same batches in the same order (``data_seed``), so a
stacked run of E configurations equals E separate runs (the tests check it to 1e-5).

Every ``eval_every`` steps the loop computes the logits of every member on the full
train and test sets (the train set on n fixed examples with ``eval_train_subset=n``) once
and hands them to the monitors (:mod:`tdlab.core.monitors`), whose
numbers land in the :class:`~tdlab.core.history.History`. A member whose loss turns NaN/inf
is marked diverged and frozen (its updates are zeroed) while the others go on.
"""
from __future__ import annotations

import copy
import inspect
import math
import time
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from tdlab.core import progress as progress_bars
from tdlab.core.batches import (SCHEDULES, Batch, StepState, batch_order, flat_layout, schedule,  # noqa: F401
                                steps_per_epoch, train_subset)
from tdlab.core.config import check_choice, check_range
from tdlab.core.data import Dataset, with_label_noise
from tdlab.core.flat import flat_grad, flatten_, flattenable, stack
from tdlab.core.history import History, concat
from tdlab.core.losses import Loss, get_loss
from tdlab.core.monitors import Evaluation, Monitor, accuracy, as_list, chunked, evaluating
from tdlab.core.optim import (flat_optimizer, is_flat_rule, make_optimizer, optimizer_name,  # noqa: F401
                              OPTIMIZERS)

KNOBS = ("seed", "lr", "weight_decay", "momentum", "noise_rate", "noise_seed", "noise")


def member_list(spec) -> list[dict]:
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
        raise ValueError("a run needs at least one member")
    return members


def check_hyperparameters(lr: float, weight_decay: float, steps: int, batch_size, eval_every: int) -> None:
    check_range("learning rate", lr, 0, low_open=True)
    check_range("weight decay", weight_decay, 0)
    check_range("steps", steps, 1)
    check_range("eval_every", eval_every, 1)
    if batch_size is not None:
        check_range("batch_size", batch_size, 1)


def has_stacked_forward(model: nn.Module) -> bool:
    """Whether ``model`` computes E stacked copies itself (``forward_stacked(params, x)``, as
    :class:`~tdlab.core.models.MLP` does) — defined by the same class as its ``forward``, so that a
    subclass that changes ``forward`` falls back to ``vmap``."""
    owner = next(cls for cls in type(model).__mro__ if "forward" in vars(cls))
    return "forward_stacked" in vars(owner)


def stackable(model: nn.Module) -> str | None:
    """``None`` if E copies of ``model`` can be stacked, else why not."""
    if any(True for _ in model.buffers()):
        return "the model keeps buffers (batch norm's running statistics)"
    if not flattenable(model):
        return "the model's parameters differ in dtype or device"
    return None


# ----------------------------------------------------------------- the two ways to step members


class Stacked:
    """E same-shaped models as one ``(E, P)`` parameter buffer, stepped together."""

    def __init__(self, models: list[nn.Module], optimizer: str, hyper: dict[str, torch.Tensor],
                 betas, eps: float, nesterov: bool):
        self.models, self.count, self.hyper = models, len(models), hyper
        self.flat, self.params, self.buffers = stack(models)
        self.base = models[0]

        def vmapped(inputs_dim):              # E members: inputs shared (None) or one batch each (0)
            call = torch.vmap(lambda p, b, x: functional_call(self.base, (p, b), (x,)),
                              in_dims=(0, 0, inputs_dim), randomness="different")
            return lambda x: call(self.params, self.buffers, x)

        stacked_forward = has_stacked_forward(self.base)  # batched matrix products: measured faster than vmap
        self._forward = (lambda x: self.base.forward_stacked(self.params, x)) if stacked_forward else vmapped(None)
        each = stacked_forward and "per_member" in inspect.signature(self.base.forward_stacked).parameters
        self._forward_each = ((lambda x: self.base.forward_stacked(self.params, x, per_member=True)) if each
                              else vmapped(0))
        self.leaves = list(self.params.values())
        self.layout = flat_layout([(name, tuple(p.shape[1:])) for name, p in self.params.items()])
        self.optimizer = flat_optimizer(optimizer, self.flat, self.layout, betas, eps, nesterov)
        self.grad: torch.Tensor | None = None                      # the last step's (E, P) gradient

    def forward(self, x: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        """Logits (E, B, C) of inputs shared (B, ...) or, with ``per_member``, one batch per member (E, B, ...)."""
        return self._forward_each(x) if per_member else self._forward(x)

    def step(self, losses: torch.Tensor, factor: float, active: torch.Tensor | None) -> None:
        grads = torch.autograd.grad(losses.sum(), self.leaves, allow_unused=True)
        self.grad = flat_grad(self.leaves, grads, self.count)
        self.optimizer.step(self.grad, self.hyper["lr"] * factor,
                            self.hyper["weight_decay"], self.hyper["momentum"], active)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        # about 32k (member, example) rows per chunk keeps the activations in cache
        with evaluating(self.base):
            return chunked(self._forward, x, max(512, 32768 // self.count), dim=1)

    def parameters(self, member: int) -> dict[str, torch.Tensor]:
        return {name: p[member].detach() for name, p in self.params.items()}

    def finish(self) -> list[nn.Module]:
        """The trained parameters copied back into ordinary modules."""
        with torch.no_grad():
            for index, model in enumerate(self.models):
                for name, parameter in model.named_parameters():
                    parameter.copy_(self.params[name][index])
        return self.models


class Single:
    """One model and its optimizer: a flat buffer for the named optimizers, ``torch.optim`` otherwise."""

    def __init__(self, model: nn.Module, optimizer, hyper: dict[str, torch.Tensor], betas, eps: float,
                 nesterov: bool):
        self.model, self.hyper = model, hyper
        self.count = 1
        if (isinstance(optimizer, str) or is_flat_rule(optimizer)) and flattenable(model):
            self.flat, self.params = flatten_(model)               # the parameters become views of one buffer
            self.torch_optimizer = None
            self.layout = flat_layout([(name, tuple(p.shape)) for name, p in model.named_parameters()
                                       if p.requires_grad])
            self.optimizer = flat_optimizer(optimizer, self.flat, self.layout, betas, eps, nesterov)
        else:
            self.torch_optimizer = make_optimizer(optimizer, model.parameters(), float(hyper["lr"]),
                                                  float(hyper["weight_decay"]), float(hyper["momentum"]),
                                                  betas, eps, nesterov)
            self.base_lrs = [group["lr"] for group in self.torch_optimizer.param_groups]
        self.grad: torch.Tensor | None = None                      # the last step's (1, P) gradient (flat buffer only)

    def forward(self, x: torch.Tensor, per_member: bool = False) -> torch.Tensor:
        return self.model(x[0] if per_member else x).unsqueeze(0)  # (1, B, C)

    def step(self, losses: torch.Tensor, factor: float, active: torch.Tensor | None) -> None:
        if self.torch_optimizer is None:
            grads = torch.autograd.grad(losses.sum(), self.params, allow_unused=True)
            self.grad = flat_grad(self.params, grads, 1)
            self.optimizer.step(self.grad, self.hyper["lr"] * factor,
                                self.hyper["weight_decay"], self.hyper["momentum"], active)
            return
        for group, base in zip(self.torch_optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        self.torch_optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.torch_optimizer.step()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        with evaluating(self.model):
            return chunked(self.model, x).unsqueeze(0)

    def parameters(self, member: int = 0) -> dict[str, torch.Tensor]:
        return {name: p.detach() for name, p in self.model.named_parameters()}

    def finish(self) -> list[nn.Module]:
        return [self.model]


# ----------------------------------------------------------------- the loop


def run(model: nn.Module | Callable[[], nn.Module], data: Dataset, members, *, loss: str | Loss = "ce",
        optimizer="adamw", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, nesterov: bool = False,
        noise: str = "symmetric", noise_rate: float | None = None, noise_seed: int = 0,
        batch_size: int | None = 128, steps: int = 1000, schedule_name="constant", warmup: int = 0,
        eval_every: int = 50, data_seed: int = 0, batch_hook: Callable[[Batch], Batch] | None = None,
        step_hook: Callable[[StepState], None] | None = None, monitors: Sequence[Monitor] = (),
        callback: Callable[[History], None] | None = None,
        tags: dict | None = None, batched: bool | None = None, progress: bool = True,
        description: str = "training", eval_train_subset: int | None = None, **loss_kwargs) -> History:
    """Train one model per member setting and return one :class:`History`.

    - ``model``: a factory ``() -> module``, called under ``torch.manual_seed(seed)`` for each
      member (or, for a single member, a module).
    - ``members``: a list of dicts (``[{"lr": 1e-3, "lam": 3}, ...]``) or a dict of equal-length
      lists. A member may set :data:`KNOBS` and the loss's ``hyperparameters``; what it does
      not set takes the keyword value.
    - ``loss``: a name of :data:`tdlab.core.losses.LOSSES` or a :class:`~tdlab.core.losses.Loss`; extra
      keyword arguments go to the loss (``lam=3, beta=0.7`` for ELR).
    - ``optimizer``: ``"sgd"`` (momentum, ``nesterov``), ``"adam"``, ``"adamw"`` (``betas``,
      ``eps``), a flat rule (:func:`is_flat_rule`: SPAM, :func:`tdlab.methods.stability.spam.flat_spam`; stacked
      like the named ones, its ``member_settings`` in each member's knobs), a factory
      ``params -> Optimizer`` or an optimizer object (one member at a time).
    - ``noise_rate``, ``noise`` and ``noise_seed`` (knobs): each member trains on
      ``with_label_noise(data, noise, noise_rate, noise_seed)``; ``data`` must then hold clean labels. ``None`` trains on ``data`` as it is.
    - ``batch_size=None`` trains full batch; ``schedule_name``: see :func:`schedule`.
    - ``batch_hook(Batch) -> Batch`` may change inputs/targets per step (mixup, CutMix, ...);
      its ``settings`` attribute, if any, is recorded in the knobs, and its ``member_settings``
      (one dict per member: :func:`tdlab.core.augment.per_member`), if any, in each member's knobs.
    - ``step_hook(StepState)`` is called after every optimizer step with the flat parameters, the
      step's gradient and the optimizer (sparse masks: :mod:`tdlab.methods.sparse_training.sparsity`); named optimizers
      only. Its ``settings`` attribute, if any, is recorded in the knobs, and its
      ``member_settings`` (one dict per member), if any, in each member's knobs; members trained
      one at a time then each get the hook's ``member(i)``.
    - ``monitors``: functions of an :class:`~tdlab.core.monitors.Evaluation` whose numbers land in the
      History at every evaluation, after :func:`tdlab.core.monitors.accuracy`.
    - ``callback(history)`` is called after every evaluation (live plots).
    - ``tags``: settings the loop does not use but the History should record (a chapter's
      name for a variant, a data setting).
    - ``eval_train_subset=n``: evaluate the *train* split on n fixed examples (windows) only — the
      first n of a permutation drawn once from ``data_seed``, the same at every evaluation and for
      every member; the test split stays whole. ``None`` (default): the whole training set. Recorded
      in the knobs when set; the Evaluation's ``train_index`` holds the examples.
    - ``batched``: ``None`` stacks the members when it can (more than one member, a named
      optimizer, stackable models), ``True`` insists (a ValueError says why it cannot),
      ``False`` runs them one at a time.
    """
    members = member_list(members)
    base_loss = get_loss(loss, **loss_kwargs)
    allowed = KNOBS + tuple(base_loss.hyperparameters)
    for member in members:
        for key in member:
            if key not in allowed:
                raise ValueError(f"unknown sweep knob {key!r}: the model/optimizer take {KNOBS}, "
                                 f"the loss {base_loss.name!r} takes {base_loss.hyperparameters or 'none'}")
    if isinstance(optimizer, str):
        check_choice("optimizer", optimizer, OPTIMIZERS)
    defaults = {"seed": 0, "lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                "noise_rate": noise_rate, "noise_seed": noise_seed, "noise": noise,
                **{k: getattr(base_loss, k) for k in base_loss.hyperparameters}}
    settings = [{**defaults, **m} for m in members]
    for s in settings:
        check_hyperparameters(s["lr"], s["weight_decay"], steps, batch_size, eval_every)
    if eval_train_subset is not None:
        check_range("eval_train_subset", eval_train_subset, 1, data.num_train)
    if isinstance(model, nn.Module) and len(settings) > 1:
        raise ValueError("pass a model factory (a function returning a new model) to train several members")
    if not callable(model):
        raise ValueError("model must be an nn.Module or a factory returning one")
    if any(s["noise_rate"] is not None for s in settings) and data.y_train.dim() > 1:
        raise ValueError("label noise is for class labels, not next-token targets (N, T)")
    if any(s["noise_rate"] is not None for s in settings) and data.has_noise:
        raise ValueError("a noise_rate needs clean data; got data with corrupted labels already")

    common = dict(data=data, base_loss=base_loss, optimizer=optimizer, betas=betas, eps=eps, nesterov=nesterov,
                  batch_size=batch_size, steps=steps, schedule_name=schedule_name, warmup=warmup,
                  eval_every=eval_every, data_seed=data_seed, batch_hook=batch_hook, step_hook=step_hook,
                  monitors=monitors, eval_train_subset=eval_train_subset,
                  callback=callback, tags=tags or {}, show_progress=progress)
    models = [_build(model, s, data.device) for s in settings]
    flat_rule = is_flat_rule(optimizer)
    why_not = None if isinstance(optimizer, str) or flat_rule else "the optimizer is not one of the named ones"
    why_not = why_not or stackable(models[0])
    if step_hook is not None and (not (isinstance(optimizer, str) or flat_rule) or not flattenable(models[0])):
        raise ValueError("a step_hook needs one of the named optimizers and parameters of one dtype (a flat buffer)")
    if flat_rule and not flattenable(models[0]):
        raise ValueError(f"the optimizer {optimizer_name(optimizer)!r} steps a flat buffer: it needs parameters of "
                         "one dtype on one device")
    if batched and why_not:
        raise ValueError(f"these members cannot be stacked: {why_not}")
    if batched or (batched is None and len(settings) > 1 and why_not is None):
        return _loop(models, settings, stacked=True, description=description, **common)
    if len(settings) == 1:
        return _loop(models, settings, stacked=False, description=description, **common)
    # one member at a time: a hook with settings per member gives each member its own
    hooks = {name: [hook.member(i) for i in range(len(settings))]
             if getattr(hook, "member_settings", None) is not None else [hook] * len(settings)
             for name, hook in (("step_hook", step_hook), ("batch_hook", batch_hook),
                                ("optimizer", optimizer if flat_rule else None))}
    return concat([_loop([m], [s], stacked=False, description=f"{description} ({i + 1}/{len(settings)})",
                         **{**common, "step_hook": hooks["step_hook"][i], "batch_hook": hooks["batch_hook"][i],
                            "optimizer": hooks["optimizer"][i] if flat_rule else optimizer})
                   for i, (m, s) in enumerate(zip(models, settings))])


def _build(model, settings: dict, device) -> nn.Module:
    if isinstance(model, nn.Module):
        return model.to(device)
    torch.manual_seed(settings["seed"])
    return model().to(device)


def training_data(data: Dataset, knobs: dict) -> Dataset:
    """The data a member was trained on, from its knobs: ``data`` itself, or ``data`` with the
    noisy labels the loop drew for it (``noise``, ``noise_rate``, ``noise_seed``) — the same draw,
    made by the same call."""
    if knobs.get("noise") is None or knobs.get("noise_rate") is None:
        return data
    return with_label_noise(data, knobs["noise"], knobs["noise_rate"] or 0.0, knobs["noise_seed"])


def _labels(data: Dataset, settings: list[dict]):
    """The training labels, shared (N,) or per member (E, N), the true labels and the corrupted mask."""
    if all(s["noise_rate"] is None for s in settings):
        return data.y_train, data.y_train_true, data.corrupted_mask
    draws = [training_data(data, s) for s in settings]
    return (torch.stack([d.y_train for d in draws]), data.y_train,
            torch.stack([d.corrupted_mask for d in draws]))


def _knobs(settings: dict, data: Dataset, loss: Loss, optimizer, batch_hook, tags: dict, steps: int,
           batch_size: int | None, data_seed: int, schedule_name) -> dict:
    """Every setting of one member, as its History records it."""
    knobs = {k: settings[k] for k in KNOBS}
    if knobs["noise_rate"] is None:
        knobs["noise_rate"] = data.info.get("noise", {}).get("rate", 0.0) if data.has_noise else 0.0
        del knobs["noise"]                        # no labels drawn: the data's own (recorded in its info)
    knobs.update(loss.describe())
    knobs.update({k: settings[k] for k in loss.hyperparameters})   # numbers, not the loop's per-member tensors
    knobs["optimizer"] = optimizer_name(optimizer)
    knobs.update(steps=steps, batch_size=batch_size, data_seed=data_seed,
                 schedule=schedule_name if isinstance(schedule_name, str) else "custom")
    knobs.update(getattr(batch_hook, "settings", {}) or {})
    knobs.update(tags)
    return knobs


def _loop(models: list[nn.Module], settings: list[dict], *, stacked: bool, data: Dataset, base_loss: Loss,
          optimizer, betas, eps, nesterov, batch_size, steps, schedule_name, warmup, eval_every,
          data_seed, batch_hook, monitors, callback, tags, show_progress, description,
          step_hook=None, eval_train_subset=None) -> History:
    count, device = len(settings), data.device
    y_train, y_true, mask = _labels(data, settings)
    sequence = data.y_train.dim() > 1         # next-token targets (N, T): logits (E, B, T, V) become (E, B·T, V)
    as_tensor = lambda key: torch.tensor([float(s[key]) for s in settings], device=device)  # noqa: E731
    hyper = {key: as_tensor(key) for key in ("lr", "weight_decay", "momentum")}
    stepper = (Stacked(models, optimizer, hyper, betas, eps, nesterov) if stacked
               else Single(models[0], optimizer, hyper, betas, eps, nesterov))
    loss_fn = copy.deepcopy(base_loss)            # its coefficients become per-member tensors
    for key in loss_fn.hyperparameters:
        setattr(loss_fn, key, as_tensor(key))
    if data.num_classes is not None:
        loss_fn.setup(data.num_train, data.num_classes, members=count, device=device)
    multiplier = schedule(schedule_name, steps, warmup)
    epoch_length = steps_per_epoch(data.num_train, batch_size)
    history = History(knobs=[_knobs(s, data, loss_fn, optimizer, batch_hook, tags, steps, batch_size,
                                    data_seed, schedule_name) for s in settings])
    if step_hook is not None:
        history.knobs = [{**k, **(getattr(step_hook, "settings", {}) or {})} for k in history.knobs]
    for name, hook in (("batch_hook", batch_hook), ("step_hook", step_hook),
                       ("optimizer", optimizer if is_flat_rule(optimizer) else None)):
        per_member = getattr(hook, "member_settings", None)
        if per_member is not None:
            if len(per_member) != count:
                raise ValueError(f"the {name} has settings for {len(per_member)} members, the run has {count}")
            history.knobs = [{**k, **m} for k, m in zip(history.knobs, per_member)]
    if sequence:
        y_train = y_train.reshape(y_train.shape[0], -1)            # (N, T) per window; rows picked below
    targets = {"train": y_train.reshape(-1).expand(count, -1) if sequence else y_train.expand(count, -1),
               "test": data.y_test.reshape(-1).expand(count, -1) if sequence else data.y_test.expand(count, -1)}
    tokens = (lambda z: z.flatten(1, -2)) if sequence else (lambda z: z)  # noqa: E731
    truth = None if mask is None else y_true.expand(count, -1)
    corrupted = None if mask is None else mask.expand(count, -1)
    x_eval, pick = data.x_train, None
    if eval_train_subset is not None:       # the train split evaluated on n fixed examples (train_subset)
        pick = train_subset(data.num_train, eval_train_subset, data_seed, device)
        x_eval = data.x_train.index_select(0, pick)
        rows = y_train.index_select(0, pick) if sequence else y_train.index_select(-1, pick)
        targets["train"] = rows.reshape(-1).expand(count, -1) if sequence else rows.expand(count, -1)
        truth = None if mask is None else y_true.index_select(-1, pick).expand(count, -1)
        corrupted = None if mask is None else mask.index_select(-1, pick).expand(count, -1)
        history.knobs = [{**k, "eval_train_subset": int(eval_train_subset)} for k in history.knobs]

    def evaluate(step: int, running: torch.Tensor | None, seen: int) -> None:
        ev = Evaluation(step, {"train": tokens(stepper.logits(x_eval)),
                               "test": tokens(stepper.logits(data.x_test))},
                        targets, truth, corrupted, data, loss_fn, settings, stepper.parameters, train_index=pick)
        for monitor in (accuracy, *monitors):
            for (split, metric), values in monitor(ev).items():
                for member, value in enumerate(as_list(values)):
                    if value is None:
                        continue
                    gone = history.diverged_at[member] is not None and history.diverged_at[member] < step
                    history.log(step, split, metric, math.nan if gone else value, member)
        if running is not None and seen:
            for member, total in enumerate(running.tolist()):
                history.log(step, "train", "objective", total / seen, member)
        if callback is not None:
            callback(history)

    active = torch.ones(count, dtype=torch.bool, device=device)
    all_active = True
    start = time.perf_counter()
    evaluate(0, None, 0)
    running, seen = torch.zeros(count, device=device), 0
    bar = progress_bars.bar(steps, description, enabled=show_progress)
    for step, index in enumerate(batch_order(data.num_train, batch_size, steps, data_seed, device), start=1):
        labels = (y_train.index_select(0, index).reshape(-1).expand(count, -1) if sequence   # (E, B·T)
                  else y_train.index_select(-1, index).expand(count, -1))     # (E, B), shared or per member
        batch = Batch(data.x_train.index_select(0, index), labels, index, step)
        if batch_hook is not None:
            batch = batch_hook(batch)
        loss_fn.at_step(step, steps, epoch_length)                        # training progress (PS-KD's α_t)
        losses = loss_fn(tokens(stepper.forward(batch.x, batch.per_member)), batch.y, batch.index)   # (E,)
        if not (all_active and bool(torch.isfinite(losses).all())):   # one check per step when all is well
            finite = torch.isfinite(losses)
            for member in torch.nonzero(active & ~finite).flatten().tolist():
                history.diverged_at[member] = step
            active, all_active = active & finite, False
            if not bool(active.any()):
                break
            losses = torch.where(active, losses, torch.zeros_like(losses))
        stepper.step(losses, multiplier(step - 1), None if all_active else active)
        if step_hook is not None:
            step_hook(StepState(step, steps, epoch_length, stepper.flat, stepper.grad, stepper.layout,
                                stepper.optimizer))
        running += losses.detach()
        seen += 1
        if step % eval_every == 0 or step == steps:
            evaluate(step, running, seen)
            running, seen = torch.zeros(count, device=device), 0
        bar.update(1)
    bar.close()
    history.seconds = time.perf_counter() - start
    history.models = stepper.finish()
    return history
