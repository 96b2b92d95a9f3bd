"""Parameters in one flat buffer, and the optimizers that update it in a few operations.

An optimizer written per parameter tensor (``torch.optim`` with ``foreach=False``) runs
about ten small operations for each weight and bias; for a three-layer MLP that is sixty
calls per step, more time than the forward pass. Here every parameter is a view of one
``(E, P)`` buffer (E members of a sweep, P parameters each; E = 1 for a single run), and
:class:`FlatOptimizer` updates all of it at once — with a learning rate, weight decay and
momentum per member.

- :func:`stack` — E models' parameters as one ``(E, P)`` buffer plus per-layer views, for
  ``vmap(functional_call)`` (what :mod:`tdlab.core.engine` trains when it stacks members).
- :func:`flatten_` — one model's parameters made views of a ``(1, P)`` buffer, in place
  (what :mod:`tdlab.core.engine` trains when members run one at a time with a named optimizer).
- :func:`flat_grad` — gradients laid out like the buffer.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import stack_module_state

from tdlab.core.config import check_choice

OPTIMIZERS = ("sgd", "adam", "adamw")


def stack(models: list[nn.Module]) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
    """The parameters of E same-shaped models in one ``(E, P)`` buffer, and per-layer views of it.

    Returns ``(flat, params, buffers)``: ``params[name]`` has shape ``(E, *shape)`` and shares its
    memory with ``flat``, so the optimizer updates every layer of every member with a
    handful of operations on ``flat`` instead of a dozen per layer. The views are leaves
    that require grad (what ``functional_call`` and ``autograd.grad`` see).
    """
    stacked, buffers = stack_module_state(models)
    count = len(models)
    flat = torch.cat([p.detach().reshape(count, -1) for p in stacked.values()], dim=1)
    params, offset = {}, 0
    for name, p in stacked.items():
        size = p[0].numel()
        params[name] = flat[:, offset:offset + size].view(p.shape).requires_grad_()
        offset += size
    return flat, params, buffers


def flattenable(model: nn.Module) -> bool:
    """Whether :func:`flatten_` can put ``model``'s trainable parameters in one buffer (one dtype, one device)."""
    return len({(p.dtype, p.device) for p in model.parameters() if p.requires_grad}) == 1


def flatten_(model: nn.Module) -> tuple[torch.Tensor, list[nn.Parameter]]:
    """Make every trainable parameter of ``model`` a view of one ``(1, P)`` buffer, in place.

    Returns ``(flat, params)``; the model keeps working as before (its parameters are
    still ``nn.Parameter`` objects), and an in-place update of ``flat`` updates the model.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    if not flattenable(model):
        raise ValueError("flatten_ needs parameters of one dtype on one device")
    flat = torch.cat([p.detach().reshape(-1) for p in params]).unsqueeze(0)
    offset = 0
    for p in params:
        p.data = flat[0, offset:offset + p.numel()].view_as(p)
        offset += p.numel()
    return flat, params


def flat_grad(params: list[torch.Tensor], grads, members: int) -> torch.Tensor:
    """Gradients (``None`` for an unused parameter) concatenated as a ``(members, P)`` tensor."""
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(members, -1)
                      for p, g in zip(params, grads)], dim=1)


class FlatOptimizer:
    """SGD (with momentum), Adam and AdamW on a flat ``(E, P)`` parameter buffer, with a
    learning rate, weight decay and momentum per member (tensors of shape ``(E,)``).

    The update rules are those of ``torch.optim`` (``foreach=False``), so a member
    matches a separate run. A member that is not ``active`` (it diverged) is frozen:
    its learning rate is 0 and its gradient, which may be NaN, is replaced by 0.
    """

    def __init__(self, name: str, flat: torch.Tensor, betas=(0.9, 0.999), eps: float = 1e-8,
                 nesterov: bool = False):
        check_choice("optimizer", name, OPTIMIZERS)
        self.name, self.flat, self.betas, self.eps, self.nesterov = name, flat, betas, eps, nesterov
        self.momentum_buffer: torch.Tensor | None = None
        self.exp_avg = self.exp_avg_sq = None
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, weight_decay: torch.Tensor,
             momentum: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """One step; ``lr``, ``weight_decay``, ``momentum``, ``active`` have shape (E,) (``active=None``: all)."""
        self.steps += 1
        p = self.flat
        lr, weight_decay = lr.unsqueeze(1), weight_decay.unsqueeze(1)  # (E, 1)
        if active is not None:                                # a learning rate of 0 freezes a member
            lr = torch.where(active.unsqueeze(1), lr, torch.zeros_like(lr))
            grad = torch.where(active.unsqueeze(1), grad, torch.zeros_like(grad))
        if self.name == "sgd":
            d_p = grad + weight_decay * p                     # L2 penalty in the gradient
            momentum = momentum.unsqueeze(1)
            if self.momentum_buffer is None:
                self.momentum_buffer = d_p.clone()
            else:
                self.momentum_buffer.mul_(momentum).add_(d_p)  # b ← μ b + g
            d_p = d_p + momentum * self.momentum_buffer if self.nesterov else self.momentum_buffer
            p.sub_(lr * d_p)                                  # θ ← θ − η b
            return
        beta1, beta2 = self.betas
        if self.name == "adamw":
            p.mul_(1 - lr * weight_decay)                     # decoupled decay: θ ← θ (1 − η λ)
        else:
            grad = grad + weight_decay * p                    # adam: L2 penalty in the gradient
        if self.exp_avg is None:
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(p), torch.zeros_like(p)
        self.exp_avg.lerp_(grad, 1 - beta1)                   # m ← β₁ m + (1 − β₁) g
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v ← β₂ v + (1 − β₂) g²
        bias1 = 1 - beta1 ** self.steps
        bias2 = 1 - beta2 ** self.steps
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(self.eps)  # √v̂ + ε
        p.sub_(self.exp_avg.div(denom).mul_(lr / bias1))     # θ ← θ − η m̂ / (√v̂ + ε)
