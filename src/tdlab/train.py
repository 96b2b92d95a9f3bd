"""One training loop over device-resident tensors.

No ``DataLoader`` in the hot loop: the whole dataset sits on the device and each
step slices a batch by index, ``x_train[index]``. The index is also what losses
with per-example state (ELR) receive. Every ``eval_every`` steps the model is
measured on the full train and test sets and the numbers go into a
:class:`~tdlab.history.History`; with corrupted labels that includes accuracy on the
corrupted examples against both their noisy and their true labels.

A run whose loss turns NaN/inf stops, is marked diverged in its History (and in
the figures), and returns normally.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn

from tdlab.config import check_choice, check_range, quiet
from tdlab.data import Dataset
from tdlab.flat import OPTIMIZERS, FlatOptimizer, flat_grad, flatten_, flattenable
from tdlab.history import History
from tdlab.losses import Loss, get_loss

SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")


# ----------------------------------------------------------------- shared pieces


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
    per_epoch = num_examples // batch_size
    done = 0
    while done < steps:
        order = torch.randperm(num_examples, generator=gen).to(device)
        for b in range(min(per_epoch, steps - done)):
            yield order[b * batch_size:(b + 1) * batch_size]
        done += min(per_epoch, steps - done)


def schedule(name: str | Callable[[int], float], steps: int, warmup: int = 0) -> Callable[[int], float]:
    """A learning-rate multiplier ``step -> factor`` by name.

    ``constant``; ``cosine`` (1 → 0 over the run); ``step`` (×0.1 at 50% and 75% of the
    run, the ELR paper's milestones scaled to its length); ``warmup_cosine`` (linear
    warm-up over ``warmup`` steps, then cosine). A callable is returned unchanged.
    """
    if callable(name):
        return name
    check_choice("schedule", name, SCHEDULES)
    if name == "constant":
        return lambda step: 1.0
    if name == "cosine":
        return lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    if name == "step":
        return lambda step: 0.1 ** ((step >= steps // 2) + (step >= 3 * steps // 4))

    def warmup_cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return warmup_cosine


def check_hyperparameters(lr: float, weight_decay: float, steps: int, batch_size, eval_every: int) -> None:
    check_range("learning rate", lr, 0, low_open=True)
    check_range("weight decay", weight_decay, 0)
    check_range("steps", steps, 1)
    check_range("eval_every", eval_every, 1)
    if batch_size is not None:
        check_range("batch_size", batch_size, 1)


@torch.no_grad()
def measure(logits_train: torch.Tensor, logits_test: torch.Tensor, y_train: torch.Tensor,
            y_test: torch.Tensor, y_train_true: torch.Tensor | None = None,
            corrupted_mask: torch.Tensor | None = None) -> list[dict[tuple[str, str], float]]:
    """Loss and accuracy per member from full-set logits of shape (E, N, C).

    ``y_train`` and ``corrupted_mask`` may be (N,) or per member (E, N). Returns, per
    member, ``{(split, metric): value}`` with splits ``train``, ``test`` and, when a
    corrupted mask is given, ``train_clean`` and ``train_corrupted`` (``acc`` against
    the given noisy labels, ``acc_true`` against the true labels).
    """
    from tdlab.losses import cross_entropy

    members = logits_train.shape[0]
    regression = y_train.is_floating_point()
    expand = lambda t: t.expand(members, *t.shape[-1:]) if t.dim() == 1 else t  # noqa: E731
    y_train = expand(y_train)
    y_test = expand(y_test)
    out: list[dict] = [dict() for _ in range(members)]
    if regression:
        train_mse = ((logits_train.squeeze(-1) - y_train) ** 2).mean(-1)
        test_mse = ((logits_test.squeeze(-1) - y_test) ** 2).mean(-1)
        for m in range(members):
            out[m][("train", "loss")] = train_mse[m].item()
            out[m][("test", "loss")] = test_mse[m].item()
        return out
    train_loss = cross_entropy(logits_train, y_train)
    test_loss = cross_entropy(logits_test, y_test)
    pred_train = logits_train.argmax(-1)
    train_correct = (pred_train == y_train).float()
    test_acc = (logits_test.argmax(-1) == y_test).float().mean(-1)
    for m in range(members):
        out[m][("train", "loss")] = train_loss[m].item()
        out[m][("train", "acc")] = train_correct[m].mean().item()
        out[m][("test", "loss")] = test_loss[m].item()
        out[m][("test", "acc")] = test_acc[m].item()
    if corrupted_mask is not None:
        mask = expand(corrupted_mask)
        true_correct = (pred_train == y_train_true).float()
        for m in range(members):
            corrupted, clean = mask[m], ~mask[m]
            if clean.any():
                out[m][("train_clean", "acc")] = train_correct[m][clean].mean().item()
            if corrupted.any():
                out[m][("train_corrupted", "acc")] = train_correct[m][corrupted].mean().item()
                out[m][("train_corrupted", "acc_true")] = true_correct[m][corrupted].mean().item()
    return out


def chunked(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 8192,
            dim: int = 0) -> torch.Tensor:
    """``forward`` applied to slices of ``x`` along its first axis, concatenated along ``dim``."""
    return torch.cat([forward(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], dim=dim)


def progress_bar(total: int, enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled or quiet(), desc=description, leave=False,
                mininterval=0.5)


# ----------------------------------------------------------------- the loop


@dataclass
class Batch:
    """What a ``batch_hook`` receives and returns: inputs, targets, dataset indices, step."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    step: int


