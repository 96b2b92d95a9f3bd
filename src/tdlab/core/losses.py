"""Losses, written once for a single run and for a batch of E models.

Every loss takes ``logits`` of shape ``(..., B, C)`` and integer ``targets`` of shape
``(..., B)`` and returns the mean over the B examples, shape ``(...)``. A single run
passes ``(B, C)`` and gets a scalar; a sweep passes ``(E, B, C)`` and gets one loss
per member. Coefficients (ELR's λ and β) may be floats or tensors of shape ``(E,)``,
one value per member — that is how :mod:`tdlab.core.sweep` varies them.

A loss with per-example state (ELR's target buffer, PS-KD's previous predictions) is
a :class:`Loss` whose :meth:`Loss.setup` is called by the training loop before the
first step, and which reads the dataset ``index`` of each example in the batch;
:meth:`Loss.at_step` tells a loss the step and epoch before each step (PS-KD's α_t
ramps over the epochs).

Every loss of the book is in :data:`LOSSES`, by name: ``ce``, ``softmax_ce`` (the
softmax in a chosen precision), ``mse``, ``elr``, ``stablemax``, ``soft_ce`` (soft or
mixed targets), ``gce``, ``zloss``, ``ldr_kl``, ``aldr_kl``, ``label_smoothing``,
``pskd``. A loss's ``hyperparameters`` may differ per member of a sweep; its
``settings`` (a precision, say) are fixed for a run. Both are recorded in the run's
History. :data:`PRECISIONS` is the one table of floating-point formats.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tdlab.core.config import check_choice, check_range

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


class ELR(Loss):
    r"""Early-Learning Regularization (Liu et al., NeurIPS 2020, Eq. 6; official ``elr_loss``).

    Keeps a target t_i ∈ Δ^{C−1} per training example, a running average of the
    model's own (detached) predictions, and adds a term that pulls p_i towards it:

    .. math::
        p_i &= \mathrm{clamp}(\mathrm{softmax}(z_i), 10^{-4}, 1-10^{-4}) \\
        t_i &\leftarrow \beta\, t_i + (1-\beta)\, \mathrm{sg}(p_i / \textstyle\sum_c p_{ic}) \\
        \mathcal{L} &= \mathrm{CE}(z, \tilde y) + \lambda \cdot \tfrac1B \textstyle\sum_i \log(1 - \langle t_i, p_i\rangle)

    As in the official code the target is updated *before* the loss is computed, and
    the regulariser uses the clamped but not renormalised, non-detached p. Because
    log(1 − ⟨t, p⟩) decreases as p agrees with t, the gradient on the corrupted
    examples points back towards the early-learning prediction instead of the noisy
    label. With λ = 0 this is plain cross-entropy (the buffer still updates).
    """

    name = "elr"
    hyperparameters = ("lam", "beta")

    def __init__(self, lam: float = 3.0, beta: float = 0.7):
        check_range("ELR lam", float(torch.as_tensor(lam).min()), 0)
        check_range("ELR beta", float(torch.as_tensor(beta).min()), 0, 1, high_open=True)
        check_range("ELR beta", float(torch.as_tensor(beta).max()), 0, 1, high_open=True)
        self.lam, self.beta = lam, beta
        self.targets: torch.Tensor | None = None

    def setup(self, num_examples, num_classes, members=1, device=None):
        self.targets = torch.zeros(members, num_examples, num_classes, device=device)

    def __call__(self, logits, targets, index=None):
        logits, targets, single = _with_example_state("ELR", "target", self.targets, logits, targets, index)
        probs = softmax(logits).clamp(1e-4, 1.0 - 1e-4)
        with torch.no_grad():
            beta = _member_values(self.beta, probs[..., 0, 0]).reshape(-1, 1, 1)
            running = self.targets[:, index]                                   # (E, B, C)
            fresh = probs / probs.sum(-1, keepdim=True)
            self.targets[:, index] = beta * running + (1 - beta) * fresh
        agreement = (self.targets[:, index] * probs).sum(-1)                   # ⟨t_i, p_i⟩, (E, B)
        regularizer = torch.log(1 - agreement).mean(-1)                        # (E,)
        loss = cross_entropy(logits, targets) + _member_values(self.lam, regularizer) * regularizer
        return loss[0] if single else loss


def stablemax_s(x: torch.Tensor, epsilon: float = 1e-30) -> torch.Tensor:
    """The StableMax element map of Prieto et al. (ICLR 2025): s(x) = x + 1 for x ≥ 0,
    1 / (1 − x) for x < 0 (with ``epsilon`` in the denominator, as the official ``s``)."""
    return torch.where(x < 0, 1 / (1 - x + epsilon), x + 1)


def log_stablemax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """log StableMax(z)_k = log( s(z_k) / Σ_j s(z_j) ), in the dtype of ``logits``."""
    s = stablemax_s(logits)
    return torch.log(s / s.sum(dim=dim, keepdim=True))


def stablemax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Mean over the example axis of −log StableMax(z)_y, computed in ``dtype``.

    As the official ``stablemax_cross_entropy``: the logits are cast to float64, the
    loss is returned in float64 (gradients flow back to the logits' own dtype).
    """
    return negative_log_likelihood(log_stablemax(logits.to(dtype), dim=-1), targets).mean(-1)


