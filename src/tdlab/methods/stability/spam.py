"""SPAM, Spike-Aware Adam with Momentum Reset (Huang et al., ICLR 2025; arXiv 2501.06842).

The optimizer as the official ``galore_torch/SPAM.py`` steps it (:class:`SPAM`, a ``torch.optim``
optimizer, the reference), and the same steps on the engine's flat ``(E, P)`` buffer for E stacked runs
with their own ΔT, θ and switches (:class:`FlatSPAM`, built by the flat rule :func:`flat_spam` /
:class:`SPAMRule`). What the chapter measures with it — spike scores, the step-size multiplier after a
reset — is in :mod:`tdlab.methods.stability.spikes`. (Until this release it lived in
:mod:`tdlab.core.optim`.)
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from tdlab.core.config import check_range
from tdlab.core.optim import check_adam


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
    Adam (AdamW with the decay after the update).

    Two switches of ours, both off by default (the released step): ``reset_count=True`` resets the
    bias-correction count t to 0 together with m and v at a reset (SPAM without the larger post-reset
    steps, :func:`tdlab.methods.stability.spikes.spam_step_multiplier`); ``clip_norm=c > 0`` first scales the whole
    gradient (all parameters together) to a global L2 norm of at most c, as the official training
    script's ``--grad_clipping`` does with ``torch.nn.utils.clip_grad_norm_`` before the optimizer step
    (``torchrun_main.py``; with ΔT = θ = 0 it is Adam with global gradient clipping).

    The paper's defaults: ΔT = 500, θ = 5000, warm-up 150, ε = 10⁻⁶ (the released training script passes its 1000-step learning-rate warm-up
    as ``warmup_steps``).

    ``observer``, if given, is called at each parameter's update as
    ``observer(index, grad, exp_avg_sq, updates, beta2, clipped)`` with the gradient *before*
    clipping, the raw v before this step (after a reset: zeros), the number of updates v holds
    since it was last zeroed, and how many entries were clipped (:class:`tdlab.methods.stability.spikes.SpikeLog`);
    and ``observer.end_step(k)`` after each step, if it has one. ``index`` counts the parameters in
    the order of the param groups.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, delta_t: int = 500, threshold: float = 5000.0,
                 warmup_steps: int = 150, grad_accu_steps: int = 20, observer=None, reset_count: bool = False,
                 clip_norm: float = 0.0):
        check_adam(lr, betas, eps, weight_decay)
        _check_spam(delta_t, threshold, warmup_steps, grad_accu_steps)
        check_range("SPAM clip_norm", clip_norm, 0)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.delta_t, self.threshold = int(delta_t), float(threshold)
        self.warmup_steps, self.grad_accu_steps = int(warmup_steps), int(grad_accu_steps)
        self.observer = observer
        self.reset_count, self.clip_norm = bool(reset_count), float(clip_norm)
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
        factor = 1.0
        if self.clip_norm > 0:                                # clip_grad_norm_: g ← g·min(1, c/‖g‖)
            grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
            norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
            factor = min(1.0, self.clip_norm / (norm + 1e-6))
        index = -1
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                index += 1
                if p.grad is None:
                    continue
                grad = p.grad if factor == 1.0 else p.grad * factor
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
                    if self.reset_count:                     # our switch: t ← 0 as well
                        state["step"] = 0
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
         observer=None, reset_count: bool = False, clip_norm: float = 0.0) -> Callable[[Iterable], SPAM]:
    """A factory ``params -> SPAM`` for ``train(optimizer=...)`` / a recipe's ``optimizer`` setting
    (:class:`SPAM`; the paper's defaults). The engine steps it one member at a time (``torch.optim``
    path: the reference; :func:`flat_spam` is the same rule stacked). ``observer`` is a callable ``() -> observer`` (a :class:`tdlab.methods.stability.spikes.SpikeTracker`'s
    ``new``), called once per optimizer built, or an observer object used as it is."""
    def factory(params):
        watch = observer() if callable(observer) and not hasattr(observer, "end_step") else observer
        return SPAM(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, delta_t=delta_t,
                    threshold=threshold, warmup_steps=warmup_steps, grad_accu_steps=grad_accu_steps, observer=watch,
                    reset_count=reset_count, clip_norm=clip_norm)

    SPAM([torch.zeros(1, requires_grad=True)], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
         delta_t=delta_t, threshold=threshold, warmup_steps=warmup_steps, grad_accu_steps=grad_accu_steps,
         reset_count=reset_count, clip_norm=clip_norm)  # checks
    factory.name = "spam" if (delta_t or threshold) else "adam"
    return factory


# ----------------------------------------------------------------- SPAM on the engine's flat (E, P) buffer

# what may differ between stacked members
SPAM_MEMBER_KNOBS = ("delta_t", "threshold", "warmup_steps", "beta2", "reset_count", "clip_norm")
SPAM_KNOB_DEFAULTS = {"reset_count": False, "clip_norm": 0.0}   # knobs a member's dict may leave out: the released step


class FlatSPAM:
    """:class:`SPAM`'s step on a flat ``(E, P)`` parameter buffer (:mod:`tdlab.core.flat`): E members in a few
    tensor operations per step, each with its own ΔT, θ, warm-up and β₂ (``knobs``: lists of E values)
    and, from the engine, its own learning rate and weight decay.

    The arithmetic is :class:`SPAM`'s, step for step (the tests compare E members with E separate
    :class:`SPAM` runs): at call k, for member e,

    1. reset m_e, v_e ← 0 when ΔT_e > 0 and k ≡ 0 (mod ΔT_e); the bias-correction count t = k goes on;
    2. clip where g² > θ_e·v_e (the raw v before the update) when θ_e > 0, k ≥ 20 and
       (ΔT_e = 0 or k mod ΔT_e ≥ 20): g ← sign(g)·√(θ_e·v_e);
    3. m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
       w ← w − η·s·(√(1 − β₂ᵗ)/(1 − β₁ᵗ))·m/(√v + ε) (ε outside the bias correction);
    4. s = :func:`spam_warmup` (k mod ΔT_e) once member e has been reset, else 1;
    5. w ← w − η·λ·w after the update.

    With ``reset_count`` (per member) step 1 also resets that member's count: t = the updates since the
    reset. With ``clip_norm`` c_e > 0 the member's whole gradient (its row of the buffer) is first
    scaled to an L2 norm of at most c_e (``clip_grad_norm_`` per member; :class:`SPAM`).

    Resets, clipping and the warm-up differ per member: they are (E, 1) masks and factors. A
    member that is not ``active`` (diverged) gets learning rate 0 and gradient 0. Every parameter is
    updated at every step (a parameter without a gradient gets a zero one, as in
    :class:`tdlab.core.flat.FlatOptimizer`; :class:`SPAM` would skip it).

    ``observer``, if given, is called once per step as ``observer(grad, exp_avg_sq, updates, beta2,
    clipped)`` — the (E, P) gradient before clipping, v before the update (zeros after a reset), the
    (E,) number of updates v holds, β₂ as (E, 1) and the (E,) entries clipped — and ``observer.end_step(k)``
    after it (:meth:`tdlab.methods.stability.spikes.SpikeTracker.new_flat`).
    """

    def __init__(self, flat: torch.Tensor, knobs: dict[str, list], beta1: float = 0.9, eps: float = 1e-6,
                 grad_accu_steps: int = 20, observer=None):
        members, device = flat.shape[0], flat.device
        knobs = {**{k: [d] * members for k, d in SPAM_KNOB_DEFAULTS.items()}, **knobs}
        for key in SPAM_MEMBER_KNOBS:
            if len(knobs[key]) != members:
                raise ValueError(f"SPAM's {key} has {len(knobs[key])} values for {members} members")
        column = lambda key, dtype: torch.tensor(knobs[key], dtype=dtype, device=device).unsqueeze(1)  # noqa: E731
        self.flat, self.beta1, self.eps, self.grad_accu_steps = flat, beta1, eps, grad_accu_steps
        self.delta_t = column("delta_t", torch.long)                   # (E, 1)
        self.threshold = column("threshold", flat.dtype)
        self.warmup_steps = column("warmup_steps", torch.float64)
        self.beta2 = column("beta2", torch.float64)
        self.reset_count = column("reset_count", torch.bool)
        self.clip_norm = column("clip_norm", flat.dtype)
        self.observer = observer
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(flat), torch.zeros_like(flat)
        self.updates = torch.zeros(members, dtype=torch.long, device=device)   # updates in v since it was zeroed
        self.steps = 0                                                   # calls of step(): SPAM's total_step

    def schedule(self, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """At call k, per member (E, 1): whether the moments are reset, whether clipping is on, the warm-up factor
        (:meth:`SPAM.schedule`, in float64)."""
        resets = self.delta_t > 0
        position = k % self.delta_t.clamp(min=1)
        reset = resets & (position == 0)
        clip = (self.threshold > 0) & (k >= self.grad_accu_steps) & (~resets | (position >= self.grad_accu_steps))
        warming = resets & (k >= self.delta_t) & (position < self.warmup_steps)
        ramp = 1 - SPAM_WARMUP_START * (1 + torch.cos(math.pi * position.double() / (self.warmup_steps + 1))) / 2
        return reset, clip, torch.where(warming, ramp, torch.ones_like(ramp))

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, weight_decay: torch.Tensor,
             momentum: torch.Tensor | None = None, active: torch.Tensor | None = None) -> None:
        """One step; ``lr`` and ``weight_decay`` have shape (E,) (``momentum`` is ignored: β₁ is SPAM's)."""
        self.steps = k = self.steps + 1
        p, m, v = self.flat, self.exp_avg, self.exp_avg_sq
        lr, weight_decay = lr.unsqueeze(1), weight_decay.unsqueeze(1)              # (E, 1)
        if active is not None:                                # a learning rate of 0 freezes a member
            lr = torch.where(active.unsqueeze(1), lr, torch.zeros_like(lr))
            grad = torch.where(active.unsqueeze(1), grad, torch.zeros_like(grad))
        reset, clip, scale = self.schedule(k)
        if bool((self.clip_norm > 0).any()):                 # per member: g ← g·min(1, c/‖g‖)
            norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
            factor = (self.clip_norm / (norm + 1e-6)).clamp(max=1)
            grad = torch.where(self.clip_norm > 0, grad * factor, grad)
        if bool(reset.any()):                                 # m ← 0, v ← 0 for the members at a reset
            m.masked_fill_(reset, 0)
            v.masked_fill_(reset, 0)
            self.updates.masked_fill_(reset.squeeze(1), 0)
        observed = grad
        clipped = torch.zeros_like(self.updates)
        if bool(clip.any()):                                  # g² > θ·v  →  g ← sign(g)·√(θ·v)
            limit = self.threshold * v
            mask = clip & (grad.square() > limit)
            clipped = mask.sum(1)
            grad = torch.where(mask, grad.sign() * limit.sqrt(), grad)
        beta2, rest = self.beta2.to(p.dtype), (1 - self.beta2).to(p.dtype)    # β₂ and 1 − β₂ rounded as SPAM's
        if self.observer is not None:
            self.observer(observed, v, self.updates, self.beta2, clipped)
        m.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)                  # m ← β₁m + (1 − β₁)g
        v.mul_(beta2).add_(rest * grad * grad)                               # v ← β₂v + (1 − β₂)g²
        self.updates += 1
        t = torch.where(self.reset_count, self.updates.unsqueeze(1), torch.full_like(self.reset_count, k,
                                                                                   dtype=torch.long)).double()
        correction = (1 - self.beta2 ** t).sqrt() / (1 - self.beta1 ** t)   # √(1 − β₂ᵗ)/(1 − β₁ᵗ), t = k or n
        p.sub_(m / (v.sqrt() + self.eps) * (lr * (correction * scale).to(p.dtype)))
        if bool((weight_decay > 0).any()):                                  # w ← w − η λ w
            p.sub_(p * (lr * weight_decay))
        end = getattr(self.observer, "end_step", None)
        if end is not None:
            end(k)