def make_optimizer(optimizer, parameters, lr: float, weight_decay: float, momentum: float = 0.9):
    """A ``torch.optim`` optimizer by name (``sgd`` with momentum, ``adam``, ``adamw``), a
    factory ``params -> Optimizer``, or an optimizer object passed through.

    :func:`train` itself steps the named optimizers with :class:`tdlab.flat.FlatOptimizer`
    (same rules, fewer operations); this is for code that wants a ``torch.optim`` object.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(parameters)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)


def train(model: nn.Module | Callable[[], nn.Module], data: Dataset, *, loss: str | Loss = "ce",
          optimizer="adamw", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
          batch_size: int | None = 128, steps: int = 1000, schedule_name="constant",
          eval_every: int = 50, seed: int = 0, data_seed: int | None = None,
          batch_hook: Callable[[Batch], Batch] | None = None,
          callback: Callable[[History], None] | None = None,
          progress: bool = True, description: str = "training", **loss_kwargs) -> History:
    """Train ``model`` on ``data`` and return its :class:`History`.

    - ``model``: a module, or a factory ``() -> module`` built under ``torch.manual_seed(seed)``.
    - ``loss``: ``"ce"``, ``"mse"``, ``"elr"`` or a :class:`~tdlab.losses.Loss`; extra keyword
      arguments go to the loss (``lam=3, beta=0.7`` for ELR).
    - ``optimizer``: ``"sgd"``/``"adam"``/``"adamw"``, a factory ``params -> Optimizer`` or an
      optimizer object; ``schedule_name``: see :func:`schedule`.
    - ``batch_size=None`` trains full batch. ``data_seed`` (default ``seed``) fixes the batch order.
    - ``batch_hook(Batch) -> Batch`` may change inputs/targets per step (mixup, CutMix, ...).
    - ``callback(history)`` is called after every evaluation (live plots).
    """
    check_hyperparameters(lr, weight_decay, steps, batch_size, eval_every)
    if not callable(model):
        raise ValueError("model must be an nn.Module or a factory returning one")
    if not isinstance(model, nn.Module):
        torch.manual_seed(seed)
        model = model()
    device = data.device
    model = model.to(device)
    loss_fn = get_loss(loss, **loss_kwargs)
    if data.num_classes is not None:
        loss_fn.setup(data.num_train, data.num_classes, members=1, device=device)
    if isinstance(optimizer, str) and flattenable(model):
        # named optimizers step a flat buffer that the parameters are views of (tdlab.flat)
        check_choice("optimizer", optimizer, OPTIMIZERS)   # before the model is touched
        flat, params = flatten_(model)
        opt = FlatOptimizer(optimizer, flat)
        hyper = {key: torch.tensor([value], device=device)
                 for key, value in (("lr", lr), ("weight_decay", weight_decay), ("momentum", momentum))}
    else:
        opt = make_optimizer(optimizer, model.parameters(), lr, weight_decay, momentum)
        base_lrs = [group["lr"] for group in opt.param_groups]
    multiplier = schedule(schedule_name, steps)
    history = History(knobs=[{"lr": lr, "weight_decay": weight_decay, "seed": seed,
                              **{k: getattr(loss_fn, k) for k in loss_fn.hyperparameters}}])

    def evaluate(step: int, running: list[float]) -> None:
        model.eval()
        with torch.no_grad():
            logits_train = chunked(model, data.x_train).unsqueeze(0)
            logits_test = chunked(model, data.x_test).unsqueeze(0)
        model.train()
        for (split, metric), value in measure(logits_train, logits_test, data.y_train, data.y_test,
                                              data.y_train_true, data.corrupted_mask)[0].items():
            history.log(step, split, metric, value)
        if running:
            history.log(step, "train", "objective", sum(running) / len(running))
        if callback is not None:
            callback(history)

    start = time.perf_counter()
    running: list[float] = []
    evaluate(0, running)
    bar = progress_bar(steps, progress, description)
    model.train()
    for step, index in enumerate(batch_order(data.num_train, batch_size, steps,
                                             seed if data_seed is None else data_seed, device), start=1):
        batch = Batch(data.x_train.index_select(0, index), data.y_train.index_select(0, index), index, step)
        if batch_hook is not None:
            batch = batch_hook(batch)
        value = loss_fn(model(batch.x), batch.y, batch.index)
        number = value.item()
        if not math.isfinite(number):
            history.diverged_at[0] = step
            history.log(step, "train", "objective", float("nan"))
            break
        if isinstance(opt, FlatOptimizer):
            grads = torch.autograd.grad(value, params, allow_unused=True)
            opt.step(flat_grad(params, grads, 1), hyper["lr"] * multiplier(step - 1), hyper["weight_decay"],
                     hyper["momentum"])
        else:
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * multiplier(step - 1)
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
        running.append(number)
        if step % eval_every == 0 or step == steps:
            evaluate(step, running)
            running = []
        bar.update(1)
    bar.close()
    history.seconds = time.perf_counter() - start
    history.model = model  # the trained model, for analysis after the run
    return history
