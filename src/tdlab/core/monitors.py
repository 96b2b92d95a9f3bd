"""What the training loop measures, as functions of the logits it has just computed.

At every evaluation the loop (:mod:`tdlab.core.engine`) computes the logits of every member
on the full training and test sets once, and hands them to each *monitor* as an
:class:`Evaluation`. A monitor returns ``{(split, metric): values}`` with one value per
member (``None`` where a member has nothing to measure), and the loop logs them into
the History. :func:`accuracy` — loss and accuracy, and with corrupted labels the
accuracies of the clean and the corrupted examples — is always on; a chapter adds its
own (:func:`accuracy_on` for a subset, :func:`accuracy_on_altered` for a subset with its inputs
changed, :func:`tdlab.methods.grokking.numerics.collapse` for Softmax Collapse, :func:`tdlab.methods.grokking.fourier.ipr_monitor`
for the neurons' Fourier structure).

Nothing here runs a model except :func:`logits` — the one place where a model is put in
eval mode, run without gradients and put back — which the loop and the analysis
functions after training (pruning, occlusion) share, and :func:`accuracy_on_altered`, which
runs the members on changed inputs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from tdlab.core.data import Dataset
from tdlab.core.losses import Loss, cross_entropy

Values = Sequence[float | None] | torch.Tensor
Monitor = Callable[["Evaluation"], dict[tuple[str, str], Values]]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode and without gradients inside the block, its mode restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def chunked(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 8192,
            dim: int = 0) -> torch.Tensor:
    """``forward`` applied to slices of ``x`` along its first axis, concatenated along ``dim``."""
    return torch.cat([forward(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], dim=dim)


def logits(model: nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """The logits of ``model`` on ``x`` in eval mode, without gradients, in chunks; shape (N, C)."""
    with evaluating(model):
        return chunked(model, x, chunk)


@dataclass
class Evaluation:
    """What one evaluation of the loop measured, for every member (E of them).

    ``logits[split]`` has shape (E, N, C) for ``split`` in ``("train", "test")``;
    ``targets[split]`` (E, N) are the labels each member was trained / is tested on;
    ``true_targets`` and ``corrupted`` (E, N) are the clean training labels and the mask
    of corrupted ones (``None`` without label noise). ``loss`` is the run's loss (with
    per-member coefficients), ``settings`` every member's settings, and
    ``parameters(member)`` a member's current parameters by name. ``train_index``: with the engine's
    ``eval_train_subset``, the indices of the training examples the train split holds (else ``None``).
    """

    step: int
    logits: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    true_targets: torch.Tensor | None
    corrupted: torch.Tensor | None
    data: Dataset
    loss: Loss
    settings: list[dict]
    parameters: Callable[[int], dict[str, torch.Tensor]]
    train_index: torch.Tensor | None = None     # the training examples evaluated (engine's eval_train_subset), or all

    @property
    def members(self) -> int:
        return self.logits["train"].shape[0]

    def stacked_parameters(self) -> dict[str, torch.Tensor]:
        """Every member's parameters, detached, stacked along a first (member) axis: ``(E, *shape)``
        per name — what a model's ``forward_stacked`` takes."""
        each = [self.parameters(m) for m in range(self.members)]
        return {name: torch.stack([p[name] for p in each]) for name in each[0]}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> list[float | None]:
    """Per member, the mean of ``values`` (E, N) over ``mask`` (E, N); ``None`` where the mask is empty."""
    counts = mask.sum(-1)
    means = (values * mask).sum(-1) / counts.clamp_min(1)
    return [m if c else None for m, c in zip(means.tolist(), counts.tolist())]


@torch.no_grad()
def accuracy(ev: Evaluation) -> dict[tuple[str, str], Values]:
    """Loss and accuracy on ``train`` (given labels) and ``test``; with corrupted labels also
    ``train_clean``/``acc``, ``train_corrupted``/``acc`` (against the given, wrong labels) and
    ``train_corrupted``/``acc_true`` (against the true labels). For regression (float
    targets) the mean squared error as ``loss``."""
    train, test = ev.logits["train"], ev.logits["test"]
    y_train, y_test = ev.targets["train"], ev.targets["test"]
    if y_train.is_floating_point():
        return {("train", "loss"): ((train.squeeze(-1) - y_train) ** 2).mean(-1),
                ("test", "loss"): ((test.squeeze(-1) - y_test) ** 2).mean(-1)}
    predicted = train.argmax(-1)
    correct = (predicted == y_train).float()
    out = {("train", "loss"): cross_entropy(train, y_train), ("train", "acc"): correct.mean(-1),
           ("test", "loss"): cross_entropy(test, y_test),
           ("test", "acc"): (test.argmax(-1) == y_test).float().mean(-1)}
    if ev.corrupted is not None:
        corrupted = ev.corrupted.float()
        out[("train_clean", "acc")] = masked_mean(correct, 1 - corrupted)
        out[("train_corrupted", "acc")] = masked_mean(correct, corrupted)
        out[("train_corrupted", "acc_true")] = masked_mean((predicted == ev.true_targets).float(), corrupted)
    return out


