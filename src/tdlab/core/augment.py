"""Batch transforms for the training loop's ``batch_hook``: they take and return a
:class:`tdlab.core.train.Batch` and run on the device, on whole batches.

- :func:`crop_flip` — random crop with zero padding and horizontal flip, the CIFAR
  augmentation of ELR, mixup and CutMix (``RandomCrop(32, padding=4)`` +
  ``RandomHorizontalFlip``), as one gather per batch.
- :func:`mixup`, :func:`cutmix` — mixing within a batch (one λ and one permutation per
  batch, as the official code), with soft targets for ``loss="soft_ce"``, an optional
  switch-off step (early-stopped mixup) and a label coefficient λ' = g(λ).
- :func:`cutout` — one zeroed square per image.
- :func:`compose` — several hooks in a row (crop and flip, then mix).
- :func:`per_member` — one hook per member of a stacked sweep (ERM, mixup and early-stopped
  mixup trained together), their batches stacked member by member.

Every hook carries its ``settings`` (names prefixed by the hook: ``mixup_alpha``,
``cutmix_prob``, ...), which the training loop records in the run's History; a hook
whose strength is 0 (``mixup(0)``, ``cutmix(prob=0)``) returns its batches unchanged, so
"the knob off" is a run like any other, with its settings recorded.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from tdlab.core.config import check_range
from tdlab.core.monitors import evaluating


def _require_images(x: torch.Tensor, who: str) -> None:
    """Raise a ValueError unless ``x`` is a batch of images (B, C, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"{who} needs image batches (B, C, H, W), got shape {tuple(x.shape)}")


