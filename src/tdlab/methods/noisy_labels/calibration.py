"""Calibration: how far a model's confidence is from its accuracy.

A classifier's *confidence* on an example is its largest softmax probability, max_c p_c;
it is *calibrated* when, among the examples it answers with confidence about q, a
fraction q is right. The measures here are those of Guo et al. (ICML 2017), as the PS-KD
code computes them (``utils/metric.py``):

- :func:`reliability`: the test examples sorted into ``bins`` equal-width confidence bins
  (0, 1/M], (1/M, 2/M], …, each bin's count, accuracy and mean confidence — the data of a
  reliability diagram (:func:`tdlab.book.plots.reliability_diagrams`);
- :func:`expected_calibration_error`: ECE = Σ_b (n_b / N)·|acc_b − conf_b|, a fraction
  (the papers print it ×100);
- :func:`nll`: the mean negative log-likelihood of the true class (the test loss the loop
  already logs);
- :func:`monitor`: ECE and mean confidence at every evaluation of a training run, from the
  logits the loop has computed;
- :func:`label_mass` and :func:`label_mass_monitor`: the mass a PS-KD loss's soft targets put on
  the given label (how strongly it softens them), and :func:`uniform_alpha`, the uniform teacher's α_T
  of a given mass, to match a uniform teacher's strength to PS-KD's.

Every function takes logits (..., N, C) and integer labels (..., N): a sweep's (E, N, C)
gives one value per member.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tdlab.core.config import check_range
from tdlab.core.losses import cross_entropy, softmax
from tdlab.core.monitors import masked_mean


@dataclass
class Reliability:
    """Equal-width confidence bins of one model (or E of them: arrays with a leading member axis).

    ``edges`` (bins + 1,), ``count`` (..., bins), ``accuracy`` and ``confidence`` (..., bins): the
    fraction right and the mean confidence of each bin's examples (NaN for an empty bin).
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> np.ndarray | float:
        """Σ_b (n_b / N)·|acc_b − conf_b| (empty bins count 0)."""
        gap = np.nan_to_num(np.abs(self.accuracy - self.confidence))
        value = (self.count * gap).sum(-1) / self.count.sum(-1)
        return float(value) if np.ndim(value) == 0 else value

    def member(self, index: int) -> "Reliability":
        """One member's bins, from a sweep's."""
        return Reliability(self.edges, self.count[index], self.accuracy[index], self.confidence[index])


def _binned(logits: torch.Tensor, targets: torch.Tensor, bins: int):
    """Per bin: counts, correct answers and summed confidence, each (..., bins), float64."""
    check_range("bins", bins, 1)
    probs = softmax(logits.detach())
    confidence, predicted = probs.max(-1)
    confidence = confidence.double()
    inner = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=confidence.device)[1:-1]
    which = torch.bucketize(confidence, inner)            # bin b holds (b/M, (b+1)/M]: right edge included
    correct = (predicted == targets.to(predicted.device).expand_as(predicted)).double()
    shape = confidence.shape[:-1] + (bins,)
    count = torch.zeros(shape, dtype=torch.float64, device=confidence.device).scatter_add_(-1, which,
                                                                                           torch.ones_like(confidence))
    right = torch.zeros_like(count).scatter_add_(-1, which, correct)
    summed = torch.zeros_like(count).scatter_add_(-1, which, confidence)
    return count, right, summed


