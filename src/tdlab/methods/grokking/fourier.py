"""Fourier analysis of the modular-arithmetic network's neurons, and pruning by it.

In the network f(x) = W (U x_a + V x_b)² of :class:`tdlab.core.models.QuadraticModularNet`,
hidden neuron k owns three vectors over Z_p: its input weights U_k = U[k, :] and
V_k = V[k, :], and its output weights W_{:,k}. Gromov (2023) found the generalizing
solution analytically: every neuron is a single Fourier mode,
U_kn ∝ cos(2π σ_k n / p + φ_k), so each of its three vectors has *one* nonzero
Fourier amplitude. A neuron that memorizes corrupted labels has no such structure:
its spectrum is spread out. Doshi, Das, He & Gromov (2023, "To grok or not to grok")
measure this with the inverse participation ratio of the spectrum.

Definitions (the authors' ``utils/data_processing.calculate_ipr`` and the phase-diagram
scripts):

- The spectrum of a vector u ∈ R^p is û_j = |Σ_n u_n e^{−2πi jn/p}|, j = 0, …, ⌊p/2⌋
  (``rfft``; the other half repeats it for real u).
- IPR_r(u) = Σ_j (û_j / ‖û‖₂)^{2r}, with r = 2. It is 1 for a single mode and
  about 1/(number of equally strong modes) for a spread-out spectrum; so high IPR
  means periodic (generalizing) and low IPR means memorizing.
- The IPR of neuron k is the mean of IPR(U_k), IPR(V_k) and IPR(W_{:,k}).
- Pruning neuron k zeroes U_k, V_k and W_{:,k}: the neuron no longer contributes to
  any output. The paper prunes neurons in order of increasing IPR.
"""
from __future__ import annotations

import copy
from typing import Sequence

import pandas as pd
import torch

from tdlab.core.config import check_range
from tdlab.core.monitors import Evaluation, measure_model


def spectrum(vectors: torch.Tensor) -> torch.Tensor:
    """Fourier amplitudes |rfft(u)| along the last axis: (..., p) → (..., ⌊p/2⌋ + 1)."""
    if vectors.dim() < 1 or vectors.shape[-1] < 2:
        raise ValueError(f"need vectors of length p ≥ 2 along the last axis, got shape {tuple(vectors.shape)}")
    return torch.fft.rfft(vectors, dim=-1).abs()


def ipr(vectors: torch.Tensor, r: float = 2.0) -> torch.Tensor:
    """Inverse participation ratio of the Fourier spectrum of each vector (last axis).

    IPR_r(u) = Σ_j (û_j / ‖û‖₂)^{2r} with û = |rfft(u)| (Doshi et al. 2023;
    r = 2 in the paper). Shape (..., p) → (...). In [1/(⌊p/2⌋+1), 1]; 1 means a single
    Fourier mode. An all-zero vector (a pruned neuron) has no spectrum: its IPR is NaN.
    """
    check_range("IPR power r", float(r), 0, low_open=True)
    amplitudes = spectrum(vectors)
    norm = amplitudes.norm(dim=-1, keepdim=True)
    return ((amplitudes / norm) ** (2 * r)).sum(-1)


def neuron_vectors(model) -> dict[str, torch.Tensor]:
    """Each hidden neuron's three vectors over Z_p, as rows: ``U`` (N, p), ``V`` (N, p), ``W`` (N, p).

    ``W`` here is the transpose of the output matrix, so row k is the column W_{:,k}.
    ``model`` is a :class:`tdlab.core.models.QuadraticModularNet`, or its parameters by name
    (what a monitor receives from the training loop).
    """
    params = model if isinstance(model, dict) else dict(model.named_parameters())
    for name in ("U", "V", "W"):
        if name not in params:
            raise ValueError("the Fourier analysis needs a QuadraticModularNet (parameters U, V, W)")
    return {"U": params["U"].detach(), "V": params["V"].detach(), "W": params["W"].detach().T}


def neuron_ipr(model, r: float = 2.0) -> torch.Tensor:
    """The IPR of every hidden neuron, shape (N,): the mean of IPR(U_k), IPR(V_k), IPR(W_{:,k})."""
    vectors = neuron_vectors(model)
    return torch.stack([ipr(vectors[name], r) for name in ("U", "V", "W")]).mean(0)


