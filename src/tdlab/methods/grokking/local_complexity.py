"""Local complexity and the PGD attack of Humayun, Balestriero & Baraniuk (ICML 2024),
"Deep Networks Always Grok and Here is Why" (official code: ``AhmedImtiazPrio/grok-adversarial``).

**Local complexity (LC).** A network with piecewise-linear (or nearly so, GELU) activations cuts
its input space into regions on which it is (nearly) affine; neuron k of a layer is on one side of
its region boundary where its pre-activation h_k(x) > 0 and on the other where h_k(x) < 0. Around an
anchor point x the paper builds a *cross-polytope frame* of radius r: K random orthonormal
directions u_1..u_K and the 2K vertices

    v_{j,±} = x ± r · u_j / ‖u_j‖            (``local_complexity.py``: ``get_ortho_hull_around_samples``)

and counts the neurons whose pre-activation does not have the same sign at every vertex,

    LC_ℓ(x) = #{k : sign h_{ℓ,k}(v) is not constant over the 2K vertices v}     (per layer ℓ)
    LC(x)  = Σ_ℓ LC_ℓ(x)

(``get_intersection_from_activation_batched``). Such a neuron's boundary passes through (or very
near) the neighbourhood: LC estimates how many region boundaries cross a small ball around x.
The official MLP script hooks the output of *every* ``nn.Linear``, the last (the logits) included,
and its figures plot the sum over layers averaged over anchors; ``include_output`` keeps that choice.
The same K directions serve every anchor and every evaluation (the official sampler is seeded once).

**Robust accuracy.** ℓ∞ projected gradient ascent on the cross-entropy (``attacks.py``, after
Harry24k's ``PGD-pytorch``): ``steps`` steps x ← clip(x₀ + clip(x + α·sign ∇ₓ CE − x₀, −ε, ε), low,
high). Robust accuracy is the accuracy on the result. The official ``PGD`` starts from a uniformly random
point of the ε-ball (``random_start=True``, its default, which ``train_resnet18_cifar10.py`` keeps); this
one starts from the clean input, so the attack draws nothing.

Everything here takes the stacked parameters the training loop keeps (``{name: (E, ...)}``, as
``ev.parameters(member)`` stacked over members) and an :class:`~tdlab.core.models.MLP`-shaped module
(``model.net``: Flatten, Linear and element-wise activations) that says what the layers are, so
the E members of a sweep are measured with one batched forward; :func:`stack_parameters` makes the
stack from ordinary modules.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tdlab.core.config import check_range
from tdlab.core.monitors import Evaluation, Monitor, Values


# ----------------------------------------------------------------- a stacked MLP, layer by layer


def stack_parameters(models: Sequence[nn.Module]) -> dict[str, torch.Tensor]:
    """The parameters of same-shaped modules stacked along a new first (member) axis, detached."""
    names = [name for name, _ in models[0].named_parameters()]
    return {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]) for name in names}


def _layers(model: nn.Module) -> nn.Sequential:
    net = getattr(model, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError("local complexity needs an MLP-shaped module (tdlab.core.models.MLP: model.net a Sequential of "
                         f"Flatten, Linear and element-wise activations), got {type(model).__name__}")
    return net


def pre_activations(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
                    per_member: bool = False) -> list[torch.Tensor]:
    """The pre-activation h_ℓ = W_ℓ a_{ℓ−1} + b_ℓ of every linear layer ℓ of E stacked MLPs, in order
    (the last one is the logits): a list of (E, B, width_ℓ).

    ``params``: ``{name: (E, ...)}`` named as ``model.named_parameters()``; ``x``: (B, ...) shared by
    all members, or with ``per_member`` (E, B, ...), one batch per member (an attack's inputs). The
    same arithmetic as :meth:`tdlab.core.models.MLP.forward_stacked`, keeping the intermediate layers.
    """
    members = next(iter(params.values())).shape[0]
    if per_member:
        if x.shape[0] != members:
            raise ValueError(f"per-member inputs need a first axis of {members} members, got {tuple(x.shape)}")
        h = x.flatten(2)                                          # (E, B, d): one batch per member
    else:
        h = x.flatten(1).expand(members, -1, -1)                 # (E, B, d): the same batch for all
    out = []
    for index, layer in enumerate(_layers(model)):
        if isinstance(layer, nn.Flatten):
            continue
        if isinstance(layer, nn.Linear):
            weight, bias = params[f"net.{index}.weight"], params.get(f"net.{index}.bias")
            h = torch.matmul(h, weight.transpose(1, 2))           # (E, B, out) = a Wᵀ
            if bias is not None:
                h = h + bias.unsqueeze(1)                         # + b
            out.append(h)
        else:
            h = layer(h)                                          # an element-wise activation
    return out


def logits(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
           per_member: bool = False) -> torch.Tensor:
    """The logits (E, B, C) of E stacked MLPs (the last pre-activation)."""
    return pre_activations(model, params, x, per_member)[-1]


# ----------------------------------------------------------------- the cross-polytope frame


def frame_directions(dim: int, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` random orthonormal directions of R^dim, (count, dim): the rows of Q from the QR
    decomposition of a seeded Gaussian matrix (the official sampler draws an orthogonal matrix with a
    fixed seed, ``torch.nn.utils.parametrizations.orthogonal``). Needs count ≤ dim."""
    check_range("count", count, 1)
    if count > dim:
        raise ValueError(f"at most {dim} orthonormal directions in R^{dim}, asked for {count}")
    gaussian = torch.randn(dim, count, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)                               # q: (dim, count), orthonormal columns
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)             # the sign convention that makes Q uniform (Haar)
    return q.t().to(torch.float32)


