"""Floating-point limits of the softmax: Softmax Collapse and the logit gaps that cause it.

Prieto et al., "Grokking at the edge of numerical stability" (ICLR 2025):
once a network fits its training set, the loss keeps falling by scaling the
logits up (naive loss minimisation). When the correct logit exceeds every other by
more than a precision-dependent gap, Σ_k exp(z_k − max z) rounds to exactly 1 in
floating point, the softmax of the correct class is exactly 1, its loss exactly 0
and its gradient exactly 0: **Softmax Collapse** (SC). The sample stops learning,
and grokking stops with it.

Here:

- :func:`softmax` and :class:`SoftmaxCrossEntropy`: softmax and cross-entropy in a
  chosen precision (``float16``, ``bfloat16``, ``float32``, ``float64``), as the
  official ``cross_entropy_float16/32/64``;
- :func:`softmax_collapse`: the SC fraction, as the official
  ``MetricsLogger.compute_softmax_collapse``; :func:`zero_loss_fraction`, its
  companion ``compute_zero_terms``; :func:`stablemax_collapse`, the same event for
  StableMax;
- :func:`collapse_gap`: the logit gap beyond which 1 + e^(−gap) rounds to 1 in a
  precision, found by evaluating that sum in the precision itself;
- :func:`logit_gap` / :func:`max_logit_gap`: top-1 minus top-2 logit;
- :func:`collapse_monitor` and :func:`train_collapse`: a :func:`tdlab.train.train`
  run that also logs SC, the zero-loss fraction and the logit gap at each evaluation.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from tdlab.config import check_choice
from tdlab.data import Dataset
from tdlab.history import History
from tdlab.losses import Loss, StableMaxCrossEntropy, negative_log_likelihood, stablemax_s

PRECISIONS = {"float16": torch.float16, "bfloat16": torch.bfloat16,
              "float32": torch.float32, "float64": torch.float64}


def dtype_of(precision: str | torch.dtype) -> torch.dtype:
    """The torch dtype of a precision name (``"float16"``, ``"bfloat16"``, ``"float32"``, ``"float64"``)."""
    if isinstance(precision, torch.dtype):
        if precision not in PRECISIONS.values():
            raise ValueError(f"unknown precision {precision}; allowed: {', '.join(PRECISIONS)}")
        return precision
    check_choice("precision", precision, tuple(PRECISIONS))
    return PRECISIONS[precision]


def name_of(precision: str | torch.dtype) -> str:
    dtype = dtype_of(precision)
    return next(name for name, d in PRECISIONS.items() if d == dtype)


# ----------------------------------------------------------------- softmax in a precision


def softmax_sums(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> torch.Tensor:
    """Σ_k exp(z_k − max_j z_j) per example, computed in ``precision``; shape ``logits.shape[:-1]``.

    Always ≥ 1 (the max term is exactly 1); exactly 1 means every other term was lost
    to rounding.
    """
    z = logits.detach().to(dtype_of(precision))
    return torch.exp(z - z.amax(-1, keepdim=True)).sum(-1)


def softmax(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> torch.Tensor:
    """exp(z − max z) / Σ exp(z − max z), every operation in ``precision`` (returned in that dtype)."""
    z = logits.to(dtype_of(precision))
    e = torch.exp(z - z.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def cross_entropy_in(logits: torch.Tensor, targets: torch.Tensor, precision: str | torch.dtype = "float32",
                     reduction: str = "mean") -> torch.Tensor:
    """−log softmax(z)_y with ``log_softmax`` in ``precision``, as the official
    ``cross_entropy_float16/32/64``: mean over the example axis (``reduction="mean"``,
    shape ``logits.shape[:-2]``) or per example (``"none"``). The mean is returned in
    the precision itself, except float64, which the official code casts back to float32.
    """
    check_choice("reduction", reduction, ("mean", "none"))
    dtype = dtype_of(precision)
    per_example = negative_log_likelihood(torch.log_softmax(logits.to(dtype), dim=-1), targets)
    if reduction == "none":
        return per_example
    loss = per_example.mean(-1)
    return loss.to(torch.float32) if dtype == torch.float64 else loss


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy whose softmax is computed in ``precision`` (the paper's ``softmax_precision``).

    ``SoftmaxCrossEntropy("float32")`` is the usual float32 cross-entropy; float16 and
    bfloat16 collapse sooner, float64 later (Prieto et al. 2025, Fig. 2).
    """

    name = "softmax_ce"

    def __init__(self, precision: str = "float32"):
        self.precision = name_of(precision)

    def __call__(self, logits, targets, index=None):
        return cross_entropy_in(logits, targets, self.precision)

    def __repr__(self) -> str:
        return f"SoftmaxCrossEntropy(precision={self.precision!r})"


# ----------------------------------------------------------------- the collapse metrics