def accuracy_on(name: str, mask: torch.Tensor, split: str = "test", labels: torch.Tensor | None = None) -> Monitor:
    """A monitor: the accuracy on the examples of ``split`` selected by the boolean ``mask``
    (N,), logged as split ``f"{split}_{name}"``, metric ``acc`` (e.g. the rare-feature test
    examples of Zou et al.'s data). ``labels`` (N,), if given, replaces the labels each member is
    scored against by one fixed set: every member, whatever labels it trained on, is scored against
    the same ones (e.g. a run on clean labels scored on another run's corrupted examples against
    that run's wrong labels)."""
    if mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError(f"the mask of {name!r} must be a 1-D boolean tensor, got {mask.dtype} {tuple(mask.shape)}")
    if labels is not None and tuple(labels.shape) != tuple(mask.shape):
        raise ValueError(f"the labels of {name!r} must have the mask's shape {tuple(mask.shape)}, "
                         f"got {tuple(labels.shape)}")

    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        if mask.shape[0] != ev.logits[split].shape[1]:
            raise ValueError(f"the mask of {name!r} has {mask.shape[0]} entries, the {split} set "
                             f"{ev.logits[split].shape[1]} examples")
        predicted = ev.logits[split].argmax(-1)
        wanted = ev.targets[split] if labels is None else labels.to(predicted.device).expand_as(predicted)
        correct = (predicted == wanted).float()
        chosen = mask.to(correct.device).expand_as(correct).float()
        return {(f"{split}_{name}", "acc"): masked_mean(correct, chosen)}

    return monitor


def accuracy_on_altered(name: str, mask: torch.Tensor, alter: Callable[[torch.Tensor], torch.Tensor],
                        model: nn.Module, split: str = "test") -> Monitor:
    """A monitor: the accuracy on the examples of ``split`` selected by the boolean ``mask`` (N,)
    after ``alter`` has changed their inputs — evaluation only, training sees the data as it is —
    logged as split ``f"{split}_{name}"``, metric ``acc``. E.g. Zou et al.'s rare-feature test
    examples with the feature-noise patch zeroed: what a network gets right from the rare feature
    itself. ``alter`` takes the selected inputs (a copy) and returns inputs of the same shape;
    ``model`` is a module of the members' shape (its own parameters are not used): the members'
    current parameters are run through its ``forward_stacked`` where it has one, else one member at
    a time through ``torch.func.functional_call``."""
    if mask.dtype != torch.bool or mask.dim() != 1:
        raise ValueError(f"the mask of {name!r} must be a 1-D boolean tensor, got {mask.dtype} {tuple(mask.shape)}")

    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        x = ev.data.x_test if split == "test" else ev.data.x_train
        if mask.shape[0] != x.shape[0]:
            raise ValueError(f"the mask of {name!r} has {mask.shape[0]} entries, the {split} set "
                             f"{x.shape[0]} examples")
        params = ev.stacked_parameters()
        device = next(iter(params.values())).device
        chosen = mask.to(x.device)
        inputs = alter(x[chosen].clone()).to(device)
        with evaluating(model):
            if hasattr(model, "forward_stacked"):
                out = model.forward_stacked(params, inputs)                  # (E, B, C)
            else:
                out = torch.stack([torch.func.functional_call(model, {k: v[m] for k, v in params.items()},
                                                              (inputs,)) for m in range(ev.members)])
        wanted = ev.targets[split][:, chosen.to(ev.targets[split].device)].to(device)
        return {(f"{split}_{name}", "acc"): (out.argmax(-1) == wanted).float().mean(-1)}

    return monitor


@torch.no_grad()
def elr_targets(ev: Evaluation) -> dict[tuple[str, str], Values]:
    """ELR's target buffer t_i (Liu et al. 2020), a running average of each example's own early
    predictions, read as a mislabel detector (the README of the official code: an example is
    flagged when argmax t_i differs from its given label). Logs, for runs with corrupted labels:
    ``train_corrupted``/``target_true`` (argmax t_i is the true label), ``train_corrupted``/``flagged``
    (flagged: the detector's recall) and ``train_clean``/``flagged`` (clean examples flagged:
    false alarms). With λ = 0 (cross-entropy) the buffer still averages the predictions: the control."""
    targets = getattr(ev.loss, "targets", None)
    if targets is None:
        raise ValueError(f"the ELR target monitor needs loss='elr' (got {ev.loss.name!r})")
    if ev.corrupted is None:
        return {}                                                         # no corrupted labels: nothing to detect
    guess = targets.argmax(-1)                                            # (E, N)
    corrupted = ev.corrupted.float()
    flagged = (guess != ev.targets["train"]).float()
    return {("train_corrupted", "target_true"): masked_mean((guess == ev.true_targets).float(), corrupted),
            ("train_corrupted", "flagged"): masked_mean(flagged, corrupted),
            ("train_clean", "flagged"): masked_mean(flagged, 1 - corrupted)}


