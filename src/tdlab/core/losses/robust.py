"""Losses proposed in place of softmax cross-entropy: generalized cross-entropy (Zhang & Sabuncu 2018),
the Z-loss and the spherical family it was compared with (de Brébisson & Vincent 2016), LDR-KL and its
adaptive ALDR-KL (Zhu, Ying & Yang 2023)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tdlab.core.config import check_range
from tdlab.core.losses.base import Loss, _member_values, _with_example_state, log_softmax, negative_log_likelihood


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