class SPAMRule:
    """SPAM as a *flat rule* of :func:`tdlab.core.engine.run`: the engine steps its members together on the
    flat ``(E, P)`` buffer with :class:`FlatSPAM` (learning rate and weight decay from the engine's
    knobs), instead of one member at a time with a ``torch.optim`` factory.

    ``members``: one dict of :data:`SPAM_MEMBER_KNOBS` for every member, or one dict for all of them.
    ``observer``: ``observer(layout, members)`` makes the step's observer
    (:meth:`tdlab.methods.stability.spikes.SpikeTracker.new_flat`), called once per engine call. Build one with
    :func:`flat_spam`; :meth:`per_member` joins single-member rules (a recipe's ``per_member``
    derivation).
    """

    def __init__(self, members: list[dict], *, beta1: float = 0.9, eps: float = 1e-6, grad_accu_steps: int = 20,
                 observer=None, settings: list[dict] | None = None):
        for knobs in members:
            _check_spam(knobs["delta_t"], knobs["threshold"], knobs["warmup_steps"], grad_accu_steps)
            check_range("AdamW beta2", knobs["beta2"], 0, 1, high_open=True)
            check_range("SPAM clip_norm", knobs.get("clip_norm", 0.0), 0)
        check_range("AdamW beta1", beta1, 0, 1, high_open=True)
        check_range("AdamW eps", eps, 0)
        self.members = [{k: knobs[k] if k in knobs else SPAM_KNOB_DEFAULTS[k] for k in SPAM_MEMBER_KNOBS}
                        for knobs in members]
        self.beta1, self.eps, self.grad_accu_steps, self.observer = beta1, eps, grad_accu_steps, observer
        if settings is not None and len(settings) != len(self.members):
            raise ValueError(f"settings for {len(settings)} members, a rule of {len(self.members)}")
        self.settings = settings                  # knobs to record per member (a recipe's derivation's)

    @staticmethod
    def label(knobs: dict) -> str:
        """``"spam"``, or ``"adam"`` when resets and clipping are off (what a History records)."""
        return "spam" if (knobs["delta_t"] or knobs["threshold"]) else "adam"

    @property
    def name(self) -> str:
        names = {self.label(k) for k in self.members}
        return names.pop() if len(names) == 1 else "spam"

    @property
    def member_settings(self) -> list[dict] | None:
        """Per member: its ``settings`` and its optimizer's name (recorded in its knobs); ``None`` for one
        setting shared by all members."""
        if len(self.members) == 1 and self.settings is None:
            return None
        extra = self.settings or [{} for _ in self.members]
        return [{**e, "optimizer": self.label(k)} for e, k in zip(extra, self.members)]

    def member(self, index: int) -> "SPAMRule":
        """Member ``index``'s rule alone (members trained one at a time)."""
        return SPAMRule([self.members[index]], beta1=self.beta1, eps=self.eps, grad_accu_steps=self.grad_accu_steps,
                        observer=self.observer, settings=None if self.settings is None else [self.settings[index]])

    @classmethod
    def per_member(cls, rules: list["SPAMRule"], settings: list[dict] | None = None) -> "SPAMRule":
        """One rule whose member m steps as ``rules[m]`` (each of one setting; the shared ones must agree).
        ``settings``, one dict per member, join each member's knobs."""
        first = rules[0]
        shared = {(r.beta1, r.eps, r.grad_accu_steps) for r in rules}
        if (len(shared) != 1 or any(r.observer != first.observer for r in rules)   # a tracker's bound new_flat: ==
                or any(len(r.members) != 1 for r in rules)):
            raise ValueError("SPAM rules stack only when they differ in ΔT, θ, warm-up and β₂ alone")
        return cls([r.members[0] for r in rules], beta1=first.beta1, eps=first.eps,
                   grad_accu_steps=first.grad_accu_steps, observer=first.observer, settings=settings)

    def flat(self, flat: torch.Tensor, layout: dict) -> FlatSPAM:
        """The stepper of one engine call: E = ``flat.shape[0]`` members laid out as ``layout``."""
        count = flat.shape[0]
        members = self.members * count if len(self.members) == 1 else self.members
        if len(members) != count:
            raise ValueError(f"a SPAM rule of {len(members)} members for an engine call of {count}")
        observer = self.observer(layout, count) if self.observer is not None else None
        return FlatSPAM(flat, {k: [m[k] for m in members] for k in SPAM_MEMBER_KNOBS}, self.beta1, self.eps,
                        self.grad_accu_steps, observer)