def cross_polytope(x: torch.Tensor, radius: float, directions: torch.Tensor) -> torch.Tensor:
    """The 2K vertices x ± r·u_j/‖u_j‖ around each anchor: ``x`` (N, ...) and ``directions`` (K, d)
    with d the flattened size → (N, 2K, d), the +r vertices first (``get_ortho_hull_around_samples``)."""
    check_range("radius", radius, 0, low_open=True)
    flat = x.reshape(x.shape[0], 1, -1)                            # (N, 1, d)
    if directions.shape[1] != flat.shape[-1]:
        raise ValueError(f"directions live in R^{directions.shape[1]}, the anchors in R^{flat.shape[-1]}")
    step = radius * directions / directions.norm(dim=1, keepdim=True)          # r·u_j/‖u_j‖, (K, d)
    step = step.to(device=x.device, dtype=x.dtype)
    return torch.cat([flat + step, flat - step], dim=1)


@torch.no_grad()
def local_complexity(model: nn.Module, params: dict[str, torch.Tensor], anchors: torch.Tensor, radius: float,
                     directions: torch.Tensor, include_output: bool = True, chunk: int = 64) -> torch.Tensor:
    """LC per member, anchor and layer: (E, N, L), L the number of linear layers (``include_output``)
    or hidden layers. Entry [e, n, ℓ] counts the neurons of layer ℓ of member e whose pre-activation
    sign is not the same at all 2K vertices of the cross-polytope of radius ``radius`` around anchor n.
    Anchors go through in chunks of ``chunk`` (each chunk is chunk·2K rows of one batched forward)."""
    out = []
    for start in range(0, anchors.shape[0], chunk):
        vertices = cross_polytope(anchors[start:start + chunk], radius, directions)   # (n, V, d)
        n, count = vertices.shape[:2]
        layers = pre_activations(model, params, vertices.reshape(n * count, -1))
        if not include_output:
            layers = layers[:-1]
        per_layer = []
        for h in layers:                                           # (E, n·V, width)
            signs = torch.sign(h).reshape(h.shape[0], n, count, -1)
            changes = (signs[:, :, 1:] != signs[:, :, :1]).any(dim=2)        # (E, n, width): not one sign
            per_layer.append(changes.sum(-1))
        out.append(torch.stack(per_layer, dim=-1))
    return torch.cat(out, dim=1)


# ----------------------------------------------------------------- the PGD attack