def crop_flip(padding: int = 4, flip: bool = True, seed: int = 0):
    """A batch hook: pad by ``padding`` zeros, crop back at a random offset, flip half the images."""
    check_range("padding", padding, 0)
    generator: dict[str, torch.Generator] = {}

    def hook(batch):
        x = batch.x
        _require_images(x, "crop_flip")
        gen = generator.setdefault("g", torch.Generator(device=x.device).manual_seed(seed))
        n, _, height, width = x.shape
        padded = F.pad(x, (padding,) * 4)
        top = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        left = torch.randint(0, 2 * padding + 1, (n,), generator=gen, device=x.device)
        rows = (top[:, None] + torch.arange(height, device=x.device))[:, :, None]     # (B, H, 1)
        cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, :]     # (B, 1, W)
        if flip:
            mirrored = torch.rand(n, generator=gen, device=x.device) < 0.5
            cols = torch.where(mirrored[:, None, None], cols.flip(-1), cols)
        images = torch.arange(n, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[images, rows, cols].permute(0, 3, 1, 2)
        return dataclasses.replace(batch, x=out.contiguous())

    hook.settings = {"crop_padding": padding, "crop_flip": flip}
    return hook


# ----------------------------------------------------------------- mixing within a batch
#
# mixup (Zhang et al., ICLR 2018; facebookresearch/mixup-cifar10 ``mixup_data``) and
# CutMix (Yun et al., ICCV 2019; clovaai/CutMix-PyTorch ``rand_bbox``) as the official
# code does them: ONE coefficient λ ~ Beta(α, α) and ONE permutation π per batch (and,
# for CutMix, one box per batch). The hooks return the targets as soft labels of shape
# (..., B, C) — the mixed one-hot  λ'·e_y + (1 − λ')·e_{y_π}  — which the loss
# ``"soft_ce"`` of :mod:`tdlab.core.losses` takes. Because cross-entropy is linear in the
# target, CE(z, λ'e_y + (1 − λ')e_{y_π}) = λ'·CE(z, y) + (1 − λ')·CE(z, y_π), the
# official ``mixup_criterion``. Integer targets of shape (E, B) (a batched sweep, one
# label draw per member) become soft labels (E, B, C); the inputs are shared by all
# members, so every member sees the same mixed images.
#
# On a step where nothing is mixed (after ``stop_after``, or CutMix's coin says no) the
# batch is returned unchanged, with its integer labels: plain ERM, which "soft_ce" also
# takes. Each hook restarts its random stream at step 1, so one hook object reused for
# two runs gives the same draws in both.


def label_identity(lam: float) -> float:
    """g(λ) = λ: the standard mixup label coefficient."""
    return lam


def label_power(gamma: float):
    """g(λ) = λ^γ / (λ^γ + (1 − λ)^γ): a label coefficient that differs from λ.

    γ > 1 pushes the label towards the dominant input (γ → ∞ is the hard label of the
    input with the larger share), γ < 1 towards ½ (γ = 0 gives ½ for every λ). g is
    symmetric, g(1 − λ) = 1 − g(λ), and g(½) = ½. Zou et al. (ICML 2023) report that
    mixup with a label coefficient λ' = g(λ) ≠ λ works about as well as standard mixup;
    their exact choices of g are not in our notes, so this family is ours.
    """
    check_range("gamma", gamma, 0)

    def g(lam: float) -> float:
        if gamma == 0:
            return 0.5
        a, b = lam ** gamma, (1.0 - lam) ** gamma
        return a / (a + b)

    g.__name__ = f"label_power({gamma:g})"
    return g


def soft_labels(y: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """Integer labels (..., B) as one-hot float targets (..., B, C); float targets pass through."""
    if y.is_floating_point():
        if y.shape[-1] != num_classes:
            raise ValueError(f"soft targets must have {num_classes} classes on the last axis, got {tuple(y.shape)}")
        return y
    return F.one_hot(y, num_classes).to(dtype)


def mix_targets(y: torch.Tensor, perm: torch.Tensor, lam_label: float, num_classes: int,
                dtype=torch.float32) -> torch.Tensor:
    """λ'·e_y + (1 − λ')·e_{y_π}: soft targets (..., B, C), the permutation on the B axis."""
    onehot = soft_labels(y, num_classes, dtype)
    return lam_label * onehot + (1.0 - lam_label) * onehot[..., perm, :]


def _dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.is_floating_point() else torch.float32


def _check_mixing(name: str, alpha: float, num_classes: int, stop_after: int | None) -> None:
    check_range(name, alpha, 0)
    check_range("num_classes", num_classes, 2)
    if stop_after is not None:
        check_range("stop_after", stop_after, 0)


class _Stream:
    """The hook's random state: a generator (restarted at step 1) and NumPy's Beta draw."""

    def __init__(self, seed: int):
        self.seed = seed
        self.gen: torch.Generator | None = None
        self.rng: np.random.Generator | None = None

    def start(self, batch) -> None:
        if self.gen is None or batch.step == 1:
            self.gen = torch.Generator().manual_seed(self.seed)
            self.rng = np.random.default_rng(self.seed)

    def beta(self, alpha: float) -> float:
        return float(self.rng.beta(alpha, alpha)) if alpha > 0 else 1.0

    def permutation(self, n: int, device) -> torch.Tensor:
        return torch.randperm(n, generator=self.gen).to(device)

    def uniform(self) -> float:
        return float(torch.rand((), generator=self.gen))

    def integer(self, high: int) -> int:
        return int(torch.randint(0, high, (), generator=self.gen))


def mixup(alpha: float = 1.0, num_classes: int = 10, *, stop_after: int | None = None,
          label_map: Callable[[float], float] | None = None, seed: int = 0, start_after: int | None = None):
    r"""A batch hook: mixup, with an optional switch-off step and label coefficient map.

    Per batch (``mixup_data`` of the official code): λ ~ Beta(α, α) (λ = 1 when α = 0),
    a permutation π of the batch, and

    .. math::
        \tilde x = \lambda x + (1-\lambda) x_\pi, \qquad
        \tilde y = \lambda' e_y + (1-\lambda') e_{y_\pi}, \quad \lambda' = g(\lambda).

    - ``label_map`` g: ``None`` is standard mixup (λ' = λ); e.g. :func:`label_power`
      gives the λ' ≠ λ variant of Zou et al. (ICML 2023).
    - ``stop_after``: Zou et al.'s *early-stopped mixup* — steps after this one are
      plain ERM (the batch is returned unchanged). ``None`` mixes throughout.
    - ``start_after``: the reverse, *late* mixup (the control of early-stopped mixup) — steps up to
      and including this one are plain ERM. Their λ and π are still drawn, so every later step mixes
      exactly as mixup throughout does. ``None`` (the default) mixes from the first step.

    Use it with ``loss="soft_ce"``. The last draw is kept in ``hook.last`` (λ, λ', π)
    for inspection and tests.
    """
    _check_mixing("mixup alpha", alpha, num_classes, stop_after)
    if start_after is not None:
        check_range("start_after", start_after, 0)
    g = label_map or label_identity
    stream = _Stream(seed)

    def hook(batch):
        if alpha == 0:                 # no mixing: ERM
            return batch
        stream.start(batch)
        if stop_after is not None and batch.step > stop_after:
            return batch
        lam = stream.beta(alpha)
        perm = stream.permutation(batch.x.shape[0], batch.x.device)
        if start_after is not None and batch.step <= start_after:
            return batch               # late mixup: plain ERM until start_after (the draws above are spent)
        lam_label = float(g(lam))
        hook.last = {"lam": lam, "lam_label": lam_label, "perm": perm}
        x = lam * batch.x + (1.0 - lam) * batch.x[perm]
        return dataclasses.replace(batch, x=x, y=mix_targets(batch.y, perm, lam_label, num_classes, _dtype(x)))

    hook.last = None
    hook.settings = {"mixup_alpha": alpha, "mixup_stop_after": stop_after, "mixup_label_map": g.__name__}
    if start_after is not None:
        hook.settings["mixup_start_after"] = start_after
    return hook


def rand_bbox(height: int, width: int, lam: float, cy: int, cx: int) -> tuple[int, int, int, int]:
    """CutMix's box (official ``rand_bbox``): sides int(H·r), int(W·r) with r = √(1 − λ),
    centred at (cy, cx), edges clipped to the image. Returns (top, bottom, left, right)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return top, bottom, left, right


def cutmix(beta: float = 1.0, num_classes: int = 10, *, prob: float = 1.0, stop_after: int | None = None,
           label_map: Callable[[float], float] | None = None, seed: int = 0):
    r"""A batch hook: CutMix (official ``train.py`` of clovaai/CutMix-PyTorch).

    With probability ``prob`` per batch (the code's ``cutmix_prob``): λ ~ Beta(β, β), a
    permutation π, one box from :func:`rand_bbox` with a uniform centre, x_π pasted into x
    inside the box, and λ recomputed from the real (clipped) box,
    λ = 1 − (box area)/(H·W). Targets: λ'·e_y + (1 − λ')·e_{y_π} with λ' = g(λ) (g = identity
    by default). ``stop_after`` switches it off after that step, as for :func:`mixup`.
    The last draw is in ``hook.last`` (λ, λ', π, box).
    """
    _check_mixing("CutMix beta", beta, num_classes, stop_after)
    check_range("CutMix prob", prob, 0, 1)
    g = label_map or label_identity
    stream = _Stream(seed)

    def hook(batch):
        stream.start(batch)
        x = batch.x
        _require_images(x, "cutmix")
        if stop_after is not None and batch.step > stop_after:
            return batch
        if beta <= 0 or stream.uniform() >= prob:
            hook.last = None
            return batch
        _, _, height, width = x.shape
        lam = stream.beta(beta)
        perm = stream.permutation(x.shape[0], x.device)
        cy, cx = stream.integer(height), stream.integer(width)
        top, bottom, left, right = rand_bbox(height, width, lam, cy, cx)
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        lam_label = float(g(lam))
        mixed = x.clone()
        mixed[:, :, top:bottom, left:right] = x[perm][:, :, top:bottom, left:right]
        hook.last = {"lam": lam, "lam_label": lam_label, "perm": perm, "box": (top, bottom, left, right)}
        return dataclasses.replace(batch, x=mixed, y=mix_targets(batch.y, perm, lam_label, num_classes, _dtype(x)))

    hook.last = None
    hook.settings = {"cutmix_beta": beta, "cutmix_prob": prob, "cutmix_stop_after": stop_after,
                     "cutmix_label_map": g.__name__}
    return hook


def cutout(size: int, *, prob: float = 1.0, seed: int = 0):
    """A batch hook: Cutout (DeVries & Taylor 2017) — zero one size×size square per image,
    centred uniformly and clipped at the borders; labels unchanged. With ``prob`` < 1 each
    image is cut with that probability."""
    check_range("cutout size", size, 0)
    check_range("cutout prob", prob, 0, 1)
    stream = _Stream(seed)

    def hook(batch):
        stream.start(batch)
        x = batch.x
        _require_images(x, "cutout")
        n, _, height, width = x.shape
        cy = torch.randint(0, height, (n,), generator=stream.gen).to(x.device)
        cx = torch.randint(0, width, (n,), generator=stream.gen).to(x.device)
        on = (torch.rand(n, generator=stream.gen) < prob).to(x.device)
        rows = torch.arange(height, device=x.device)[None, :, None]
        cols = torch.arange(width, device=x.device)[None, None, :]
        half = size // 2
        inside = ((rows >= (cy - half)[:, None, None]) & (rows < (cy - half + size)[:, None, None])
                  & (cols >= (cx - half)[:, None, None]) & (cols < (cx - half + size)[:, None, None]))
        inside = inside & on[:, None, None]
        return dataclasses.replace(batch, x=x * (~inside)[:, None].to(x.dtype))

    hook.settings = {"cutout_size": size, "cutout_prob": prob}
    return hook


def compose(*hooks):
    """One batch hook that applies ``hooks`` in order (``None`` entries are skipped), e.g.
    ``compose(crop_flip(), mixup(1.0))``: crop and flip each image, then mix the batch."""
    chain = [h for h in hooks if h is not None]

    def hook(batch):
        for h in chain:
            batch = h(batch)
        return batch

    hook.settings = {k: v for h in chain for k, v in (getattr(h, "settings", None) or {}).items()}
    return hook


def per_member(hooks: list, settings: list[dict] | None = None):
    """One batch hook for E members trained together, member m's batch made by ``hooks[m]``.

    Each hook sees the shared batch with member m's targets (1, B) and returns its own; the inputs
    are stacked to (E, B, ...) (``Batch.per_member``; the engine then runs member m on its own
    inputs), the targets to (E, B), or to soft targets (E, B, C) when any member's are soft (the
    others' as one-hot rows). A step on which every hook returns the shared inputs and integer
    targets unchanged returns the batch as it came. ``None`` entries leave their member's batch
    as it is. What :class:`tdlab.core.recipes.Recipe` builds for a derivation marked
    :func:`tdlab.core.recipes.per_member`: each member then mixes exactly as it would trained alone (its
    own hook, its own draws) and the members share one engine call instead of one each.

    ``settings`` (one dict per member) join each hook's own ``settings`` in its member's knobs.
    """
    settings = settings or [{} for _ in hooks]
    if len(settings) != len(hooks):
        raise ValueError(f"{len(hooks)} hooks but settings for {len(settings)} members")
    member_settings = [{**(getattr(h, "settings", None) or {}), **extra} for h, extra in zip(hooks, settings)]

    def hook(batch):
        if batch.per_member:
            raise ValueError("per_member hooks take a shared batch (inputs (B, ...)), not one already per member")
        if batch.y.shape[0] != len(hooks):
            raise ValueError(f"{len(hooks)} hooks for a batch of {batch.y.shape[0]} members")
        outs = []
        for m, h in enumerate(hooks):
            own = dataclasses.replace(batch, y=batch.y[m:m + 1])
            outs.append(own if h is None else h(own))
        if all(o.x is batch.x and not o.y.is_floating_point() for o in outs):
            return batch                                   # no member changed its batch this step
        soft = [o.y for o in outs if o.y.is_floating_point()]
        classes = soft[0].shape[-1] if soft else None
        y = torch.cat([soft_labels(o.y, classes, soft[0].dtype) if soft else o.y for o in outs])
        return dataclasses.replace(batch, x=torch.stack([o.x for o in outs]), y=y, per_member=True)

    def member(index: int):
        """Member ``index``'s own hook, its knobs its ``settings`` (members trained one at a time)."""
        own = hooks[index] if hooks[index] is not None else (lambda batch: batch)
        own.settings = member_settings[index]
        return own

    hook.settings = {}
    hook.member_settings = member_settings
    hook.member = member
    return hook


def occlusion_map(model, x: torch.Tensor, y: torch.Tensor, size: int = 2, fill: float = 0.0,
                  score: str = "prob") -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014): for every position (i, j) of an image,
    the drop of the softmax probability of class y when the size×size square whose top-left
    corner is (i, j) (clipped at the border) is set to ``fill``.

    ``x``: images (N, C, H, W), ``y``: classes (N,). Returns (N, H, W): s(x) − s(x with the square
    occluded), where the score s is ``score``:

    - ``"prob"`` (the default): the softmax probability p_y. Near saturation a drop of the logits
      moves p_y by roughly e^(−margin)·(e^δ − 1), so a confident model's map is a few spikes and a
      less confident model's map is graded, whatever the pixels it uses.
    - ``"margin"``: the logit margin z_y − max_{k≠y} z_k. Dividing the logits by a temperature T
      divides every drop by T, so a map made relative to its own largest drop
      (:func:`occluded_share` with ``relative=True``) does not depend on T.

    Large values mark the pixels the model relies on.
    """
    return occlusion_maps(model, x, y, size, fill, (score,))[score]


def occlusion_maps(model, x: torch.Tensor, y: torch.Tensor, size: int = 2, fill: float = 0.0,
                   scores=("prob", "margin")) -> dict[str, torch.Tensor]:
    """:func:`occlusion_map` for several ``scores`` from one pass over the occluded images: each
    score is read from the same logits, so ``occlusion_maps(...)[s]`` equals
    ``occlusion_map(..., score=s)`` exactly, at the cost of one map. Returns {score: (N, H, W)}."""
    _require_images(x, "occlusion_map")
    check_range("occlusion size", size, 1)
    for score in scores:
        if score not in ("prob", "margin"):
            raise ValueError(f"occlusion score must be 'prob' or 'margin', got {score!r}")
    with evaluating(model):
        return _occlusion(model, x, y, size, fill, tuple(scores))


def _class_score(logits: torch.Tensor, y: torch.Tensor, score: str = "prob") -> torch.Tensor:
    """p_y (``"prob"``) or the margin z_y − max_{k≠y} z_k (``"margin"``) of each row of ``logits``."""
    if score == "prob":
        return torch.softmax(logits, -1).gather(-1, y[:, None]).squeeze(-1)
    true = logits.gather(-1, y[:, None]).squeeze(-1)
    others = logits.scatter(-1, y[:, None], float("-inf"))
    return true - others.max(-1).values


def _occlusion(model, x: torch.Tensor, y: torch.Tensor, size: int, fill: float,
               scores: tuple[str, ...] = ("prob",)) -> dict[str, torch.Tensor]:
    n, _, height, width = x.shape
    logits = model(x)
    base = {s: _class_score(logits, y, s) for s in scores}
    out = {s: torch.zeros(n, height, width, device=x.device) for s in scores}
    repeated = y.repeat(width)
    for i in range(height):
        occluded = []
        for j in range(width):
            xo = x.clone()
            xo[:, :, i:i + size, j:j + size] = fill
            occluded.append(xo)
        row = model(torch.cat(occluded))                  # one forward serves every score
        for s in scores:
            out[s][:, i] = (base[s][None] - _class_score(row, repeated, s).reshape(width, n)).T
    return out


def occluded_share(maps: torch.Tensor, mask: torch.Tensor, threshold: float = 0.1,
                   relative: bool = False) -> float:
    """The fraction of the pixels in ``mask`` (N, H, W), over all images, where an
    :func:`occlusion_map` (N, H, W) exceeds ``threshold`` — or, with ``relative=True``, exceeds
    ``threshold`` times that image's largest drop (floored at 10⁻⁶). Relative to the largest drop, a map
    of the logit margin (``score="margin"``) gives a share that does not depend on the model's
    temperature; a map of the probability does not: a saturated model's drops are a spike and a soft
    model's are graded, so the relative share still grows as the model gets less confident."""
    if maps.shape != mask.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and mask {tuple(mask.shape)} must have the same shape")
    if relative:
        threshold = threshold * maps.flatten(1).max(1).values.clamp_min(1e-6)[:, None, None]
    return (((maps > threshold) & mask).sum() / mask.sum()).item()