def _check_spam(delta_t: int, threshold: float, warmup_steps: int, grad_accu_steps: int) -> None:
    check_range("SPAM reset interval ΔT", delta_t, 0)
    if delta_t == 1:
        raise ValueError("SPAM's reset interval ΔT must be 0 (no resets) or at least 2")
    check_range("SPAM threshold θ", threshold, 0)
    check_range("SPAM warm-up steps", warmup_steps, 0)
    check_range("SPAM grad_accu_steps", grad_accu_steps, 0)


def flat_spam(*, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, delta_t: int = 500,
              threshold: float = 5000.0, warmup_steps: int = 150, grad_accu_steps: int = 20,
              observer=None, reset_count: bool = False, clip_norm: float = 0.0) -> SPAMRule:
    """SPAM for the engine's stacked path (:class:`SPAMRule`; the paper's defaults): pass it as
    ``optimizer`` of :func:`tdlab.core.engine.run`, which then takes the learning rate and weight decay
    per member from its knobs. ``observer``: ``(layout, members) -> observer``, e.g. a
    :class:`tdlab.methods.stability.spikes.SpikeTracker`'s ``new_flat``. :func:`spam` is the ``torch.optim`` reference."""
    return SPAMRule([{"delta_t": int(delta_t), "threshold": float(threshold), "warmup_steps": int(warmup_steps),
                      "beta2": float(betas[1]), "reset_count": bool(reset_count), "clip_norm": float(clip_norm)}],
                    beta1=float(betas[0]), eps=eps, grad_accu_steps=grad_accu_steps,
                    observer=observer)