def pgd(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, eps: float,
        step_size: float, steps: int = 10, low: float | None = None, high: float | None = None) -> torch.Tensor:
    """ℓ∞ PGD on the cross-entropy of E stacked MLPs (the official ``attacks.PGD`` without its random start):
    x_{t+1} = clip_[low, high](x₀ + clip_[−ε, ε](x_t + α·sign ∇ₓ CE(f(x_t), y) − x₀)).

    ``x`` (B, ...) clean inputs shared by the members, ``y`` (B,) labels → (E, B, ...) one adversarial
    batch per member. ``low``/``high`` bound the inputs (default: the min and max of ``x``, as the
    official attack does).
    """
    check_range("eps", eps, 0)
    check_range("steps", steps, 0)
    members = next(iter(params.values())).shape[0]
    params = {k: v.detach() for k, v in params.items()}
    low = float(x.min()) if low is None else low
    high = float(x.max()) if high is None else high
    original = x.detach().unsqueeze(0).expand(members, *x.shape).clone()       # (E, B, ...)
    targets = y.long().expand(members, -1)
    adversarial = original.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        z = logits(model, params, adversarial, per_member=True)                 # (E, B, C)
        # the sum over members of each member's mean CE: member e's gradient is its own
        loss = F.cross_entropy(z.transpose(1, 2), targets, reduction="none").mean(-1).sum()
        grad, = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            stepped = adversarial + step_size * grad.sign()
            adversarial = (original + (stepped - original).clamp(-eps, eps)).clamp(low, high)
    return adversarial.detach()


@torch.no_grad()
def accuracy_on(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                per_member: bool = False) -> torch.Tensor:
    """Per member, the accuracy on ``x`` (B, ...) shared or, with ``per_member``, (E, B, ...): (E,)."""
    return (logits(model, params, x, per_member).argmax(-1) == y.long()).float().mean(-1)


def robust_accuracy(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, eps: float,
                    step_size: float, steps: int = 10, low: float | None = None,
                    high: float | None = None) -> torch.Tensor:
    """Per member, the accuracy on :func:`pgd`'s adversarial examples of (x, y): (E,)."""
    adversarial = pgd(model, params, x, y, eps, step_size, steps, low, high)
    return accuracy_on(model, params, adversarial, y, per_member=True)


# ----------------------------------------------------------------- when to measure, and the monitors


def log_steps(last: int, count: int, every: int = 1) -> list[int]:
    """About ``count`` steps from 0 to ``last``, evenly spaced on a log axis (0, then 1, ...), each
    rounded to a multiple of ``every`` (the loop's ``eval_every``: a monitor can only measure where the
    loop evaluates), ``last`` included."""
    check_range("last", last, 1)
    check_range("count", count, 2)
    raw = np.logspace(0, math.log10(last), count - 1)
    steps = {0, last} | {int(round(s / every)) * every for s in raw}
    return sorted(s for s in steps if 0 <= s <= last)


def _at(steps: Sequence[int] | None) -> Callable[[int], bool]:
    chosen = None if steps is None else set(int(s) for s in steps)
    return lambda step: chosen is None or step in chosen


def lc_monitor(model: nn.Module, anchors: dict[str, torch.Tensor], radius: float, vertices: int = 20, seed: int = 0,
               steps: Sequence[int] | None = None, include_output: bool = True,
               per_layer: bool = False) -> Monitor:
    """A monitor: the mean local complexity around each set of ``anchors`` (``{"train": x, "test": x,
    "random": x}``), logged as split ``f"lc_{name}"``, metric ``lc`` (the sum over layers, averaged
    over the anchors), and with ``per_layer`` metrics ``lc0``, ``lc1``, ... per linear layer.

    ``model`` is any module of the trained shape (only its layer structure is read); ``vertices`` = 2K
    is the number of vertices of the frame (K = vertices // 2 directions, drawn once from ``seed``);
    ``steps``: the evaluation steps at which to measure (None: every evaluation) — LC costs
    vertices × anchors forwards per member, so a chapter measures at log-spaced steps.
    """
    if vertices < 2 or vertices % 2:
        raise ValueError(f"a cross-polytope frame has an even number ≥ 2 of vertices, got {vertices}")
    measure_now = _at(steps)
    cache: dict[str, torch.Tensor] = {}

    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        if not measure_now(ev.step):
            return {}
        params = ev.stacked_parameters()
        out: dict[tuple[str, str], Values] = {}
        for name, points in anchors.items():
            points = points.to(next(iter(params.values())).device)
            if "directions" not in cache:
                cache["directions"] = frame_directions(points[0].numel(), vertices // 2, seed)
            counts = local_complexity(model, params, points, radius, cache["directions"], include_output).float()
            out[(f"lc_{name}", "lc")] = counts.sum(-1).mean(-1)                          # (E,)
            if per_layer:
                for layer in range(counts.shape[-1]):
                    out[(f"lc_{name}", f"lc{layer}")] = counts[..., layer].mean(-1)
        return out

    return monitor


def robust_monitor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, step_size: float,
                   attack_steps: int = 10, low: float | None = None, high: float | None = None,
                   steps: Sequence[int] | None = None, split: str = "test_pgd") -> Monitor:
    """A monitor: the accuracy of every member on PGD adversarial examples of (``x``, ``y``) (see
    :func:`pgd`), logged as ``split``/``acc`` at the evaluation ``steps`` (None: every evaluation)."""
    measure_now = _at(steps)
    low = float(x.min()) if low is None else low
    high = float(x.max()) if high is None else high

    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        if not measure_now(ev.step):
            return {}
        params = ev.stacked_parameters()
        device = next(iter(params.values())).device
        with torch.enable_grad():
            accuracy = robust_accuracy(model, params, x.to(device), y.to(device), eps, step_size, attack_steps,
                                       low, high)
        return {(split, "acc"): accuracy}

    return monitor


