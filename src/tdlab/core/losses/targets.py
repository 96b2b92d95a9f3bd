"""Losses whose target is not (only) the given label: ELR's running target of the network's own
predictions (Liu et al. 2020), soft or mixed targets (mixup, CutMix), label smoothing, and PS-KD's
progressive self-distillation (Kim et al. 2021)."""
from __future__ import annotations

import torch

from tdlab.core.config import check_range
from tdlab.core.losses.base import Loss, _member_values, _with_example_state, cross_entropy, log_softmax, softmax


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


