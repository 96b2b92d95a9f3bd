"""Neural tangent kernels as measurements: the kernel of a network, kernel regression with it, how
well it aligns with the target, and how far it has moved from its initial value.

Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024, "Grokking as the Transition from Lazy to Rich
Training Dynamics") read grokking through these numbers: while a lazy network fits its training
set its test loss sits near that of kernel regression with the *initial* NTK K₀ (the lazy
plateau); it generalizes when the kernel K_t moves and aligns with the target.

- :func:`empirical_ntk` — K(x, x') = ∇_θ f(x) · ∇_θ f(x') of any module with one output, through
  ``torch.func`` (a model may have a faster closed form, e.g.
  :meth:`tdlab.core.models.QuadraticFeatureNet.ntk`);
- :func:`kernel_regression` — the ridgeless (or ridge) kernel predictor K(X*, X) K(X, X)⁻¹ y;
- :func:`alignment` — centred kernel–target alignment, as the authors' code computes it;
- :func:`relative_change` — ‖K_t − K₀‖_F / ‖K₀‖_F;
- :func:`lazy_rich` — a monitor of the training loop that logs all of these for every member of a
  run trained with :class:`tdlab.core.losses.LazyMSE`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from tdlab.core.config import check_range


def empirical_ntk(model: nn.Module, params: dict[str, torch.Tensor], x1: torch.Tensor,
                  x2: torch.Tensor | None = None) -> torch.Tensor:
    r"""The empirical NTK of a model with one output at ``params`` (name → tensor):

    .. math:: K(x, x') = \sum_p \frac{\partial f_\theta(x)}{\partial \theta_p}\,\frac{\partial f_\theta(x')}{\partial \theta_p},

    shape (n1, n2) (``x2=None``: the Gram matrix of ``x1``). Per-example Jacobians come from
    ``vmap(jacrev(...))``; for the sizes of this book (thousands of parameters) that is quick."""
    params = {k: v.detach() for k, v in params.items()}

    def output(p, x):
        return functional_call(model, p, (x.unsqueeze(0),)).reshape(())

    def jacobians(x):
        per_example = vmap(jacrev(output), in_dims=(None, 0))(params, x)       # name → (n, *shape)
        return torch.cat([j.reshape(x.shape[0], -1) for j in per_example.values()], dim=1)

    j1 = jacobians(x1)
    j2 = j1 if x2 is None else jacobians(x2)
    return j1 @ j2.T


def kernel_regression(k_train: torch.Tensor, y_train: torch.Tensor, k_test_train: torch.Tensor,
                      ridge: float = 0.0) -> torch.Tensor:
    r"""Kernel regression's predictions K(X*, X) (K(X, X) + λ I)⁻¹ y, solved in float64; λ = ``ridge``
    × tr K / n (0: the interpolating predictor that gradient flow on the linearized network reaches
    from zero output — the lazy limit). Shapes (n, n), (n,), (m, n) → (m,)."""
    check_range("ridge", ridge, 0)
    k = k_train.double()
    if ridge:
        k = k + ridge * torch.trace(k) / k.shape[0] * torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    coefficients = torch.linalg.solve(k, y_train.double())
    return (k_test_train.double() @ coefficients).to(y_train.dtype)


def alignment(kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Centred kernel–target alignment, as ``kalignment`` in the authors' code:

    .. math:: A(K) = \frac{y_c^\top K_c\, y_c}{\lVert K_c \rVert_F \, \lVert y_c \rVert^2},
        \qquad y_c = y - \bar y, \quad K_c = K - \mathbf 1\,\bar k^\top

    (K_c subtracts each column's mean, the code's ``K - K.mean(axis=0)``). 1 when K ∝ y_c y_cᵀ
    (the kernel sees only the target's direction); near 0 for a kernel blind to it. ``kernel``
    (n, n) or a stack (E, n, n), ``y`` (n,) → a number or (E,)."""
    yc = (y - y.mean()).to(kernel.dtype)
    kc = kernel - kernel.mean(dim=-2, keepdim=True)
    top = torch.einsum("i,...ij,j->...", yc, kc, yc)
    return top / (torch.linalg.matrix_norm(kc) * (yc @ yc))