def random_anchors(x: torch.Tensor, count: int, seed: int = 0, low: float | None = None,
                   high: float | None = None) -> torch.Tensor:
    """``count`` points of the shape of ``x``'s rows, every coordinate uniform on [low, high] (default:
    the smallest and largest value in ``x``): the paper's random anchors are uniform on [0, 1]^784,
    the range of MNIST's pixels."""
    check_range("count", count, 1)
    low = float(x.min()) if low is None else low
    high = float(x.max()) if high is None else high
    u = torch.rand((count, *x.shape[1:]), generator=torch.Generator().manual_seed(seed))
    return (low + (high - low) * u).to(x.device, x.dtype)


# ----------------------------------------------------------------- reading the curves


def lc_phases(steps: Sequence[int], values: Sequence[float], fitted_step: float) -> dict[str, float]:
    """The double descent of LC (the paper's three phases: descent, ascent, a late descent) read off one
    curve of LC against the training step.

    - ``first_min``: the smallest LC at or before ``fitted_step`` (the step the training set is fitted):
      the bottom of the first descent, ``descent`` = LC(step 0) − first_min;
    - ``peak``: the largest LC after the first minimum: the top of the ascent, ``ascent`` = peak − first_min;
    - ``late_descent`` = peak − the last LC: how far LC came down again by the end of training.

    A curve that only rises has descent = late_descent = 0; one that only falls has ascent = 0. Steps of
    the minimum and the peak come back too (``first_min_step``, ``peak_step``). Where ``fitted_step`` is
    NaN (the training set was never fitted) every number is NaN, so a check on it fails rather than the
    reading crashing.
    """
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(steps) < 3 or len(steps) != len(values):
        raise ValueError(f"need at least 3 (step, LC) pairs of equal length, got {len(steps)} and {len(values)}")
    if not math.isfinite(fitted_step):          # the training set was never fitted: no phase can be read
        return {key: math.nan for key in ("start", "first_min", "first_min_step", "peak", "peak_step", "final",
                                          "descent", "ascent", "late_descent")}
    early = np.nonzero(steps <= max(fitted_step, steps[1]))[0]
    first = int(early[np.argmin(values[early])])
    later = np.arange(first, len(values))
    top = int(later[np.argmax(values[later])])
    return {"start": float(values[0]), "first_min": float(values[first]), "first_min_step": float(steps[first]),
            "peak": float(values[top]), "peak_step": float(steps[top]), "final": float(values[-1]),
            "descent": float(values[0] - values[first]), "ascent": float(values[top] - values[first]),
            "late_descent": float(values[top] - values[-1])}