def reliability(logits: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> Reliability:
    """The reliability-diagram data of ``logits`` (..., N, C) against ``targets`` (..., N): the
    confidence max_c softmax(z)_c sorted into ``bins`` equal-width bins (b/M, (b+1)/M]."""
    count, right, summed = (t.cpu().numpy() for t in _binned(logits, targets, bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, right / count, np.nan)
        confidence = np.where(count > 0, summed / count, np.nan)
    return Reliability(np.linspace(0, 1, bins + 1), count, accuracy, confidence)


def expected_calibration_error(logits: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> torch.Tensor:
    """ECE = Σ_b (n_b / N)·|acc_b − conf_b| over ``bins`` equal-width confidence bins, a fraction
    in [0, 1]; shape ``logits.shape[:-2]`` (one value per member). 10 bins, as the PS-KD code."""
    count, right, summed = _binned(logits, targets, bins)
    return ((right - summed).abs().sum(-1) / count.sum(-1)).to(torch.float32)


def nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The mean negative log-likelihood −log softmax(z)_y, shape ``logits.shape[:-2]``."""
    return cross_entropy(logits, targets)


def mean_confidence(logits: torch.Tensor) -> torch.Tensor:
    """The mean over examples of max_c softmax(z)_c, shape ``logits.shape[:-2]``."""
    return softmax(logits.detach()).max(-1).values.mean(-1)


def monitor(bins: int = 10, split: str = "test"):
    """A training-loop monitor: ECE (metric ``ece``) and the mean confidence (``confidence``) of
    every member on ``split``, against the labels the loop evaluates it on. The NLL is the
    split's ``loss``, which the loop always logs."""
    check_range("bins", bins, 1)

    def calibration(ev) -> dict:
        z, y = ev.logits[split], ev.targets[split]
        return {(split, "ece"): expected_calibration_error(z, y, bins), (split, "confidence"): mean_confidence(z)}

    return calibration


def label_mass(loss, targets: torch.Tensor) -> torch.Tensor:
    """The mass that a PS-KD loss's current soft targets put on the given label of every training
    example, (E, N): (1 − α_t)·((1 − ε) + ε/C) + α_t·((1 − u)·P_{i,y} + u/C), with the loss's α_t, its
    label smoothing ε, its uniform teacher u and its buffer P of previous predictions. With α_t = 0 and
    ε = 0 (cross-entropy) it is 1; a uniform teacher (u = 1) gives 1 − α_t·(1 − 1/C) for every example,
    so the strength of a uniform teacher can be matched to PS-KD's on this number (:func:`uniform_alpha`).
    An example the loss has not trained on yet (its ``seen`` mask, before the first epoch ends) counts
    with its label as P_i, as the loss uses it."""
    predictions = loss.predictions
    if predictions is None:
        raise RuntimeError("the PS-KD loss has no buffer of predictions yet: call setup first")
    classes = predictions.shape[-1]
    like = predictions[..., 0]                                                           # (E, N)
    targets = targets.expand(like.shape) if targets.dim() < like.dim() else targets
    previous = predictions.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1).to(like.dtype)
    alpha, epsilon, uniform = (_per_member(value, like) for value in (loss.alpha_t, loss.smoothing,
                                                                       loss.uniform_teacher))
    seen = getattr(loss, "seen", None)
    if seen is not None:                                               # as the loss: an example not trained
        label = 1 - epsilon + epsilon / classes                            # on yet has its (smoothed) label as P_i
        previous = torch.where(seen.to(previous.device), previous, label.expand_as(previous))
    teacher = (1 - uniform) * previous + uniform / classes
    return (1 - alpha) * (1 - epsilon + epsilon / classes) + alpha * teacher


def uniform_alpha(mass: float, classes: int) -> float:
    """The α_T of a uniform teacher (``uniform_teacher=1``, ε = 0) whose last-epoch targets put ``mass``
    on the label: 1 − α·(1 − 1/C) = m, so α = (1 − m)/(1 − 1/C) — to match its strength to a PS-KD
    run's measured :func:`label_mass`."""
    check_range("mass", mass, 0.0, 1.0)
    if classes < 2:
        raise ValueError(f"a uniform teacher needs at least two classes, got {classes}")
    return (1 - float(mass)) / (1 - 1 / classes)


def _per_member(value, like: torch.Tensor) -> torch.Tensor:
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(-1, 1) if value.dim() else value


def label_mass_monitor():
    """A training-loop monitor for ``loss="pskd"`` runs: the mean mass its targets put on the given
    label (metric ``label_mass`` of split ``train``, see :func:`label_mass`), and with corrupted labels
    the same mean over the clean (``train_clean``) and over the corrupted examples (``train_corrupted``)."""

    def targets(ev) -> dict:
        mass = label_mass(ev.loss, ev.targets["train"])
        out = {("train", "label_mass"): mass.mean(-1)}
        if ev.corrupted is not None:
            corrupted = ev.corrupted.to(mass.dtype)
            out[("train_clean", "label_mass")] = masked_mean(mass, 1 - corrupted)
            out[("train_corrupted", "label_mass")] = masked_mean(mass, corrupted)
        return out

    return targets