def neuron_norm(model) -> torch.Tensor:
    """The weight norm of every hidden neuron, shape (N,): √(‖U_k‖² + ‖V_k‖² + ‖W_{:,k}‖²), the size
    of all the weights pruning neuron k removes."""
    vectors = neuron_vectors(model)
    return sum(vectors[name].pow(2).sum(-1) for name in ("U", "V", "W")).sqrt()


def lowest_ipr(model, count: int, r: float = 2.0) -> torch.Tensor:
    """The indices of the ``count`` neurons with the lowest IPR (the most memorizing first)."""
    scores = neuron_ipr(model, r)
    check_range("number of neurons to prune", count, 0, len(scores))
    return torch.argsort(scores, stable=True)[:count]


def prune(model, neurons) -> torch.nn.Module:
    """A copy of ``model`` with the given hidden neurons removed (U_k, V_k, W_{:,k} set to 0).

    ``neurons``: indices (a list or tensor). The original model is not changed.
    """
    width = neuron_vectors(model)["U"].shape[0]
    index = torch.as_tensor(neurons, dtype=torch.long).reshape(-1)
    if len(index) and (index.min() < 0 or index.max() >= width):
        raise ValueError(f"neuron indices must lie in [0, {width - 1}], got {index.tolist()}")
    pruned = copy.deepcopy(model)
    keep = torch.ones(width, dtype=pruned.U.dtype, device=pruned.U.device)
    keep[index.to(keep.device)] = 0.0
    with torch.no_grad():
        pruned.U.mul_(keep[:, None])
        pruned.V.mul_(keep[:, None])
        pruned.W.mul_(keep[None, :])
    return pruned


def accuracies(model, data) -> dict[str, float]:
    """Accuracy of ``model`` on the test set, the clean training examples and the corrupted
    ones (against their given labels, ``corrupted``, and their true labels, ``corrupted_true``)."""
    result = measure_model(model, data)
    out = {"test": result[("test", "acc")], "train": result[("train", "acc")]}
    if ("train_clean", "acc") in result:
        out["clean"] = result[("train_clean", "acc")]
    if ("train_corrupted", "acc") in result:
        out["corrupted"] = result[("train_corrupted", "acc")]
        out["corrupted_true"] = result[("train_corrupted", "acc_true")]
    return out


def ipr_monitor(edges: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), r: float = 2.0):
    """A monitor (:mod:`tdlab.core.monitors`): the distribution of the neurons' IPR at every
    evaluation, from the parameters the loop is training (the official notebook's Fig. 1a).

    Logs split ``neurons``: ``ipr_mean``, and ``ipr<e`` — the fraction of neurons whose IPR is
    below e — for every edge e.
    """
    def monitor(ev: Evaluation) -> dict[tuple[str, str], list[float]]:
        out: dict[tuple[str, str], list[float]] = {("neurons", "ipr_mean"): []}
        out.update({("neurons", f"ipr<{e:g}"): [] for e in edges})
        for member in range(ev.members):
            scores = neuron_ipr(ev.parameters(member), r)
            out[("neurons", "ipr_mean")].append(scores.mean().item())
            for e in edges:
                out[("neurons", f"ipr<{e:g}")].append((scores < e).float().mean().item())
        return out

    return monitor


def pruning_curve(model, data, counts: Sequence[int], r: float = 2.0, order: str = "ipr",
                  seed: int = 0) -> pd.DataFrame:
    """Accuracies after removing the ``count`` lowest-IPR neurons, for each count.

    The experiment of Doshi et al. (2023): if low-IPR neurons are the ones
    that memorize, removing them lowers the accuracy on the corrupted examples (against
    their given labels) while the test accuracy stays. ``order="random"`` removes
    neurons in a seeded random order instead, a control; ``order="norm"`` removes the neurons
    with the smallest weight norm first (:func:`neuron_norm`), the control that asks whether IPR
    only finds the neurons that matter least. One row per count, columns ``pruned`` and those of
    :func:`accuracies`.
    """
    width = neuron_vectors(model)["U"].shape[0]
    if order == "ipr":
        ranking = lowest_ipr(model, width, r)
    elif order == "random":
        ranking = torch.randperm(width, generator=torch.Generator().manual_seed(seed))
    elif order == "norm":
        ranking = torch.argsort(neuron_norm(model), stable=True)
    else:
        raise ValueError(f"order must be 'ipr', 'norm' or 'random', got {order!r}")
    rows = []
    for count in counts:
        check_range("number of neurons to prune", count, 0, width)
        rows.append({"pruned": int(count), **accuracies(prune(model, ranking[:int(count)]), data)})
    return pd.DataFrame(rows)