def halfway_step(steps: Sequence[int], values: Sequence[float], after: float) -> float:
    """The first step after ``after`` at which the curve has covered half of its change from its value at
    ``after`` (the first measurement at or after it) to its last value; NaN when it does not change."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    start = int(np.searchsorted(steps, after))
    if start >= len(steps) - 1 or values[-1] == values[start]:
        return math.nan
    middle = (values[start] + values[-1]) / 2
    rising = values[-1] > values[start]
    crossed = values[start:] >= middle if rising else values[start:] <= middle
    return float(steps[start + int(np.argmax(crossed))])


def tail_moves(values: Sequence[float], points: int) -> dict[str, float]:
    """The largest fall and the largest rise of a curve within its last ``points`` measurements (a later
    value below / above an earlier one): how much a curve that no longer changes still moves — the
    noise floor against which a phase of ``points`` measurements is read."""
    check_range("points", points, 2)
    tail = np.asarray(values, dtype=float)[-points:]
    return {"fall": float(_falls(tail).max()), "rise": float(_falls(-tail).max())}


def _falls(values: np.ndarray) -> np.ndarray:
    """For each measurement, how far the curve falls below it later: values[i] − min(values[i:])."""
    return values - np.minimum.accumulate(values[::-1])[::-1]


def change_after(steps: Sequence[int], values: Sequence[float], step: float) -> float:
    """The last value minus the value at the first measurement at or after ``step`` (NaN when ``step`` is
    NaN or after the last measurement): how far a curve moved from ``step`` to the end."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if not math.isfinite(step) or step > steps[-1]:
        return math.nan
    return float(values[-1] - values[int(np.searchsorted(steps, step))])


def largest_fall(steps: Sequence[int], values: Sequence[float], until: float) -> dict[str, float]:
    """The largest fall of a curve at or before step ``until`` (a later value below an earlier one, both
    measured at or before ``until``): ``fall`` in the curve's unit and ``share`` = fall / the value it fell
    from — scale-free, so a 1-neuron fall from 22 neurons and from 44 compare as the shares they are. The
    paper's first descent of LC is such a fall before the training set is fitted (NaN when ``until`` is)."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if not math.isfinite(until):
        return {"fall": math.nan, "share": math.nan}
    window = values[steps <= until]
    if len(window) == 0:
        raise ValueError(f"no measurement at or before step {until}")
    falls = _falls(window)
    i = int(np.argmax(falls))
    return {"fall": float(falls[i]), "share": float(falls[i] / window[i]) if window[i] > 0 else math.nan}



def window_change(steps: Sequence[int], values: Sequence[float], start: float, points: int = 10) -> float:
    """How far a curve moved from ``start`` to the end, each end averaged over ``points`` measurements: the mean
    of the last ``points`` values minus the mean of the ``points`` values from the first measurement at or
    after ``start`` on. An accuracy on a few hundred images moves by whole images; the averages make the
    change continuous and steadier than :func:`change_after`'s two single readings. NaN when ``start`` is NaN
    or fewer than ``points`` measurements lie at or after it."""
    check_range("points", points, 1)
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if not math.isfinite(start):
        return math.nan
    first = int(np.searchsorted(steps, start))
    if len(values) - first < points:
        return math.nan
    return float(values[-points:].mean() - values[first:first + points].mean())


def log_ratio_change(steps: Sequence[int], near: Sequence[float], far: Sequence[float], start: float) -> float:
    """How far log(near / far) moved from the first measurement at or after step ``start`` to the last one:
    two LC curves measured at the same ``steps`` (around training points or at the decision boundary, and
    around random points). Scale-free: thinning the regions by the same share everywhere multiplies both
    curves alike and leaves it 0. NaN when ``start`` is NaN or after the last step, or an LC is not positive."""
    steps = np.asarray(steps, dtype=float)
    near, far = np.asarray(near, dtype=float), np.asarray(far, dtype=float)
    if len(near) != len(steps) or len(far) != len(steps):
        raise ValueError(f"both curves need one value per step: {len(steps)} steps, {len(near)} and {len(far)} values")
    if not math.isfinite(start) or start > steps[-1]:
        return math.nan
    first = int(np.searchsorted(steps, start))
    ends = near[[first, -1]], far[[first, -1]]
    if (ends[0] <= 0).any() or (ends[1] <= 0).any():
        return math.nan
    return float(math.log(near[-1] / far[-1]) - math.log(near[first] / far[first]))


def anchor_sets(x_train: torch.Tensor, x_test: torch.Tensor, count: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The paper's three kinds of anchors: the first ``count`` training points, the first ``count`` test
    points and ``count`` points uniform in the training pixels' range (:func:`random_anchors`)."""
    return {"train": x_train[:count], "test": x_test[:count], "random": random_anchors(x_train, count, seed=seed)}


