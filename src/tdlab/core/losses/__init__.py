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

The package's files: :mod:`~tdlab.core.losses.base` (the interface, cross-entropy, precision),
:mod:`~tdlab.core.losses.targets` (ELR, soft targets, label smoothing, PS-KD),
:mod:`~tdlab.core.losses.robust` (GCE, Z-loss, Taylor and spherical softmax, LDR-KL, ALDR-KL),
:mod:`~tdlab.core.losses.grokking` (StableMax, the lazy-to-rich squared error); every name is importable
from ``tdlab.core.losses`` as before.
"""
from __future__ import annotations

from tdlab.core.config import check_choice
from tdlab.core.losses.base import (MSE, PRECISIONS, CrossEntropy, Loss, SoftmaxCrossEntropy,  # noqa: F401
                                    _class_major, _member_values, _over_classes, cross_entropy,
                                    cross_entropy_in, dtype_of, log_softmax, mse_onehot, name_of,
                                    negative_log_likelihood, softmax)
from tdlab.core.losses.grokking import (LazyMSE, StableMaxCrossEntropy, log_stablemax,  # noqa: F401
                                        stablemax_cross_entropy, stablemax_s)
from tdlab.core.losses.robust import (ALDRKL, LDRKL, GeneralizedCrossEntropy, SphericalSoftmax,  # noqa: F401
                                      TaylorSoftmax, ZLoss, lowest_lambda)
from tdlab.core.losses.targets import (ELR, PSKD, LabelSmoothing, SoftCrossEntropy,  # noqa: F401
                                       smoothed_onehot)


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