def relative_change(kernel: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """‖K_t − K₀‖_F / ‖K₀‖_F: 0 while the network is lazy (its kernel frozen), O(1) once its features
    have moved. Shapes (n, n) or (E, n, n) → a number or (E,)."""
    return torch.linalg.matrix_norm(kernel - initial) / torch.linalg.matrix_norm(initial)


def _per_member(value, members: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1).expand(members)


def lazy_rich(model: nn.Module, kernel_points: int = 200) -> Callable:
    """A monitor for runs trained with :class:`tdlab.core.losses.LazyMSE` (``alpha``, ``train_size`` per
    member): at every evaluation it logs, for each member,

    - ``train``/``mse`` — the loss of f = α (z − z₀) on the member's own P training examples;
    - ``test``/``mse`` — the same on the test set;
    - ``test``/``kernel_mse`` — the test loss of kernel regression with the member's *initial* NTK K₀
      on its P examples (:func:`kernel_regression`, ridgeless; computed once, logged at every
      evaluation as a level): where a lazy network's test loss goes;
    - ``test``/``alignment`` — :func:`alignment` of the current NTK K_t with the target, on the first
      ``kernel_points`` test examples (the authors measure it on the test set);
    - ``test``/``kernel_change`` — :func:`relative_change` of K_t from K₀ on the same points;
    - ``train``/``log_mse``, ``test``/``log_mse``, ``test``/``log_kernel_mse`` — log₁₀ of the three
      losses (for figures with a linear axis, such as :func:`tdlab.book.plots.explorer`).

    ``model`` gives the kernel: its ``ntk(W, x1, x2)`` closed form when it has one (it must then
    have a single parameter ``W``), else :func:`empirical_ntk`. The initial outputs z₀ and kernels
    are taken at step 0 of each run. The loop's own ``train``/``test`` ``loss`` is the squared
    error of the raw output z (no α, no centring): read ``mse``.
    """
    check_range("kernel_points", kernel_points, 2)
    state: dict = {}

    def kernel(params: dict[str, torch.Tensor], x1, x2) -> torch.Tensor:
        if hasattr(model, "ntk"):
            return model.ntk(params["W"], x1, x2)
        return empirical_ntk(model, params, x1, x2)

    @torch.no_grad()
    def monitor(ev) -> dict:
        members, data = ev.members, ev.data
        z = {split: ev.logits[split].squeeze(-1) for split in ("train", "test")}                # (E, n)
        alpha = _per_member(getattr(ev.loss, "alpha", 1.0), members, z["train"])
        size = _per_member(getattr(ev.loss, "train_size", float("inf")), members, z["train"])
        size = size.clamp(max=data.num_train).long()
        centred = getattr(ev.loss, "center", True)
        points = data.x_test[:kernel_points]
        target = data.y_test[:kernel_points]
        parameters = [ev.parameters(m) for m in range(members)]
        if hasattr(model, "ntk"):                    # every member's kernel in one stacked call
            kernels = model.ntk(torch.stack([p["W"] for p in parameters]), points, points).double()
        else:
            kernels = torch.stack([kernel(p, points, points) for p in parameters]).double()   # (E, k, k)
        if ev.step == 0 or not state:
            state.clear()
            state.update(z0={s: v.clone() for s, v in z.items()}, k0=kernels.clone(), plateau=[])
            for m, p in enumerate(parameters):       # the lazy limit: kernel regression with K₀ from f₀
                x, y, n = data.x_train, data.y_train, int(size[m])
                f0 = {s: (0.0 if centred else alpha[m] * z[s][m]) for s in ("train", "test")}
                residual = y[:n] - (f0["train"][:n] if not centred else 0.0)
                predicted = kernel_regression(kernel(p, x[:n], x[:n]), residual, kernel(p, data.x_test, x[:n]))
                state["plateau"].append(float(((f0["test"] + predicted - data.y_test) ** 2).mean()))
        f = {s: alpha[:, None] * (z[s] - state["z0"][s] if centred else z[s]) for s in z}
        squared = (f["train"] - data.y_train) ** 2
        kept = (torch.arange(data.num_train, device=squared.device)[None, :] < size[:, None]).to(squared.dtype)
        train, test = (squared * kept).sum(-1) / kept.sum(-1), ((f["test"] - data.y_test) ** 2).mean(-1)
        plateau = torch.tensor(state["plateau"], dtype=train.dtype, device=train.device)
        return {("train", "mse"): train, ("test", "mse"): test, ("test", "kernel_mse"): plateau,
                ("train", "log_mse"): train.log10(), ("test", "log_mse"): test.log10(),
                ("test", "log_kernel_mse"): plateau.log10(),
                ("test", "alignment"): alignment(kernels, target.double()),
                ("test", "kernel_change"): relative_change(kernels, state["k0"])}

    return monitor
