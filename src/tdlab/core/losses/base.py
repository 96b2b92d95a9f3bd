"""The loop's own losses and what every loss is built on: the :class:`Loss` interface (per-member
coefficients, per-example state), softmax and cross-entropy in a chosen precision (:data:`PRECISIONS`),
the squared error against one-hot targets."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tdlab.core.config import check_choice


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
    """The name of a precision given as a name or a dtype."""
    dtype = dtype_of(precision)
    return next(name for name, d in PRECISIONS.items() if d == dtype)


# PyTorch's CPU kernels for (log_)softmax over the last axis cost about 0.2 µs per row,
# whatever the number of classes: for C = 10 that is 20× the arithmetic (torch 2.13,
# 16 × 128 × 10 logits: 420 µs for log_softmax; 110 µs through a class-major copy).
# Reducing along the leading axis of a class-major copy vectorises across rows and
# gives the same numbers, so few-class, many-row CPU logits take that path.
_CLASS_MAJOR_MAX_CLASSES = 64
_CLASS_MAJOR_MIN_ROWS = 512


def _class_major(logits: torch.Tensor, min_rows: int = _CLASS_MAJOR_MIN_ROWS) -> bool:
    classes = logits.shape[-1] if logits.dim() else 0
    return (logits.device.type == "cpu" and 1 < classes <= _CLASS_MAJOR_MAX_CLASSES
            and logits.numel() >= min_rows * classes)


def _over_classes(function, logits: torch.Tensor) -> torch.Tensor:
    """``function(logits, dim)`` over the last axis, through a class-major copy when that is faster."""
    if not _class_major(logits):
        return function(logits, dim=-1)
    return function(logits.movedim(-1, 0).contiguous(), dim=0).movedim(0, -1)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax(z) over the last (class) axis; equal to ``torch.log_softmax(z, -1)``, faster on CPU for few classes."""
    return _over_classes(torch.log_softmax, logits)


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax(z) over the last (class) axis; equal to ``torch.softmax(z, -1)``, faster on CPU for few classes."""
    return _over_classes(torch.softmax, logits)


def negative_log_likelihood(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per example −log p_y: ``log_probs`` (..., B, C), integer ``targets`` (..., B) → (..., B)."""
    return -log_probs.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the example axis of −log softmax(z)_y, for any leading shape.

    One fused ``F.cross_entropy`` call over (M, C, B), the class axis second: on the
    CPU with few classes that layout is also the fast one (see :func:`log_softmax`).
    """
    classes, examples = logits.shape[-1], logits.shape[-2]
    leading = logits.shape[:-2]
    if logits.numel() == examples * classes and not _class_major(logits):   # one small batch: fewest calls
        return F.cross_entropy(logits.reshape(examples, classes), targets.long().reshape(examples)).reshape(leading)
    class_major = _class_major(logits, min_rows=0)
    logits = logits.reshape(-1, examples, classes).transpose(1, 2)       # (M, C, B)
    if class_major:
        logits = logits.contiguous()
    per_example = F.cross_entropy(logits, targets.long().reshape(-1, examples), reduction="none")
    return per_example.mean(-1).reshape(leading)


def mse_onehot(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over examples of ‖z − e_y‖² / C: squared error against one-hot targets (Doshi et al. 2023)."""
    onehot = F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
    return ((logits - onehot) ** 2).mean(-1).mean(-1)


def _member_values(value, like: torch.Tensor) -> torch.Tensor:
    """A coefficient as a tensor that broadcasts against a per-member loss of shape ``like.shape``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(value.shape + (1,) * (like.dim() - value.dim())) if value.dim() else value


class Loss:
    """Base class: a callable ``loss(logits, targets, index) -> per-member mean loss``.

    ``hyperparameters`` names the coefficients a sweep may vary per member; ``settings``
    names the constructor arguments that are fixed for a run (both land in the History).
    """

    name = "loss"
    hyperparameters: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()

    def setup(self, num_examples: int, num_classes: int, members: int = 1, device=None) -> None:
        """Allocate per-example state (no-op for stateless losses)."""

    def at_step(self, step: int, steps: int, epoch_length: int) -> None:
        """Called by the training loop before the loss of each step: ``step`` counts from 1 to
        ``steps``, an epoch is ``epoch_length`` steps (no-op for losses that do not follow the
        progress of training)."""

    def __call__(self, logits, targets, index=None):  # pragma: no cover - abstract
        raise NotImplementedError

    def set(self, **values) -> "Loss":
        for key, value in values.items():
            if key not in self.hyperparameters:
                raise ValueError(f"{self.name} has no hyper-parameter {key!r}; it has: {self.hyperparameters or 'none'}")
            setattr(self, key, value)
        return self

    def describe(self) -> dict:
        """The loss's name, hyperparameters and settings, as recorded in a History's knobs."""
        return {"loss": self.name, **{k: getattr(self, k) for k in self.hyperparameters + self.settings}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameters + self.settings)
        return f"{type(self).__name__}({args})"


class CrossEntropy(Loss):
    name = "ce"

    def __call__(self, logits, targets, index=None):
        return cross_entropy(logits, targets)


def cross_entropy_in(logits: torch.Tensor, targets: torch.Tensor, precision: str | torch.dtype = "float32",
                     reduction: str = "mean") -> torch.Tensor:
    """−log softmax(z)_y with ``log_softmax`` in ``precision``, as the official
    ``cross_entropy_float16/32/64`` of Prieto et al. (ICLR 2025): mean over the example
    axis (``reduction="mean"``, shape ``logits.shape[:-2]``) or per example (``"none"``).
    The mean is returned in the precision itself, except float64, which the official
    code casts back to float32.
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
    settings = ("precision",)

    def __init__(self, precision: str = "float32"):
        self.precision = name_of(precision)

    def __call__(self, logits, targets, index=None):
        return cross_entropy_in(logits, targets, self.precision)


class MSE(Loss):
    """Squared error against one-hot targets."""

    name = "mse"

    def __call__(self, logits, targets, index=None):
        return mse_onehot(logits, targets)


def _with_example_state(loss: str, what: str, state: torch.Tensor | None, logits: torch.Tensor,
                        targets: torch.Tensor, index) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Checks for a loss that keeps ``state`` (E, N, ...) per member and training example; returns the
    logits and targets with a member axis (added for one model's (B, C) logits) and whether it was added."""
    if state is None:
        raise RuntimeError(f"{loss} keeps one {what} per training example: call setup(num_examples, num_classes) first")
    if index is None:
        raise ValueError(f"{loss} needs the dataset index of every example in the batch")
    single = logits.dim() == 2
    if single:
        logits, targets = logits.unsqueeze(0), targets.unsqueeze(0)
    if state.shape[0] != logits.shape[0]:
        raise ValueError(f"{loss} state holds {state.shape[0]} member(s), logits have {logits.shape[0]}")
    return logits, targets, single