def measure_model(model: nn.Module, data: Dataset) -> dict[tuple[str, str], float]:
    """:func:`accuracy` of one model on ``data``, outside a training run (e.g. after pruning)."""
    def targets(y: torch.Tensor | None) -> torch.Tensor | None:
        return None if y is None else y.unsqueeze(0)

    ev = Evaluation(0, {"train": logits(model, data.x_train)[None], "test": logits(model, data.x_test)[None]},
                    {"train": data.y_train[None], "test": data.y_test[None]}, targets(data.y_train_true),
                    targets(data.corrupted_mask), data, None, [{}], lambda member: dict(model.named_parameters()))
    out = {}
    for key, values in accuracy(ev).items():
        (value,) = as_list(values)
        if value is not None:
            out[key] = value
    return out


def as_list(values: Values) -> list[float | None]:
    """A monitor's per-member values as a list of floats (or ``None``)."""
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)


def top_k(*ks: int, split: str = "test") -> Monitor:
    """A monitor: the top-k accuracy on ``split`` for each k in ``ks`` — the fraction of examples
    whose label is among the k largest logits — logged as split ``f"{split}_top{k}"``, metric
    ``acc`` (so plots and explorers show it as an accuracy). Top-1 is :func:`accuracy`'s ``acc``."""
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"top_k needs whole numbers k ≥ 1, got {ks}")

    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        logits, targets = ev.logits[split], ev.targets[split]
        if max(ks) > logits.shape[-1]:
            raise ValueError(f"top-{max(ks)} accuracy needs at least {max(ks)} classes, got {logits.shape[-1]}")
        ranked = logits.topk(max(ks), dim=-1).indices                        # (E, N, max k), largest first
        hits = ranked == targets.unsqueeze(-1)
        return {(f"{split}_top{k}", "acc"): hits[..., :k].any(-1).float().mean(-1) for k in ks}

    return monitor


def logit_scale(splits: Sequence[str] = ("test",)) -> Monitor:
    """A monitor: how large the logits z ∈ R^C are, averaged over the examples of each split —
    ``logit_norm``, the mean ‖z‖₂, and ``logit_std``, the mean standard deviation of z over the
    classes (population σ, the scale that the Z-loss divides out and that softmax
    cross-entropy can keep raising to lower its loss)."""
    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        out = {}
        for split in splits:
            z = ev.logits[split].double()                                      # (E, N, C)
            out[(split, "logit_norm")] = z.norm(dim=-1).mean(-1).float()
            out[(split, "logit_std")] = z.std(dim=-1, unbiased=False).mean(-1).float()
        return out

    return monitor


@torch.no_grad()
def aldr_lambdas(ev: Evaluation) -> dict[tuple[str, str], Values]:
    """ALDR-KL's per-example λ_i (Zhu, Ying & Yang 2023, Eq. 6), split by the label's truth.
    Logs ``train``/``lambda`` (the mean λ_i), and for runs with corrupted labels
    ``train_clean``/``lambda`` and ``train_corrupted``/``lambda`` (the means over clean and
    corrupted examples) and ``train``/``lambda_auc``: the probability that a corrupted example has
    a *smaller* λ_i than a clean one (0.5: λ says nothing about the label; 1: every corrupted
    example below every clean one). λ_i is set from how peaked the prediction is, not from the
    label, so whether small λ_i mark the corrupted examples is a measurement, not a given."""
    lambdas = getattr(ev.loss, "lambdas", None)
    if lambdas is None:
        raise ValueError(f"the λ monitor needs loss='aldr_kl' (got {ev.loss.name!r})")
    out: dict[tuple[str, str], Values] = {("train", "lambda"): lambdas.mean(-1)}
    if ev.corrupted is None:
        return out
    corrupted = ev.corrupted.float()
    out[("train_clean", "lambda")] = masked_mean(lambdas, 1 - corrupted)
    out[("train_corrupted", "lambda")] = masked_mean(lambdas, corrupted)
    out[("train", "lambda_auc")] = [lower_rank_auc(lam, mask) for lam, mask in zip(lambdas, ev.corrupted)]
    return out


def lower_rank_auc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """P(score of a positive < score of a negative), ties counted one half (Mann–Whitney U from
    average ranks); ``None`` without positives or negatives."""
    positive = positive.bool()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    values = scores.double().cpu().numpy()
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]         # 1-based ranks, ties averaged
    u = ranks[positive.cpu().numpy()].sum() - n_pos * (n_pos + 1) / 2   # pairs a positive ranks above
    return float(1 - u / (n_pos * n_neg))
