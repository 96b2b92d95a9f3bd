"""The optimizers the loop steps beyond the named ones of :mod:`tdlab.core.flat`, and how it finds them.

- By name or object (:func:`make_optimizer`, the ``torch.optim`` fallback and reference of the flat
  steppers), flat rules (:func:`is_flat_rule`: an object whose ``flat(flat, layout)`` steps the engine's
  ``(E, P)`` buffer — SPAM's, :func:`tdlab.methods.stability.spam.flat_spam`), and how a History names an
  optimizer (:func:`optimizer_name`).
- ⊥Grad (OrthoGrad): the gradient of each weight, made orthogonal to the weight.

Prieto et al., "Grokking at the edge of numerical stability" (ICLR 2025), the ⊥Grad update:
after a network fits its training set, the gradient mostly points along the weights
themselves — scaling the weights up scales the logits and lowers the loss without
changing any prediction (naive loss minimisation, NLM). ⊥Grad removes that
component, per parameter tensor with w and g flattened:

.. math::
    g_\\perp = g - \\frac{\\langle w, g\\rangle}{\\langle w, w\\rangle + 10^{-30}}\\, w,\\qquad
    g \\leftarrow g_\\perp \\cdot \\frac{\\lVert g \\rVert}{\\lVert g_\\perp \\rVert + 10^{-30}},

and then lets an ordinary optimizer step with the new g (official ``orthograd.py``).

**The pitfall this module avoids.** The official script builds the inner AdamW with
only ``lr`` and ``weight_decay`` and then calls ``load_state_dict`` on the wrapper;
that replaces the wrapper's param-group dicts but not the inner optimizer's, so the
paper's ⊥Grad runs step with AdamW's *default* betas (0.9, 0.999) and eps 1e-8 rather
than the β₂ = 0.99, eps = 1e-25 of its other runs. Here :func:`orthograd_adamw` and
:func:`adamw` take betas and eps as required arguments, and the wrapper and its inner
optimizer share the same param-group dicts, so what you pass is what steps (and a
learning-rate schedule applied to the wrapper's groups reaches the inner optimizer).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

from tdlab.core.config import check_choice, check_range
from tdlab.core.flat import OPTIMIZERS, FlatOptimizer

PROJECTION_EPS = 1e-30   # the official wrapper's guard in both denominators


def orthogonal_gradient(weight: torch.Tensor, grad: torch.Tensor, eps: float = PROJECTION_EPS) -> torch.Tensor:
    """The ⊥Grad projection for one tensor: g minus its projection on w, rescaled to ‖g‖; shape of ``grad``."""
    w, g = weight.reshape(-1), grad.reshape(-1)
    g_orth = g - (torch.dot(w, g) / (torch.dot(w, w) + eps)) * w
    g_orth = g_orth * (g.norm(2) / (g_orth.norm(2) + eps))
    return g_orth.view_as(grad)


@torch.no_grad()
def orthogonalize_(params: Iterable[torch.Tensor], eps: float = PROJECTION_EPS) -> None:
    """Replace every ``p.grad`` by :func:`orthogonal_gradient` of ``(p, p.grad)``, in place."""
    for p in params:
        if p.grad is not None:
            p.grad.copy_(orthogonal_gradient(p, p.grad, eps))


class OrthoGrad(torch.optim.Optimizer):
    """⊥Grad: project each parameter's gradient orthogonal to the parameter, keep its norm,
    then step ``base(params, **base_kwargs)`` (Prieto et al. 2025).

    ``base_kwargs`` go to the inner optimizer unchanged: pass every setting you mean
    (for AdamW: ``lr``, ``betas``, ``eps``, ``weight_decay``). The wrapper and the inner
    optimizer share their param groups.
    """

    def __init__(self, params, base: type[torch.optim.Optimizer] = torch.optim.AdamW, **base_kwargs):
        super().__init__(params, {})
        self.base = base(self.param_groups, **base_kwargs)
        self.param_groups = self.base.param_groups    # one set of group dicts for both
        self.state = self.base.state

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            orthogonalize_(group["params"])
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict) -> None:
        # loaded into the inner optimizer, whose groups the wrapper shares: no silent split
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state


def check_adam(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
    check_range("learning rate", lr, 0, low_open=True)
    for name, beta in zip(("beta1", "beta2"), betas):
        check_range(f"AdamW {name}", beta, 0, 1, high_open=True)
    check_range("AdamW eps", eps, 0)
    check_range("weight decay", weight_decay, 0)


def adamw(*, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float = 0.0) -> Callable[[Iterable], torch.optim.Optimizer]:
    """A factory ``params -> AdamW`` with every setting explicit, for ``train(optimizer=...)``.

    The official defaults of Prieto et al. are ``betas=(0.9, 0.99), eps=1e-25``.
    """
    check_adam(lr, betas, eps, weight_decay)

    def factory(params):
        return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    factory.name = "adamw"          # how a History records it
    return factory


def orthograd_adamw(*, lr: float, betas: tuple[float, float], eps: float,
                    weight_decay: float = 0.0) -> Callable[[Iterable], OrthoGrad]:
    """A factory ``params -> OrthoGrad(AdamW)`` with the inner AdamW's settings explicit.

    To replay what the official ⊥Grad runs actually did, pass AdamW's defaults
    ``betas=(0.9, 0.999), eps=1e-8``; for what its flags ask, ``(0.9, 0.99), 1e-25``.
    """
    check_adam(lr, betas, eps, weight_decay)

    def factory(params):
        return OrthoGrad(params, torch.optim.AdamW, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)

    factory.name = "orthograd_adamw"
    return factory


def make(name: str, *, lr: float, betas: tuple[float, float], eps: float,
         weight_decay: float = 0.0) -> Callable[[Iterable], torch.optim.Optimizer]:
    """``"adamw"`` → :func:`adamw`, ``"orthograd_adamw"`` → :func:`orthograd_adamw`."""
    factories = {"adamw": adamw, "orthograd_adamw": orthograd_adamw}
    check_choice("optimizer", name, tuple(factories))
    return factories[name](lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ----------------------------------------------------------------- optimizers by name, flat rules, their names


def make_optimizer(optimizer, parameters, lr: float, weight_decay: float, momentum: float = 0.9,
                   betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, nesterov: bool = False):
    """A ``torch.optim`` optimizer by name (``sgd`` with momentum, ``adam``, ``adamw``), a
    factory ``params -> Optimizer`` called on ``parameters``, or an optimizer object passed through.

    The loop steps the named optimizers with :class:`tdlab.core.flat.FlatOptimizer` (the same
    rules, fewer operations) whenever it can; this is the fallback and the reference.
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if callable(optimizer):
        return optimizer(parameters)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(parameters, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


def is_flat_rule(optimizer) -> bool:
    """Whether ``optimizer`` is a flat rule: ``optimizer.flat(flat, layout)`` makes the stepper of a flat
    ``(E, P)`` buffer (SPAM's :class:`tdlab.methods.stability.spam.SPAMRule`), which the loop stacks like a named optimizer."""
    return not isinstance(optimizer, str) and callable(getattr(optimizer, "flat", None))


def flat_optimizer(optimizer, flat: torch.Tensor, layout: dict, betas, eps: float, nesterov: bool):
    """The stepper of a flat buffer: a :class:`~tdlab.core.flat.FlatOptimizer` by name, or a flat rule's."""
    if is_flat_rule(optimizer):
        return optimizer.flat(flat, layout)
    return FlatOptimizer(optimizer, flat, betas=betas, eps=eps, nesterov=nesterov)


def optimizer_name(optimizer) -> str:
    """How a History names an optimizer: its name, a factory's ``name`` attribute, or its class."""
    if isinstance(optimizer, str):
        return optimizer
    return getattr(optimizer, "name", None) or getattr(optimizer, "__name__", None) or type(optimizer).__name__


_MOVED_TO_SPAM = ("SPAM", "FlatSPAM", "SPAMRule", "spam", "flat_spam", "spam_warmup", "SPAM_WARMUP_START",
                  "SPAM_MEMBER_KNOBS", "SPAM_KNOB_DEFAULTS")


def __getattr__(name: str):
    """SPAM moved out of the core: say where (the core imports no paper's method, even lazily)."""
    if name in _MOVED_TO_SPAM:
        raise AttributeError(f"tdlab.core.optim.{name} moved to tdlab.methods.stability.spam.{name} "
                             "(SPAM is a paper's method: import it from there)")
    raise AttributeError(f"module 'tdlab.core.optim' has no attribute {name!r}")
