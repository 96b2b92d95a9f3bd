"""The grokking chapters' losses: StableMax cross-entropy (Prieto et al. 2025) and the centred, scaled
squared error of the lazy-to-rich chapter (Kumar et al. 2024)."""
from __future__ import annotations

import math

import torch

from tdlab.core.config import check_range
from tdlab.core.losses.base import Loss, _member_values, dtype_of, name_of, negative_log_likelihood


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