class StableMaxCrossEntropy(Loss):
    r"""StableMax cross-entropy (Prieto et al., "Grokking at the edge of numerical
    stability", ICLR 2025; official ``stablemax_cross_entropy``).

    .. math::
        \mathrm{StableMax}(z)_k = \frac{s(z_k)}{\sum_j s(z_j)},\qquad
        s(x) = \begin{cases} x + 1 & x \ge 0 \\ 1/(1-x) & x < 0 \end{cases},\qquad
        \mathcal{L} = -\tfrac1B \textstyle\sum_i \log \mathrm{StableMax}(z_i)_{y_i}.

    s grows linearly instead of exponentially, so a large logit gap cannot make the
    sum Σ_j s(z_j) round to the largest term (no Softmax Collapse). ``precision`` is
    the dtype the loss is computed in: ``"float64"`` as in the official code.
    """

    name = "stablemax"
    settings = ("precision",)

    def __init__(self, precision: str = "float64"):
        self.precision = name_of(precision)

    def __call__(self, logits, targets, index=None):
        return stablemax_cross_entropy(logits, targets, dtype_of(self.precision))


class SoftCrossEntropy(Loss):
    r"""Cross-entropy with soft (mixed) targets: −Σ_c t_c log softmax(z)_c, mean over B.

    ``targets`` of shape (..., B, C) are probability vectors — the mixed one-hot labels
    λ'·e_y + (1 − λ')·e_{y_π} that :func:`tdlab.core.augment.mixup` and
    :func:`tdlab.core.augment.cutmix` return. Since the loss is linear in t this equals the
    official ``mixup_criterion`` λ·CE(z, y) + (1 − λ)·CE(z, y_π). Integer targets (..., B)
    (a step without mixing) give plain :func:`cross_entropy`.
    """

    name = "soft_ce"

    def __call__(self, logits, targets, index=None):
        if not targets.is_floating_point():
            return cross_entropy(logits, targets)
        if targets.shape[-1] != logits.shape[-1]:
            raise ValueError(f"soft targets have {targets.shape[-1]} classes, logits {logits.shape[-1]}")
        return -(targets * log_softmax(logits)).sum(-1).mean(-1)


