"""Sparse training: masks, gradual magnitude pruning and GraNet's zero-cost neuroregeneration.

GraNet (Liu, Chen, Chen, Atashgahi, Yin, Kou, Shen, Pechenizkiy, Wang & Mocanu, NeurIPS 2021,
"Sparse Training via Boosting Pruning Plasticity with Neuroregeneration"; official code
``Shiweiliuiiiiiii/GraNet``, ``CIFAR/sparselearning/core.py``, class ``Masking``) trains a dense
network into a sparse one. Every ΔT steps (``update_every``):

1. **gradual magnitude pruning** (GMP, Zhu & Gupta 2017): the target sparsity follows the cubic
   schedule :func:`cubic_sparsity` and the globally smallest-magnitude weights are removed until
   it is reached (:func:`magnitude_prune`; ``Masking.pruning``);
2. **zero-cost neuroregeneration** (GraNet only): per layer, ⌈r_t · nnz⌉ *more* of the smallest
   active weights are removed and the same number of inactive connections with the largest
   gradient magnitude are switched on (:func:`regenerate`; ``Masking.truncate_weights``,
   ``magnitude_death``, ``gradient_growth``). A regrown connection starts at 0: it was masked to
   zero while inactive. The fraction r_t decays with a cosine from r₀ = 0.5 to 0.005 over the
   whole run (:func:`regrowth_fraction`; ``CosineDecay``).

Between updates the masks are re-applied after every optimizer step, to the weights and to the
momentum buffer (``Masking.apply_mask``). Here all of this is :class:`Pruner`, a ``step_hook`` of
:func:`tdlab.core.engine.run`: it acts on the engine's flat ``(E, P)`` parameter buffer, so E
members — methods, sparsities, seeds — train as one stacked run, each with its own mask.

Masks are ``(E, P)`` float tensors over the flat buffer, 1 where a parameter is kept; only the
*prunable* parameters (every 2-D or 4-D weight, as ``Masking.add_module``; biases stay dense)
can be 0. :func:`plasticity` reads the accuracy recovery after a one-shot pruning step
(the paper's *pruning plasticity*, Sec. 3) from a run's History.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from tdlab.core.config import check_choice, check_range

METHODS = ("dense", "gmp", "granet")
SCOPES = ("global", "layer")


# ----------------------------------------------------------------- schedules


def cubic_sparsity(iteration: float, final: float, start: float, end: float, initial: float = 0.0) -> float:
    """The cubic schedule of gradual magnitude pruning (Zhu & Gupta 2017, Eq. 1; GraNet's ``pruning``):

    s_i = s_f + (s₀ − s_f)(1 − (i − i₀)/(i_f − i₀))³  for i₀ ≤ i ≤ i_f,

    s₀ before i₀ and s_f from i_f on. GraNet writes it with densities d = 1 − s:
    s_i = (1 − d_init) + (d_init − d_final)(1 − decay), decay = (1 − (i − i₀)/(i_f − i₀))³.
    ``start == end`` is one-shot pruning to ``final`` at ``start``.
    """
    check_range("final sparsity", final, 0, 1, high_open=True)
    check_range("initial sparsity", initial, 0, final)
    if iteration < start:
        return initial
    if iteration >= end:
        return final
    decay = (1 - (iteration - start) / (end - start)) ** 3
    return final + (initial - final) * decay


def regrowth_fraction(step: int, steps: int, initial: float = 0.5, minimum: float = 0.005) -> float:
    """GraNet's regrowth fraction r_t: ``CosineDecay(prune_rate, T_max=steps, eta_min=0.005)``,
    r_t = r_min + (r₀ − r_min)(1 + cos(π t / T))/2, read after ``t`` scheduler steps."""
    if initial <= minimum:
        return initial
    return minimum + (initial - minimum) * (1 + math.cos(math.pi * min(step, steps) / steps)) / 2


def kept_count(sparsity: float, total: int) -> int:
    """How many of ``total`` prunable weights survive at ``sparsity``: round((1 − s) · total).

    (The official code keeps the int((1 − s)·N) largest and then only those *strictly* above the
    smallest of them, one fewer; we keep exactly the rounded count, so a schedule's sparsity is
    reached exactly.)"""
    return int(round((1 - sparsity) * total))


# ----------------------------------------------------------------- masks


def prunable(layout: dict[str, tuple[int, int, tuple[int, ...]]], names: Sequence[str] | None = None) -> list[str]:
    """The parameters a mask covers: ``names``, or every 2-D and 4-D weight (linear and conv
    weights; ``Masking.add_module``). ``layout`` is the engine's ``name -> (start, stop, shape)``."""
    if names is not None:
        missing = [n for n in names if n not in layout]
        if missing:
            raise ValueError(f"no parameter {missing[0]!r}; parameters: {list(layout)}")
        return list(names)
    return [name for name, (_, _, shape) in layout.items() if len(shape) in (2, 4)]


def columns(layout, names: Sequence[str]) -> list[slice]:
    """The slices of a flat row that hold each named parameter."""
    return [slice(layout[n][0], layout[n][1]) for n in names]


def dense_mask(members: int, size: int, device=None) -> torch.Tensor:
    """An all-ones ``(E, P)`` mask."""
    return torch.ones(members, size, device=device)


def sparsity_of(mask: torch.Tensor, parts: Sequence[slice]) -> torch.Tensor:
    """Per member, the fraction of the prunable entries the mask removes, shape (E,)."""
    kept = sum(mask[:, part].sum(1) for part in parts)
    total = sum(part.stop - part.start for part in parts)
    return 1 - kept / total


def _keep_largest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """A 0/1 vector with ones at the ``count`` largest ``scores`` (ties broken by index order)."""
    keep = torch.zeros_like(scores)
    if count > 0:
        keep[torch.topk(scores, count, sorted=False).indices] = 1.0
    return keep


@torch.no_grad()
def magnitude_prune(weights: torch.Tensor, mask: torch.Tensor, parts: Sequence[slice], sparsity: float,
                    scope: str = "global") -> torch.Tensor:
    """The mask that keeps the largest-magnitude *active* weights at ``sparsity`` — over all
    prunable parameters at once (``scope="global"``, GraNet's ``pruning``) or per parameter at the
    same sparsity (``"layer"``, ``pruning_uniform`` without its special rule for the classifier).

    ``weights``, ``mask``: ``(E, P)``; ``parts``: the prunable slices. Inactive weights score −1,
    below every active one, so pruning never revives a connection; a mask with fewer active weights
    than the target keeps them all. Returns a new ``(E, P)`` mask.
    """
    check_choice("scope", scope, SCOPES)
    new = mask.clone()
    scores = torch.where(mask > 0, weights.abs(), torch.full_like(weights, -1.0))
    for member in range(weights.shape[0]):
        if scope == "global":
            row = torch.cat([scores[member, part] for part in parts])
            count = min(kept_count(sparsity, row.numel()), int((row >= 0).sum()))
            keep = _keep_largest(row, count)
            offset = 0
            for part in parts:
                size = part.stop - part.start
                new[member, part] = keep[offset:offset + size]
                offset += size
        else:
            for part in parts:
                row = scores[member, part]
                count = min(kept_count(sparsity, row.numel()), int((row >= 0).sum()))
                new[member, part] = _keep_largest(row, count)
    return new


@torch.no_grad()
def regenerate(weights: torch.Tensor, grad: torch.Tensor, mask: torch.Tensor, parts: Sequence[slice],
               fraction: float | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """GraNet's zero-cost neuroregeneration (``truncate_weights``: ``magnitude_death`` then
    ``gradient_growth``), per prunable parameter and member:

    - remove n = ⌈r · nnz⌉ more active weights, the smallest in magnitude;
    - regrow n inactive connections (the just-removed ones included) with the largest |gradient|.

    The number of active weights is unchanged. ``fraction`` r is one number or one per member.
    Returns ``(new_mask, grown)``: ``grown`` marks the connections that were inactive before and
    are active now — their weights are 0 (they were masked), so they start at zero.
    """
    members = weights.shape[0]
    fractions = [float(fraction)] * members if isinstance(fraction, (int, float)) else [float(f) for f in fraction]
    new = mask.clone()
    for member in range(members):
        if fractions[member] <= 0:
            continue
        for part in parts:
            active = mask[member, part] > 0
            nnz = int(active.sum())
            remove = min(math.ceil(fractions[member] * nnz), nnz)
            if remove == 0:
                continue
            magnitude = torch.where(active, weights[member, part].abs(), torch.full_like(active, math.inf,
                                                                                          dtype=weights.dtype))
            dead = torch.topk(magnitude, remove, largest=False, sorted=False).indices
            after = active.clone()
            after[dead] = False                                    # magnitude death
            growth = torch.where(after, torch.full_like(magnitude, -1.0), grad[member, part].abs())
            born = torch.topk(growth, remove, sorted=False).indices
            after[born] = True                                     # gradient growth: the largest |g| among the inactive
            new[member, part] = after.to(mask.dtype)
    grown = (new > 0) & (mask == 0)
    return new, grown


@torch.no_grad()
def apply_mask(flat: torch.Tensor, mask: torch.Tensor, optimizer=None) -> None:
    """Zero the removed weights in place, and their momentum (``Masking.apply_mask``); with Adam
    also its first moment (the official code masks only SGD's momentum buffer)."""
    flat.mul_(mask)
    if optimizer is not None:
        for state in (getattr(optimizer, "momentum_buffer", None), getattr(optimizer, "exp_avg", None)):
            if state is not None:
                state.mul_(mask)


# ----------------------------------------------------------------- the step hook


class Pruner:
    """A ``step_hook`` for :func:`tdlab.core.engine.run`: dense-to-sparse training by gradual magnitude
    pruning (``method="gmp"``) or GraNet (``"granet"``: the same pruning plus zero-cost
    neuroregeneration), or no pruning (``"dense"``, the control).

    Every setting is one value for all members or a list with one value per member (then it is
    recorded in each member's knobs, ``member_settings``); so one stacked run trains methods,
    sparsities and schedules side by side.

    - ``final_sparsity`` s_f, reached at ``prune_end``; pruning starts at ``prune_start``
      (steps; ``prune_start == prune_end`` prunes once, one-shot);
    - ``update_every`` ΔT: pruning and regrowth run at the steps that are multiples of ΔT; the
      schedule's iteration is step // ΔT (``Masking.step``);
    - ``regrowth`` r₀: GraNet's initial regrowth fraction, cosine-decayed to 0.005 over the run;
      regrowth runs from ``prune_start`` to the end of training;
    - ``scope``: ``"global"`` (GraNet, GMP) or ``"layer"`` magnitude pruning;
    - ``names``: the masked parameters (default: every 2-D/4-D weight).

    After a run, ``mask`` holds the ``(E, P)`` masks, ``layout`` and ``parts`` where they lie, and
    ``trace`` one row per update: step, each member's target and measured sparsity, and how many
    connections GraNet regrew.
    """

    def __init__(self, method="granet", final_sparsity=0.9, prune_start=0, prune_end=1000, update_every=50,
                 regrowth=0.5, scope="global", names: Sequence[str] | None = None, minimum_regrowth: float = 0.005):
        self.options = dict(method=method, final_sparsity=final_sparsity, prune_start=prune_start,
                            prune_end=prune_end, update_every=update_every, regrowth=regrowth, scope=scope)
        lists = {k: list(v) for k, v in self.options.items() if isinstance(v, (list, tuple))}
        lengths = {len(v) for v in lists.values()}
        if len(lengths) > 1:
            raise ValueError(f"per-member settings of different lengths: { {k: len(v) for k, v in lists.items()} }")
        self.members = lengths.pop() if lengths else None
        count = self.members or 1
        self.per_member = {k: lists.get(k, [v] * count) for k, v in self.options.items()}
        for m in range(count):
            check_choice("method", self.per_member["method"][m], METHODS)
            check_choice("scope", self.per_member["scope"][m], SCOPES)
            check_range("final sparsity", self.per_member["final_sparsity"][m], 0, 1, high_open=True)
            check_range("update interval", self.per_member["update_every"][m], 1)
            check_range("regrowth fraction", self.per_member["regrowth"][m], 0, 1)
            if self.per_member["prune_end"][m] < self.per_member["prune_start"][m]:
                raise ValueError("prune_end must not come before prune_start")
        self.names, self.minimum_regrowth = names, minimum_regrowth
        self.settings = {k: v for k, v in self.options.items() if k not in lists}
        self.member_settings = ([{k: lists[k][m] for k in lists} for m in range(self.members)]
                                if self.members else None)
        self.mask: torch.Tensor | None = None
        self.layout = self.parts = None
        self.trace: list[dict] = []

    def member(self, index: int) -> "Pruner":
        """A new Pruner with member ``index``'s settings (for members the engine trains one at a time)."""
        return Pruner(**{k: self._setting(k, index) for k in self.options}, names=self.names,
                      minimum_regrowth=self.minimum_regrowth)

    def _setting(self, key: str, member: int):
        values = self.per_member[key]
        return values[member if len(values) > 1 else 0]

    def target(self, step: int, member: int = 0) -> float:
        """The sparsity the schedule asks for at ``step`` (0 before pruning starts, and always for ``dense``)."""
        if self._setting("method", member) == "dense":
            return 0.0
        every = self._setting("update_every", member)
        return cubic_sparsity(step // every, self._setting("final_sparsity", member),
                              self._setting("prune_start", member) // every,
                              self._setting("prune_end", member) // every)

    @torch.no_grad()
    def __call__(self, state) -> None:
        flat, count = state.flat, state.flat.shape[0]
        if self.mask is None:
            if self.members is not None and self.members != count:
                raise ValueError(f"the Pruner has settings for {self.members} members, the run has {count}")
            self.layout = state.layout
            self.parts = columns(state.layout, prunable(state.layout, self.names))
            self.mask = dense_mask(count, flat.shape[1], flat.device)
        apply_mask(flat, self.mask, state.optimizer)     # Masking.step: optimizer.step(), then apply_mask()
        due = [m for m in range(count) if self._setting("method", m) != "dense"
               and state.step % self._setting("update_every", m) == 0
               and state.step >= self._setting("prune_start", m)]
        if due:                                          # then prune and regrow: regrown weights are still 0
            self._update(state, due)
            apply_mask(flat, self.mask, state.optimizer)

    def _update(self, state, due: list[int]) -> None:
        row = {"step": state.step}
        for m in due:
            every = self._setting("update_every", m)
            if state.step // every <= self._setting("prune_end", m) // every:   # up to the schedule's last iteration
                target = self.target(state.step, m)
                pruned = magnitude_prune(state.flat[m:m + 1], self.mask[m:m + 1], self.parts, target,
                                         self._setting("scope", m))
                self.mask[m:m + 1] = pruned
                state.flat[m:m + 1].mul_(pruned)                             # pruned weights are gone before regrowth
            row[f"target {m}"] = self.target(state.step, m)
            if self._setting("method", m) == "granet":
                fraction = regrowth_fraction(state.step, state.steps, self._setting("regrowth", m),
                                             self.minimum_regrowth)
                new, grown = regenerate(state.flat[m:m + 1], state.grad[m:m + 1], self.mask[m:m + 1], self.parts,
                                        fraction)
                self.mask[m:m + 1] = new
                row[f"regrown {m}"] = int(grown.sum())
            row[f"sparsity {m}"] = float(sparsity_of(self.mask[m:m + 1], self.parts)[0])
        self.trace.append(row)

    def monitor(self, ev) -> dict[tuple[str, str], list[float]]:
        """A monitor (:mod:`tdlab.core.monitors`): each member's sparsity of its prunable weights (from its
        mask; 0 before the first step) and the schedule's target, as ``weights``/``sparsity`` and
        ``weights``/``target``."""
        members = ev.members
        measured = [0.0] * members if self.mask is None else self.sparsity()
        return {("weights", "sparsity"): measured,
                ("weights", "target"): [self.target(ev.step, m) for m in range(members)]}

    def sparsity(self) -> list[float]:
        """Each member's measured sparsity of its prunable weights now."""
        return sparsity_of(self.mask, self.parts).tolist()


# ----------------------------------------------------------------- pruning plasticity


def plasticity(history, member: int, control: int, at: int, after: int, split: str = "test") -> dict[str, float]:
    """Accuracy recovery after a pruning step at step ``at`` (GraNet, Sec. 3: *pruning plasticity*,
    the ability of a pruned network to recover the accuracy it had), read from a History that
    evaluated at ``at`` and ``at + after``:

    - ``before``: the accuracy of ``control`` (the dense run: same seed and batches, identical
      to ``member`` until the pruning step) at ``at``;
    - ``pruned``: ``member``'s accuracy right after pruning (the engine evaluates after the hook);
    - ``recovered``: ``member``'s accuracy ``after`` steps later, ``dense later`` the control's;
    - ``drop`` = before − pruned, ``recovery`` = recovered − pruned,
      ``fraction recovered`` = recovery / drop, ``gap to dense`` = dense later − recovered.
    """
    before = history.at_step(split, "acc", at, control)
    pruned = history.at_step(split, "acc", at, member)
    recovered = history.at_step(split, "acc", at + after, member)
    dense_later = history.at_step(split, "acc", at + after, control)
    drop = before - pruned
    return {"before": before, "pruned": pruned, "recovered": recovered, "dense later": dense_later,
            "drop": drop, "recovery": recovered - pruned,
            "fraction recovered": (recovered - pruned) / drop if drop > 0 else math.nan,
            "gap to dense": dense_later - recovered}