def monitors(model: nn.Module, anchors: dict[str, torch.Tensor], radius: float, vertices: int, seed: int,
             steps: Sequence[int] | None, x: torch.Tensor, y: torch.Tensor, eps: float,
             low: float | None = None, high: float | None = None, attack_steps: int = 10) -> list[Monitor]:
    """The two monitors of a run that follows LC through training, measured at the same ``steps``: LC
    around each set of ``anchors`` (:func:`lc_monitor`) and the accuracy on PGD examples of (``x``, ``y``):
    ``attack_steps`` steps of ε/4 inside the ℓ∞ ball of radius ``eps`` (:func:`robust_monitor`). The step ε/4 is
    the ratio of the official CIFAR-10 config's commented-out setting (8/255, steps of 2/255); its active one is
    ε = 50/255 with steps of 4/255 (ε/12.5)."""
    return [lc_monitor(model, anchors, radius, vertices, seed=seed, steps=steps),
            robust_monitor(model, x, y, eps, eps / 4, attack_steps, low, high, steps=steps)]


# ----------------------------------------------------------------- LC at the decision boundary (the book's addition)


@torch.no_grad()
def boundary_points(model: nn.Module, params: dict[str, torch.Tensor], a: torch.Tensor, b: torch.Tensor,
                    iterations: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member, a point on each segment a_n → b_n where the predicted class changes, found by
    bisection: ``a``, ``b`` (N, ...) → points (E, N, ...) and ``valid`` (E, N), True where the member
    predicts different classes at the two ends (elsewhere the point is meaningless). The bisection keeps
    the class of a_n at the near end, so the point lies within |b_n − a_n| / 2^iterations of a change of
    the predicted class — on the decision boundary of that member, up to that distance."""
    check_range("iterations", iterations, 1)
    start, end = a.flatten(1), b.flatten(1)                                  # (N, d)
    ends = logits(model, params, torch.cat([start, end])).argmax(-1)        # (E, 2N)
    home, away = ends[:, :len(start)], ends[:, len(start):]
    low = torch.zeros(home.shape, dtype=start.dtype, device=start.device)   # (E, N): fractions along a → b
    high = torch.ones_like(low)
    for _ in range(iterations):
        middle = (low + high) / 2
        x = start + middle.unsqueeze(-1) * (end - start)                     # (E, N, d)
        same = logits(model, params, x, per_member=True).argmax(-1) == home
        low, high = torch.where(same, middle, low), torch.where(same, high, middle)
    points = start + ((low + high) / 2).unsqueeze(-1) * (end - start)
    return points.reshape(*points.shape[:2], *a.shape[1:]), home != away


@torch.no_grad()
def local_complexity_per_member(model: nn.Module, params: dict[str, torch.Tensor], anchors: torch.Tensor,
                                radius: float, directions: torch.Tensor, include_output: bool = True) -> torch.Tensor:
    """:func:`local_complexity` with one set of anchors per member: ``anchors`` (E, N, ...) → (E, N, L)."""
    members, count = anchors.shape[:2]
    vertices = cross_polytope(anchors.reshape(members * count, *anchors.shape[2:]), radius, directions)  # (E·N, V, d)
    corners = vertices.shape[1]
    layers = pre_activations(model, params, vertices.reshape(members, count * corners, -1), per_member=True)
    if not include_output:
        layers = layers[:-1]
    per_layer = []
    for h in layers:                                                         # (E, N·V, width)
        signs = torch.sign(h).reshape(members, count, corners, -1)
        per_layer.append((signs[:, :, 1:] != signs[:, :, :1]).any(dim=2).sum(-1))
    return torch.stack(per_layer, dim=-1)


def boundary_monitor(model: nn.Module, a: torch.Tensor, b: torch.Tensor, radius: float, vertices: int = 20,
                     seed: int = 0, steps: Sequence[int] | None = None, iterations: int = 16,
                     split: str = "lc_boundary") -> Monitor:
    """A monitor: the mean LC (summed over layers, as :func:`lc_monitor`) around each member's decision-boundary
    points between the pairs (a_n, b_n) (:func:`boundary_points`), over the pairs whose ends that member
    predicts differently; logged as ``split``/``lc`` at the evaluation ``steps``. The same frame directions
    as :func:`lc_monitor` with the same ``seed`` and ``vertices``."""
    if vertices < 2 or vertices % 2:
        raise ValueError(f"a cross-polytope frame has an even number ≥ 2 of vertices, got {vertices}")
    measure_now = _at(steps)
    directions = frame_directions(a[0].numel(), vertices // 2, seed)

    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        if not measure_now(ev.step):
            return {}
        params = ev.stacked_parameters()
        device = next(iter(params.values())).device
        points, valid = boundary_points(model, params, a.to(device), b.to(device), iterations)
        counts = local_complexity_per_member(model, params, points, radius, directions.to(device)).sum(-1).float()
        kept = valid.float()
        return {(split, "lc"): (counts * kept).sum(-1) / kept.sum(-1).clamp(min=1)}

    return monitor


# ----------------------------------------------------------------- the paper's MNIST MLP

# The chapter's paper-scale settings (its ``S`` at ``TDLAB_SCALE=paper``): the official MNIST MLP
# (``AhmedImtiazPrio/grok-adversarial``, ``configs.py`` ``config_base_mnist_mlp``): 1000 training points (l.86),
# 10⁶ steps (l.87), batch 200 (l.94, the recipe's), MSE (l.95), AdamW lr 10⁻³ and weight decay 0.01 (l.97-99), width
# 200 at depth 4 (l.119: 3 hidden GELU layers, l.103), LC with 50 vertices (``hull_n``, l.110) at r = 1 (one of
# ``hull_r``, l.114) around up to 10⁴ anchors (``approx_n``, l.109); α = 1 (``initialization_scale``, l.100) and
# α = 8 (the book's large scale: no official value); PGD at ε = 0.1 on 1000 test images and 1000 boundary pairs (the
# book's: the official MNIST script runs no attack); LC and PGD at 60 log-spaced steps, the accuracies every 100.
PAPER = dict(dataset="mnist", train_points=1000, width=200, depth=3, loss="mse", lr=1e-3, weight_decay=0.01,
             steps=1_000_000, eval_every=100, alphas=(1.0, 8.0), radius=1.0, vertices=50, anchors=10_000, eps=0.1,
             attacked=1000, pairs=1000, points=60)


def paper_recipe(seed: int = 0, settings: dict | None = None):
    """The chapter's paper-scale recipe (:data:`PAPER`; ``settings`` another such dict), for a GPU: the first
    ``train_points`` of a seeded permutation of MNIST's training set, the MLP of ``width`` and ``depth`` hidden GELU
    layers with every initial parameter × α (:func:`tdlab.core.recipes.scaled_init`, α = the larger of ``alphas``,
    a knob), AdamW with batches of 200, and as a derivation (its knob ``radius``) the monitors of LC around the
    three kinds of anchors (:func:`anchor_sets`, drawn with ``seed``), at the decision boundary
    (:func:`boundary_monitor`) and the PGD accuracy (:func:`monitors`) at :func:`log_steps`. Nothing is loaded
    until a run needs the data (the input size of MNIST, 28 × 28, is known beforehand)."""
    import functools

    from tdlab.core import data, models, recipes
    S = PAPER if settings is None else settings
    features = {"mnist": 28 * 28, "digits": 8 * 8}[S["dataset"]]

    @functools.cache
    def digits():
        return data.load(S["dataset"]).subset(S["train_points"], seed=seed)

    @functools.cache
    def anchors():
        return anchor_sets(digits().x_train, digits().x_test, S["anchors"], seed=seed)

    measured = log_steps(S["steps"], S["points"], S["eval_every"])

    def mlp():
        return models.MLP(features, 10, width=S["width"], depth=S["depth"], activation="gelu")

    def measurements(radius: float = S["radius"]) -> dict:
        """LC around the three kinds of anchors and at decision-boundary points at radius r, and the PGD accuracy."""
        x_test, y_test = digits().x_test, digits().y_test
        low, high = float(digits().x_train.min()), float(digits().x_train.max())
        pairs = x_test[:S["pairs"]], x_test[S["pairs"]:2 * S["pairs"]]
        return {"monitors": monitors(mlp(), anchors(), radius, S["vertices"], seed, measured, x_test[:S["attacked"]],
                                     y_test[:S["attacked"]], S["eps"], low, high)
                + [boundary_monitor(mlp(), *pairs, radius, S["vertices"], seed, measured)]}

    return recipes.scaled_init(digits, mlp, init_scale=S["alphas"][1], loss=S["loss"], optimizer="adamw", lr=S["lr"],
                               weight_decay=S["weight_decay"], batch_size=200, steps=S["steps"],
                               eval_every=S["eval_every"], seed=seed, data_seed=seed).but(measurements)