def _true_class(values: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """values[..., i, y_i], kept as (..., B, 1) for broadcasting over classes."""
    return values.gather(-1, targets.long().unsqueeze(-1))


def _margin_differences(scores: torch.Tensor, targets: torch.Tensor, margin) -> torch.Tensor:
    """d_k = c·[k ≠ y] + ŝ_k − ŝ_y (the official ``threshold*(1-y_true) + get_diff_logits``), (..., B, C)."""
    off_target = torch.ones_like(scores).scatter(-1, targets.long().unsqueeze(-1), 0.0)
    return margin * off_target + scores - _true_class(scores, targets)


def _log_mean_exp(values: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k exp(v_k) over the last axis, stably."""
    return torch.logsumexp(values, dim=-1) - math.log(values.shape[-1])


class GeneralizedCrossEntropy(Loss):
    r"""Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018; the ``GCELoss`` of the LDR code):

    .. math:: \mathcal{L}_q(z, y) = \frac{1 - p_y^{\,q}}{q},\qquad p = \mathrm{softmax}(z),

    cross-entropy as q → 0, the (noise-robust) mean absolute error at q = 1.
    """

    name = "gce"
    hyperparameters = ("q",)

    def __init__(self, q: float = 0.7):
        check_range("GCE q", float(torch.as_tensor(q).min()), 0, 1, low_open=True)
        self.q = q

    def __call__(self, logits, targets, index=None):
        log_p = -negative_log_likelihood(log_softmax(logits), targets)             # log p_y, (..., B)
        q = _member_values(self.q, log_p)
        return ((1 - torch.exp(q * log_p)) / q).mean(-1)


class ZLoss(Loss):
    r"""The Z-loss (de Brébisson & Vincent 2016, Eq. 4): the target logit standardized over the
    classes, pushed past a location b with sharpness a,

    .. math::
        \mu = \tfrac1C \textstyle\sum_k z_k,\quad \sigma^2 = \tfrac1C \textstyle\sum_k z_k^2 - \mu^2,\quad
        \zeta_y = \frac{z_y - \mu}{\sigma},\qquad
        \mathcal{L}_Z(z, y) = \tfrac1a\,\mathrm{softplus}\big(a\,(b - \zeta_y)\big).

    It depends on z only through ζ_y, so it is unchanged by z → γ z + δ (γ > 0): no logit
    scale can drift to lower it. σ gets 1e-12 added, as the authors' ``z_loss``.
    """

    name = "zloss"
    hyperparameters = ("a", "b")

    def __init__(self, a: float = 1.0, b: float = 1.0):
        check_range("Z-loss a", float(torch.as_tensor(a).min()), 0, low_open=True)
        self.a, self.b = a, b

    def __call__(self, logits, targets, index=None):
        mean = logits.mean(-1)
        std = (logits.pow(2).mean(-1) - mean.pow(2)).clamp_min(0).sqrt()              # population σ
        zeta = (_true_class(logits, targets).squeeze(-1) - mean) / (std + 1e-12)      # ζ_y, (..., B)
        a, b = _member_values(self.a, zeta), _member_values(self.b, zeta)
        return (F.softplus(a * (b - zeta)) / a).mean(-1)


class TaylorSoftmax(Loss):
    r"""The log-Taylor-softmax loss (de Brébisson & Vincent, ICLR 2016, "An exploration of softmax
    alternatives belonging to the spherical loss family"; compared with the Z-loss in their 2016
    paper): the exponential of the softmax replaced by its second-order Taylor expansion,

    .. math::
        f(z) = 1 + z + \tfrac12 z^2 > 0,\qquad
        \mathcal{L}_T(z, y) = -\log \frac{f(z_y)}{\sum_k f(z_k)}.

    The denominator needs only Σz and Σz², so it belongs to the spherical family.
    """

    name = "taylor"

    def __call__(self, logits, targets, index=None):
        f = 1 + logits + 0.5 * logits.pow(2)
        log_p = torch.log(_true_class(f, targets).squeeze(-1)) - torch.log(f.sum(-1))      # (..., B)
        return -log_p.mean(-1)


class SphericalSoftmax(Loss):
    r"""The log-spherical-softmax loss (Vincent, de Brébisson & Bouthillier, NeurIPS 2015; studied by
    de Brébisson & Vincent, ICLR 2016, beside the log-Taylor softmax, and compared with the Z-loss in
    their 2016 paper): the exponential of the softmax replaced by the square, with ε > 0 so that no
    class has probability 0,

    .. math::
        p_k = \frac{z_k^2 + \varepsilon}{\sum_j (z_j^2 + \varepsilon)},\qquad
        \mathcal{L}_S(z, y) = -\log p_y.

    The denominator needs only Σz² (and C), so it belongs to the spherical family. ε may differ per
    member of a sweep. Not in :data:`LOSSES` (pass an instance: ``loss=SphericalSoftmax(epsilon=…)``),
    as it serves one chapter's comparison.
    """

    name = "spherical"
    hyperparameters = ("epsilon",)

    def __init__(self, epsilon: float = 0.01):
        check_range("spherical softmax ε", float(torch.as_tensor(epsilon).min()), 0, low_open=True)
        self.epsilon = epsilon

    def __call__(self, logits, targets, index=None):
        f = logits.pow(2) + _member_values(self.epsilon, logits)                           # z² + ε > 0
        log_p = torch.log(_true_class(f, targets).squeeze(-1)) - torch.log(f.sum(-1))      # (..., B)
        return -log_p.mean(-1)


class LDRKL(Loss):
    r"""Label-distributionally robust loss with a KL penalty, LDR-KL (Zhu, Ying & Yang, ICML 2023,
    Eq. 3; the official ``LDRLoss_V1``): the worst case over label distributions near uniform,

    .. math::
        \hat s = \frac{\mathrm{softplus}(z)}{\tfrac1C\sum_k \mathrm{softplus}(z_k)},\quad
        d_k = c\,[k \ne y] + \hat s_k - \hat s_y,\qquad
        \mathcal{L} = \lambda \log \tfrac1C \textstyle\sum_k e^{d_k/\lambda}.

    Large λ tends to the mean margin violation (robust to wrong labels), small λ to the
    largest one (a hinge-like, sharper loss). ``margin`` is c (the official ``--margin``, 0.1).
    """

    name = "ldr_kl"
    hyperparameters = ("lam",)
    settings = ("margin",)

    def __init__(self, lam: float = 10.0, margin: float = 0.1):
        check_range("LDR-KL lam", float(torch.as_tensor(lam).min()), 0, low_open=True)
        self.lam, self.margin = lam, margin

    def __call__(self, logits, targets, index=None):
        scores = F.softplus(logits)
        scores = scores / scores.mean(-1, keepdim=True)                              # ŝ
        lam = _member_values(self.lam, scores[..., 0]).unsqueeze(-1)                   # (E, 1, 1)
        differences = _margin_differences(scores, targets, self.margin)
        return (lam.squeeze(-1) * _log_mean_exp(differences / lam)).mean(-1)


class ALDRKL(Loss):
    r"""Adaptive LDR-KL, ALDR-KL (Zhu, Ying & Yang, ICML 2023, Eq. 6; the official ``ALDRLoss_V1``):
    LDR-KL with one λ_i per training example, set in closed form from how confident the
    model is on it,

    .. math::
        \hat s = \frac{z}{\|z\|_1 / C},\quad
        q = \mathrm{normalize}\big(\mathrm{softmax}(\hat s / \lambda_i) + 10^{-5}\big),\quad
        \lambda_i \leftarrow \lambda_0 - \lambda_0 \frac{\mathrm{KL}(q \,\|\, \tfrac1C)}{\alpha \log C}, \\
        \mathcal{L}_i = \lambda_i \log \tfrac1C \textstyle\sum_k e^{d_k/\lambda_i}
                  - \frac{\alpha \log C}{2\lambda_0}(\lambda_i - \lambda_0)^2,
        \quad d_k = c\,[k \ne y] + \hat s_k - \hat s_y .

    As in the official code, λ_i is updated from the *previous* λ_i before the loss is
    computed, and is detached (the last term is then a constant). A confident prediction
    (q far from uniform) gets a small λ_i; λ_i stays in [λ₀(1 − 1/α), λ₀], so α > 1.
    ``softplus=True`` applies softplus before the normalisation (the official CIFAR-100 runs).
    The current λ_i of every example is ``self.lambdas`` (E, N).
    """

    name = "aldr_kl"
    hyperparameters = ("lam", "alpha")
    settings = ("margin", "softplus")

    def __init__(self, lam: float = 10.0, alpha: float = 2.0, margin: float = 0.1, softplus: bool = False):
        check_range("ALDR-KL lam", float(torch.as_tensor(lam).min()), 0, low_open=True)
        check_range("ALDR-KL alpha", float(torch.as_tensor(alpha).min()), 1, low_open=True)
        self.lam, self.alpha, self.margin, self.softplus = lam, alpha, margin, softplus
        self.lambdas: torch.Tensor | None = None

    def setup(self, num_examples, num_classes, members=1, device=None):
        start = torch.as_tensor(self.lam, dtype=torch.float32, device=device).reshape(-1, 1)
        self.lambdas = start.expand(members, num_examples).clone()

    def __call__(self, logits, targets, index=None):
        logits, targets, single = _with_example_state("ALDR-KL", "λ", self.lambdas, logits, targets, index)
        classes, log_k = logits.shape[-1], math.log(logits.shape[-1])
        scores = F.softplus(logits) if self.softplus else logits
        scores = scores / (scores.abs().sum(-1, keepdim=True) / classes)             # ŝ = z / (‖z‖₁ / C)
        lam0 = _member_values(self.lam, scores[..., 0])                                 # (E, 1)
        alpha = _member_values(self.alpha, scores[..., 0])
        with torch.no_grad():
            q = torch.softmax(scores / self.lambdas[:, index].unsqueeze(-1), dim=-1) + 1e-5
            q = q / q.sum(-1, keepdim=True)
            kl = (q * torch.log(classes * q)).sum(-1)                                # KL(q ‖ uniform), (E, B)
            self.lambdas[:, index] = (lam0 - lam0 * kl / (alpha * log_k)).to(self.lambdas.dtype)
        lam = self.lambdas[:, index].to(scores.dtype)                                # (E, B), detached
        differences = _margin_differences(scores, targets, self.margin)
        per_example = lam * _log_mean_exp(differences / lam.unsqueeze(-1)) - alpha * log_k / (2 * lam0) * (lam - lam0) ** 2
        loss = per_example.mean(-1)
        return loss[0] if single else loss


def lowest_lambda(lam: float, alpha: float = 2.0, classes: int = 10, updates: int = 200) -> float:
    """The smallest λ_i ALDR-KL's own update (:class:`ALDRKL`, no softplus) can reach with ``classes``
    classes: the most peaked normalized scores there are (one class at C, the rest 0, since ŝ = z / (‖z‖₁/C)
    puts no score above C), the update applied ``updates`` times until λ_i settles. With few classes and a
    large λ₀ this lies far above the floor λ₀(1 − 1/α): at λ₀ = 10, α = 2 and ten classes, about 9.83."""
    loss = ALDRKL(lam=lam, alpha=alpha)
    loss.setup(num_examples=1, num_classes=classes)
    logits, first = torch.eye(classes)[:1], torch.zeros(1, dtype=torch.long)
    for _ in range(updates):
        loss(logits, first, first)
    return float(loss.lambdas[0, 0])


def smoothed_onehot(targets: torch.Tensor, classes: int, smoothing, dtype=torch.float32) -> torch.Tensor:
    """(1 − ε)·e_y + ε/C for integer ``targets`` (..., B) → (..., B, C); ε may be a float or one
    value per member, shape (E,)."""
    onehot = torch.zeros(targets.shape + (classes,), dtype=dtype, device=targets.device)
    onehot.scatter_(-1, targets.long().unsqueeze(-1), 1.0)              # faster than F.one_hot on the CPU
    epsilon = torch.as_tensor(smoothing, dtype=dtype, device=onehot.device)
    epsilon = epsilon.reshape(epsilon.shape + (1,) * (onehot.dim() - epsilon.dim())) if epsilon.dim() else epsilon
    return (1 - epsilon) * onehot + epsilon / classes


class LabelSmoothing(Loss):
    r"""Cross-entropy against smoothed labels (Szegedy et al., CVPR 2016, §7):

    .. math:: \tilde y = (1-\varepsilon)\, e_y + \varepsilon/C,\qquad
              \mathcal{L} = -\tfrac1B \textstyle\sum_i \sum_c \tilde y_{ic} \log \mathrm{softmax}(z_i)_c,

    as ``torch.nn.CrossEntropyLoss(label_smoothing=ε)``; ε = 0 is plain cross-entropy.
    """

    name = "label_smoothing"
    hyperparameters = ("smoothing",)

    def __init__(self, smoothing: float = 0.1):
        check_range("label smoothing", float(torch.as_tensor(smoothing).min()), 0, 1)
        check_range("label smoothing", float(torch.as_tensor(smoothing).max()), 0, 1)
        self.smoothing = smoothing

    def __call__(self, logits, targets, index=None):
        soft = smoothed_onehot(targets, logits.shape[-1], self.smoothing, logits.dtype)
        return -(soft * log_softmax(logits)).sum(-1).mean(-1)


class PSKD(Loss):
    r"""Progressive self-knowledge distillation, PS-KD (Kim et al., ICCV 2021, Eq. 7; the official
    ``Custom_CrossEntropy_PSKD`` and ``main.py``): cross-entropy against targets that mix the label
    with the model's own prediction for the example at the previous epoch,

    .. math::
        \alpha_t = \alpha_T \cdot \frac{t + 1}{T},\qquad
        \tilde y_i = (1-\alpha_t)\, e_{y_i} + \alpha_t\, P_i,\qquad
        \mathcal{L} = -\tfrac1B \textstyle\sum_i \sum_c \tilde y_{ic} \log \mathrm{softmax}(z_i)_c,

    for epoch t = 0 … T−1. P_i is the (detached) softmax of the example's logits the last time
    it was trained on — in the previous epoch — and is replaced by this step's softmax once the
    target is formed. As in the official code the first epoch trains on the labels alone (P_i
    is set to e_{y_i} there); here so is any example not yet seen (the loop drops each epoch's
    last incomplete batch). The loop tells the loss the epoch (:meth:`at_step`); called
    outside the loop it uses α_t = α_T.

    ``smoothing`` ε replaces e_y by (1 − ε)·e_y + ε/C (label smoothing): with α_T = 0 the loss is
    label smoothing, with both 0 plain cross-entropy, so one batched sweep trains all three.
    ``uniform_teacher`` u replaces the teacher P_i by (1 − u)·P_i + u/C: with u = 1 the targets are
    (1 − α_t)·e_y + α_t/C, label smoothing towards uniform with PS-KD's own α_t ramp — the control
    that isolates the self-teacher. PS-KD itself has ε = u = 0. ``self.predictions`` (E, N, C)
    holds every P_i.
    """

    name = "pskd"
    hyperparameters = ("alpha_T", "smoothing", "uniform_teacher")

    def __init__(self, alpha_T: float = 0.8, smoothing: float = 0.0, uniform_teacher: float = 0.0):
        for name, value in (("PS-KD alpha_T", alpha_T), ("PS-KD smoothing", smoothing),
                            ("PS-KD uniform_teacher", uniform_teacher)):
            check_range(name, float(torch.as_tensor(value).min()), 0, 1)
            check_range(name, float(torch.as_tensor(value).max()), 0, 1)
        self.alpha_T, self.smoothing, self.uniform_teacher = alpha_T, smoothing, uniform_teacher
        self.predictions: torch.Tensor | None = None
        self.seen: torch.Tensor | None = None
        self.epoch, self.epochs, self._all_seen = 0, 1, False

    def setup(self, num_examples, num_classes, members=1, device=None):
        self.predictions = torch.zeros(members, num_examples, num_classes, device=device)
        self.seen = torch.zeros(num_examples, dtype=torch.bool, device=device)
        self.epoch, self.epochs, self._all_seen = 0, 1, False

    def at_step(self, step, steps, epoch_length):
        epoch = (step - 1) // epoch_length
        if epoch != self.epoch and not self._all_seen and self.seen is not None:
            self._all_seen = bool(self.seen.all())                                    # once an epoch, not every step
        self.epoch, self.epochs = epoch, -(-steps // epoch_length)                    # T = ⌈steps / epoch length⌉

    @property
    def alpha_t(self):
        """α_t = α_T·(t + 1)/T at the current epoch t (a float, or one value per member)."""
        return self.alpha_T * min(self.epoch + 1, self.epochs) / self.epochs

    def __call__(self, logits, targets, index=None):
        logits, targets, single = _with_example_state("PS-KD", "prediction", self.predictions, logits, targets,
                                                      index)
        log_p = log_softmax(logits)
        with torch.no_grad():
            label = smoothed_onehot(targets, logits.shape[-1], self.smoothing, log_p.dtype)       # (E, B, C)
            previous = self.predictions.index_select(1, index).to(log_p.dtype)                   # P_i, (E, B, C)
            if not self._all_seen:                                   # not trained on yet: the label itself
                previous = torch.where(self.seen[index].unsqueeze(-1), previous, label)
                self.seen[index] = True
            uniform = _member_values(self.uniform_teacher, log_p[..., 0, 0]).reshape(-1, 1, 1)
            if torch.any(uniform != 0):                              # the control: a uniform teacher
                previous = torch.lerp(previous, torch.full_like(previous, 1 / logits.shape[-1]), uniform)
            alpha = _member_values(self.alpha_t, log_p[..., 0, 0]).reshape(-1, 1, 1)
            soft = torch.lerp(label, previous, alpha)                                # (1 − α_t)·label + α_t·P_i
            self.predictions.index_copy_(1, index, log_p.exp().to(self.predictions.dtype))
        loss = -(soft * log_p).sum(-1).mean(-1)
        return loss[0] if single else loss


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (CrossEntropy, SoftmaxCrossEntropy, MSE, ELR,
                                                           StableMaxCrossEntropy, SoftCrossEntropy,
                                                           GeneralizedCrossEntropy, ZLoss, TaylorSoftmax, LDRKL, ALDRKL,
                                                           LabelSmoothing, PSKD)}


def get_loss(loss: str | Loss, **kwargs) -> Loss:
    """A loss by name (see :data:`LOSSES`), built with ``kwargs`` (its hyperparameters and
    settings), or a :class:`Loss` passed through (``kwargs`` then set its hyperparameters)."""
    if isinstance(loss, Loss):
        return loss.set(**kwargs) if kwargs else loss
    check_choice("loss", loss, tuple(LOSSES))
    cls = LOSSES[loss]
    allowed = cls.hyperparameters + cls.settings
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise ValueError(f"{cls.name} has no hyper-parameter or setting {unknown[0]!r}; it has: {allowed or 'none'}")
    return cls(**kwargs)


class LazyMSE(Loss):
    r"""The squared error of Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024, "Grokking as the
    Transition from Lazy to Rich Training Dynamics"; their code's ``CENTER_LOSS``): the network's
    output z is scaled by the laziness α and centred on its value at initialization,

    .. math::
        f(x) = \alpha\,\big(z_\theta(x) - z_{\theta_0}(x)\big), \qquad
        \mathcal{L} = \frac1P \sum_{\mu < P} \big(f(x_\mu) - y_\mu\big)^2 ,

    with the paper's step η = N/α² set per member as the learning rate (a large α makes the
    network lazy: its weights move by O(1/α) while f fits the targets). ``alpha`` and
    ``train_size`` (P: only the examples of dataset index < P count, so members with different
    training sets share one stacked run) are per-member coefficients. The initial outputs
    z_θ₀(x_μ) are recorded on the first call — the loop's first step, before any update — so the
    loss needs full-batch training (``batch_size=None``). ``center=False`` fits α z itself.
    Regression targets: float, shape (..., B); the output has one column, (..., B, 1). Not in
    :data:`LOSSES` (pass an instance: ``loss=LazyMSE()``), as it fits one chapter's regression toy.
    """

    name = "lazy_mse"
    hyperparameters = ("alpha", "train_size")
    settings = ("center",)

    def __init__(self, alpha: float = 1.0, train_size: float = math.inf, center: bool = True):
        check_range("alpha", alpha, 0, low_open=True)
        if not train_size >= 1:                              # math.inf (the default): every example
            raise ValueError(f"train_size must be at least 1, got {train_size!r}")
        self.alpha, self.train_size, self.center = alpha, train_size, bool(center)
        self.initial: torch.Tensor | None = None          # z_θ₀ per member and training example

    def outputs(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """f = α (z − z₀) for the examples ``index``, shape (E, B); records z₀ on the first call."""
        z = logits.squeeze(-1)
        z = z.unsqueeze(0) if z.dim() == 1 else z                                   # (E, B)
        if self.center:
            z = z - self._initial_at(z, index)
        return _member_values(self.alpha, z) * z

    def _initial_at(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """z₀ of the examples ``index`` (recorded now if this is the first call). Full-batch training hands
        the same index tensor at every step, so its lookup is kept (a CPU step is mostly such small calls)."""
        if self.initial is None:
            self.initial = torch.full((z.shape[0], int(index.max()) + 1), math.nan, dtype=z.dtype, device=z.device)
            self.initial[:, index] = z.detach()
        if getattr(self, "_looked_up", (None,))[0] is not index:
            if int(index.max()) >= self.initial.shape[1] or bool(torch.isnan(self.initial[:, index]).any()):
                raise ValueError("lazy_mse centres each example on its output at initialization, recorded on "
                                 "the first call: train full batch (batch_size=None)")
            self._looked_up = (index, self.initial[:, index])
        return self._looked_up[1]

    def __call__(self, logits, targets, index=None):
        single = logits.dim() == 2
        if index is None:
            index = torch.arange(logits.shape[-2], device=logits.device)
        f = self.outputs(logits, index)
        squared = (f - targets) ** 2                                                 # (E, B)
        key = (index, self.train_size)
        cached = getattr(self, "_kept", None)
        if cached is None or cached[0][0] is not index or cached[0][1] is not self.train_size:
            kept = (index.unsqueeze(0) < _member_values(self.train_size, squared)).to(squared.dtype)
            cached = self._kept = (key, kept, kept.sum(-1).clamp_min(1))
        _, kept, count = cached
        loss = (squared * kept).sum(-1) / count                                     # mean over μ < P
        return loss[0] if single else loss