def softmax_collapse(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> float:
    """Softmax Collapse: the fraction of examples whose Σ_k exp(z_k − max z), computed in
    ``precision``, equals exactly 1 (official ``compute_softmax_collapse``; Prieto et al. 2025).

    ``logits`` has shape (N, C) (or (..., N, C): the fraction over all leading axes).
    """
    return (softmax_sums(logits, precision) == 1).float().mean().item()


def stablemax_collapse(logits: torch.Tensor, precision: str | torch.dtype = "float64") -> float:
    """The same collapse for StableMax: the fraction of examples whose Σ_k s(z_k), in
    ``precision``, equals its largest term exactly (so StableMax(z)_max = 1 and its loss 0).

    s grows linearly, so this needs a ratio of about 1/ε between the largest and the
    other terms (≈ 10^16 in float64) instead of a logit gap of ln(2/ε).
    """
    s = stablemax_s(logits.detach().to(dtype_of(precision)))
    return (s.sum(-1) == s.amax(-1)).float().mean().item()


def zero_loss_fraction(logits: torch.Tensor, targets: torch.Tensor,
                       precision: str | torch.dtype = "float32") -> float:
    """The fraction of examples whose cross-entropy in ``precision`` is exactly 0
    (official ``compute_zero_terms``): their gradient vanishes too."""
    with torch.no_grad():
        return (cross_entropy_in(logits, targets, precision, reduction="none") == 0).float().mean().item()


def logit_gap(logits: torch.Tensor) -> torch.Tensor:
    """Per example, the largest logit minus the second largest, shape ``logits.shape[:-1]``."""
    top = logits.detach().topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def max_logit_gap(logits: torch.Tensor) -> float:
    """The largest top-1 − top-2 logit gap over all examples."""
    return logit_gap(logits).max().item()


def collapses(gap: float, precision: str | torch.dtype) -> bool:
    """Whether 1 + e^(−gap), with every operation in ``precision``, rounds to exactly 1."""
    dtype = dtype_of(precision)
    one = torch.ones((), dtype=dtype)
    return bool(one + torch.exp(-torch.tensor(gap, dtype=dtype)) == one)


def collapse_gap(precision: str | torch.dtype, low: float = 0.0, high: float = 1000.0,
                 iterations: int = 200) -> float:
    """The smallest logit gap at which 1 + e^(−gap) rounds to 1 in ``precision``.

    Two classes whose logits differ by more than this have a softmax sum of exactly 1
    (more classes collapse at about the same gap). Found by bisection on
    :func:`collapses`, i.e. by evaluating the sum in the precision itself, not from a
    formula; it lands at about ln(2/ε) for the machine epsilon ε of the format
    (float16 ≈ 7.6, bfloat16 ≈ 5.5, float32 ≈ 16.6, float64 ≈ 36.7).
    """
    if collapses(low, precision) or not collapses(high, precision):
        raise ValueError(f"the collapse gap of {name_of(precision)} is not in [{low}, {high}]")
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if collapses(middle, precision):
            high = middle
        else:
            low = middle
    return high


def collapse_gaps() -> dict[str, float]:
    """:func:`collapse_gap` for every precision, by name."""
    return {name: collapse_gap(name) for name in PRECISIONS}


# ----------------------------------------------------------------- logging during training


def per_example_loss(loss: Loss, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of every example separately, shape (N,): each example is passed as a batch of one."""
    with torch.no_grad():
        return loss(logits.unsqueeze(-2), targets.unsqueeze(-1))


def collapse_monitor(model: nn.Module, data: Dataset, precision: str | torch.dtype = "float32",
                     loss: Loss | None = None,
                     then: Callable[[History], None] | None = None) -> Callable[[History], None]:
    """A ``callback`` for :func:`tdlab.train.train` that logs, at every evaluation, on the
    training set:

    - ``("train", "sc")``: the collapse of the run's own normalisation: the Softmax
      Collapse fraction in ``precision`` (:func:`softmax_collapse`) for a softmax loss,
      :func:`stablemax_collapse` in the loss's precision for StableMax;
    - ``("train", "softmax_sc")``: the Softmax Collapse fraction of the logits in
      ``precision``, whatever the loss (what a softmax of these logits would do);
    - ``("train", "zero_loss")``: the fraction of examples whose loss under the run's own
      ``loss`` is exactly 0 (for a softmax loss, the cross-entropy in ``precision``);
    - ``("train", "max_gap")``: the largest top-1 − top-2 logit gap;

    then calls ``then(history)``.
    """
    loss = SoftmaxCrossEntropy(precision) if loss is None else loss

    def callback(history: History) -> None:
        step = history.records[-1]["step"]
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = model(data.x_train)
        model.train(was_training)
        softmax_sc = softmax_collapse(logits, precision)
        own_sc = (stablemax_collapse(logits, loss.precision) if isinstance(loss, StableMaxCrossEntropy)
                  else softmax_sc)
        history.log(step, "train", "sc", own_sc)
        history.log(step, "train", "softmax_sc", softmax_sc)
        history.log(step, "train", "zero_loss",
                    (per_example_loss(loss, logits, data.y_train) == 0).float().mean().item())
        history.log(step, "train", "max_gap", max_logit_gap(logits))
        if then is not None:
            then(history)

    return callback


def train_collapse(make_model: Callable[[], nn.Module], data: Dataset, *, loss: Loss,
                   precision: str | torch.dtype = "float32", seed: int = 0,
                   callback: Callable[[History], None] | None = None, **train_kwargs) -> History:
    """:func:`tdlab.train.train` of ``make_model()`` (built under ``torch.manual_seed(seed)``)
    that also logs SC in ``precision``, the zero-loss fraction of ``loss`` and the max logit
    gap at every evaluation (:func:`collapse_monitor`)."""
    from tdlab.train import train

    torch.manual_seed(seed)
    model = make_model().to(data.device)
    monitor = collapse_monitor(model, data, precision, loss=loss, then=callback)
    history = train(model, data, loss=loss, seed=seed, callback=monitor, **train_kwargs)
    history.knobs[0]["precision"] = name_of(precision)
    history.knobs[0]["loss"] = loss.name
    return history
