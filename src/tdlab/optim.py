"""⊥Grad (OrthoGrad): the gradient of each weight, made orthogonal to the weight.

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

import math
from typing import Callable, Iterable

import torch

from tdlab.config import check_choice, check_range

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


def _check_adam(lr: float, betas: tuple[float, float], eps: float, weight_decay: float) -> None:
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
    _check_adam(lr, betas, eps, weight_decay)

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
    _check_adam(lr, betas, eps, weight_decay)

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


# ----------------------------------------------------------------- SPAM (Huang et al., ICLR 2025)

SPAM_WARMUP_START = 0.99     # the official CosineDecay(0.99, warmup_steps): the update restarts at 1 − 0.99


def spam_warmup(position: int | None, warmup_steps: int) -> float:
    """SPAM's post-reset warm-up multiplier of the update at ``position`` steps after a reset.

    The official ``CosineDecay(0.99, N)`` is ``CosineAnnealingLR`` with ``T_max = N + 1``, read in
    closed form: c = 0.99 · (1 + cos(π·position / (N + 1))) / 2 for position < N, else 0, and the
    update is multiplied by 1 − c (1 % of it at the reset step, all of it N steps later).
    ``position=None`` (no reset yet) is 1: the run's first steps have no such warm-up.
    """
    if position is None or position >= warmup_steps:
        return 1.0
    return 1.0 - SPAM_WARMUP_START * (1 + math.cos(math.pi * position / (warmup_steps + 1))) / 2


class SPAM(torch.optim.Optimizer):
    """SPAM: spike-aware Adam with momentum reset (Huang et al., ICLR 2025; arXiv 2501.06842), as the
    official ``galore_torch/SPAM.py`` (TianjinYellow/SPAM-Optimizer @ e8185fb) steps it, density 1.

    At the k-th call of :meth:`step` (k = 1, 2, ...), for every parameter with a gradient g:

    1. **momentum reset** — when k ≡ 0 (mod ΔT): m ← 0, v ← 0 (every parameter). The per-parameter
       step count t of the bias correction is *not* reset;
    2. **spike clipping** — when k ≥ 20 and k mod ΔT ≥ 20 (``grad_accu_steps``): where
       g² > θ·v (v the *raw* second-moment EMA before this step's update, not bias-corrected),
       g ← sign(g)·√(θ·v);
    3. **Adam** — m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², and
       w ← w − η·s_k·(√(1 − β₂ᵗ)/(1 − β₁ᵗ))·m/(√v + ε), with ε outside the bias correction as the
       released code has it (``torch.optim.Adam`` divides √v by √(1 − β₂ᵗ) first: the two agree when
       ε ≪ √v̂);
    4. **post-reset warm-up** — s_k = :func:`spam_warmup` (k mod ΔT) once a reset has happened, 1 before;
    5. **decoupled weight decay**, after the update: w ← w − η·λ·w (η the group's learning rate,
       which a schedule may scale; the warm-up does not scale the decay).

    ``delta_t=0`` turns the resets (and the warm-up) off — the released code divides by ΔT there, so
    this is our addition — and ``threshold=0`` the clipping (as released); with both off SPAM is
    Adam (AdamW with the decay after the update). The paper's defaults: ΔT = 500, θ = 5000,
    warm-up 150, ε = 10⁻⁶ (the released training script passes its 1000-step learning-rate warm-up
    as ``warmup_steps``).

    ``observer``, if given, is called at each parameter's update as
    ``observer(index, grad, exp_avg_sq, updates, beta2, clipped)`` with the gradient *before*
    clipping, the raw v before this step (after a reset: zeros), the number of updates v holds
    since it was last zeroed, and how many entries were clipped (:class:`tdlab.spikes.SpikeLog`);
    and ``observer.end_step(k)`` after each step, if it has one. ``index`` counts the parameters in
    the order of the param groups.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, delta_t: int = 500, threshold: float = 5000.0,
                 warmup_steps: int = 150, grad_accu_steps: int = 20, observer=None):
        _check_adam(lr, betas, eps, weight_decay)
        check_range("SPAM reset interval ΔT", delta_t, 0)
        if delta_t == 1:
            raise ValueError("SPAM's reset interval ΔT must be 0 (no resets) or at least 2")
        check_range("SPAM threshold θ", threshold, 0)
        check_range("SPAM warm-up steps", warmup_steps, 0)
        check_range("SPAM grad_accu_steps", grad_accu_steps, 0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.delta_t, self.threshold = int(delta_t), float(threshold)
        self.warmup_steps, self.grad_accu_steps = int(warmup_steps), int(grad_accu_steps)
        self.observer = observer
        self.total_step = 0                    # calls of step(): the official state["total_step"]

    def state_dict(self):
        out = super().state_dict()
        out["total_step"] = self.total_step
        return out

    def load_state_dict(self, state_dict) -> None:
        state_dict = dict(state_dict)
        self.total_step = state_dict.pop("total_step", 0)
        super().load_state_dict(state_dict)

    def schedule(self, k: int) -> tuple[bool, bool, float]:
        """At call k (1-based): whether the moments are reset, whether clipping is on, and the warm-up factor."""
        reset = self.delta_t > 0 and k % self.delta_t == 0
        clip = self.threshold > 0 and k >= self.grad_accu_steps and (
            self.delta_t == 0 or k % self.delta_t >= self.grad_accu_steps)
        position = k % self.delta_t if self.delta_t > 0 and k >= self.delta_t else None
        return reset, clip, spam_warmup(position, self.warmup_steps)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        k = self.total_step + 1
        reset, clip, scale = self.schedule(k)
        index = -1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if "exp_avg" not in state:
                    state["step"] = 0
                    state["updates"] = 0                     # updates in v since it was last zeroed
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if reset:                                    # m ← 0, v ← 0; the step count t goes on
                    state["exp_avg"].zero_()
                    state["exp_avg_sq"].zero_()
                    state["updates"] = 0
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                clipped = 0
                observed = grad
                if clip:                                     # g² > θ·v  →  g ← sign(g)·√(θ·v)
                    mask = grad.square() > self.threshold * exp_avg_sq
                    clipped = int(mask.sum())
                    if clipped:
                        grad = torch.where(mask, grad.sign() * (self.threshold * exp_avg_sq).sqrt(), grad)
                if self.observer is not None:
                    self.observer(index, observed, exp_avg_sq, state["updates"], beta2, clipped)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)                   # m ← β₁m + (1 − β₁)g
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)       # v ← β₂v + (1 − β₂)g²
                state["updates"] += 1
                t = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                p.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size * scale)
                if group["weight_decay"] > 0:                                     # w ← w − η λ w
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        self.total_step = k
        end = getattr(self.observer, "end_step", None)
        if end is not None:
            end(k)
        return loss


def spam(*, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0,
         delta_t: int = 500, threshold: float = 5000.0, warmup_steps: int = 150, grad_accu_steps: int = 20,
         observer=None) -> Callable[[Iterable], SPAM]:
    """A factory ``params -> SPAM`` for ``train(optimizer=...)`` / a recipe's ``optimizer`` setting
    (:class:`SPAM`; the paper's defaults). The engine steps it one member at a time (``torch.optim``
    path). ``observer`` is a callable ``() -> observer`` (a :class:`tdlab.spikes.SpikeTracker`'s
    ``new``), called once per optimizer built, or an observer object used as it is."""
    def factory(params):
        watch = observer() if callable(observer) and not hasattr(observer, "end_step") else observer
        return SPAM(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, delta_t=delta_t,
                    threshold=threshold, warmup_steps=warmup_steps, grad_accu_steps=grad_accu_steps, observer=watch)

    SPAM([torch.zeros(1, requires_grad=True)], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
         delta_t=delta_t, threshold=threshold, warmup_steps=warmup_steps, grad_accu_steps=grad_accu_steps)  # checks
    factory.name = "spam" if (delta_t or threshold) else "adam"
    return factory
