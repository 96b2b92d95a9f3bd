r"""SGD noise in the lazy and the feature-learning regimes: the α-trick of Sclocchi, Geiger & Wyart
(ICML 2023, "Dissecting the Effects of SGD Noise in Distinct Regimes of Deep Learning"; official code
``AntonioScl/SGD_learning_regimes`` @ e810638, ``edm/``).

- :class:`MeanFieldMLP` — the paper's fully connected net (``edm/architecture.py: mlp``): no biases,
  standard-normal weights, every hidden layer's input divided by √fan_in, the activation normalised to
  a unit second moment under a standard Gaussian (``normalize_act``), the readout divided by the width
  h (mean-field). Stacks in the engine (``forward_stacked``).
- :class:`AlphaHinge` — the α-trick loss on the *centred* output, per example
  :math:`\frac1\alpha\,\ell\big(\alpha F(w, x), y\big)` with :math:`F(w, x) = f(w, x) - f(w_0, x)` and the
  hinge :math:`\ell(z, y) = \max(0, 1 - yz)` (``edm/train.py``: ``loss = lambda o, y: loss_fun(alpha * o, y)
  / alpha``); α is a per-member coefficient, so one engine call trains a whole (α, T) grid.
- :func:`alpha_trick` — the monitor that hands the loss the initial outputs f(w₀, x) (the loop's step-0
  evaluation computes them for every member before the first step) and logs the centred measurements:
  hinge loss, train/test error, the fraction of training points not yet fitted, the relative weight change.
- :func:`temperature` / :func:`learning_rate` — T = η/(hB) (``edm/__main__.py``: ``temp = dt / (h * bs)``).
- :func:`parity` — a binary task from a digit set: even (+1) against odd (−1), inputs standardised.
- :func:`crossover_temperature`, :func:`power_law` — reading T_c off a sweep (the temperature at which
  a measured change, the relative weight change in the chapter, reaches a level) and fitting
  T_c ∝ P^(−a) once per seed; :func:`fitted_at`, :func:`status`, :func:`centred_outputs` read single runs.
- :func:`predicted_signs`, :func:`departure` — how far a trained classifier has moved from a reference
  run's (the paper's T_c: where the noise starts to change the trained model); :func:`optimum_temperature`
  — T_opt of a feature-learning row (the paper's T_opt ∝ α^k), :func:`slope_through` its slope k, and
  :func:`window_permutation` that slope with each row's test errors shuffled inside its fitted window (the
  null of "k beyond the window").
- :func:`null_runs` — the runs of the chapter's nulls (other initialisations, :func:`twin_seeds`, and a
  second batch order) and the nulls read from them.
- :data:`GRIDS` — the chapter's sweeps at each scale (``paper``: the README commands); :func:`phase_figure`,
  :func:`one_run`, :func:`summary`, :func:`training_figure` — the chapter's phase diagram and widget panel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from tdlab.core import data as datasets
from tdlab.core.config import check_range
from tdlab.core.data import Dataset
from tdlab.core.losses import Loss, _member_values
from tdlab.core.models import _activation
from tdlab.core.monitors import Evaluation


# ----------------------------------------------------------------- temperature


def temperature(lr: float, batch_size: int, width: int) -> float:
    """The SGD temperature T = η / (h B) of the official code (``edm/__main__.py``: ``temp = dt / (h * bs)``):
    η/B with the learning rate η measured in the mean-field unit η/h."""
    return lr / (width * batch_size)


def learning_rate(temp: float, batch_size: int, width: int) -> float:
    """The learning rate η = T h B that gives temperature ``temp`` (``dt = temp * h * bs``)."""
    return temp * width * batch_size


# ----------------------------------------------------------------- the network


def activation_scale(name: str, points: int = 80) -> float:
    r"""c = √E[φ(g)²] for g ~ N(0, 1) (Gauss–Hermite quadrature): the official ``normalize_act`` divides φ
    by it so that every hidden layer's units have a unit second moment at initialisation (ReLU: c = 1/√2)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)        # ∫ g(x) e^{−x²/2} dx
    phi = _activation(name)
    with torch.no_grad():
        values = phi(torch.as_tensor(nodes, dtype=torch.float64, device="cpu")).numpy()   # on the CPU under a meta device too
    return float(np.sqrt(np.sum(weights * values**2) / np.sqrt(2 * np.pi)))


class MeanFieldMLP(nn.Module):
    r"""The paper's FC network (``edm/architecture.py: mlp``), without biases:

    .. math::
        h_0 = x, \quad h_{\ell} = \tfrac1c\,\phi\!\Big(\frac{W_\ell h_{\ell-1}}{\sqrt{n_{\ell-1}}}\Big),
        \quad f(w, x) = \frac{a \cdot h_D}{h},

    W_ℓ and a standard normal, c = :func:`activation_scale`, h the width, D = ``depth`` hidden layers.
    The readout divided by h (not √h) is the mean-field normalisation. One output column, shape (B, 1).
    """

    def __init__(self, in_features: int, width: int = 128, depth: int = 5, activation: str = "relu"):
        super().__init__()
        check_range("width", width, 1)
        check_range("depth", depth, 1)
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(n, m, bias=False) for n, m in zip(sizes, sizes[1:]))
        self.readout = nn.Linear(width, 1, bias=False)
        with torch.no_grad():
            for layer in (*self.hidden, self.readout):
                layer.weight.normal_()
        self.width, self.phi, self.activation = width, _activation(activation), activation
        self.scale = activation_scale(activation)

    def forward(self, x):
        h = x.flatten(1)
        for layer in self.hidden:
            h = self.phi(layer(h) / math.sqrt(layer.in_features)) / self.scale
        return self.readout(h) / self.width                                      # (B, 1)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E networks at once (``params[name]`` of shape (E, ...), ``x`` shared) → (E, B, 1): one batched
        matrix product per layer, feature-major as :meth:`tdlab.core.models.MLP.forward_stacked`."""
        members = params["readout.weight"].shape[0]
        h = x.flatten(1).t().expand(members, -1, -1)                             # (E, n, B)
        for index, layer in enumerate(self.hidden):
            weight = params[f"hidden.{index}.weight"]
            h = self.phi(torch.bmm(weight, h) / math.sqrt(layer.in_features)) / self.scale
        return (torch.bmm(params["readout.weight"], h) / self.width).transpose(1, 2)


# ----------------------------------------------------------------- the α-trick loss and its monitor


def hinge(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ℓ(z, y) = max(0, 1 − y z) (``edm/train.py: hinge``)."""
    return torch.relu(1 - y * z)


class AlphaHinge(Loss):
    r"""The α-trick hinge loss of Sclocchi, Geiger & Wyart (2023, Sec. 2; ``edm/train.py``), the mean over
    the batch of

    .. math::
        \frac1\alpha\,\max\big(0,\ 1 - y\,\alpha F(w, x)\big), \qquad F(w, x) = f(w, x) - f(w_0, x),

    for labels y = ±1 (float targets). A large α makes the network lazy (F only has to reach a margin
    1/α, so the weights barely move); a small α forces feature learning. ``alpha`` is a per-member
    coefficient. The initial outputs f(w₀, x) of every training and test example are set by the
    :func:`alpha_trick` monitor at the loop's step-0 evaluation (before any update), so the loss works
    with mini-batches; ``center=False`` trains f itself. Once every training point has
    y αF ≥ 1 the gradient is exactly zero and SGD stops moving: training "until the hinge loss is zero",
    the paper's stopping rule, is training long enough. Not in :data:`tdlab.core.losses.LOSSES` (pass an
    instance), as it fits this one chapter's binary task.
    """

    name = "alpha_hinge"
    hyperparameters = ("alpha",)
    settings = ("center",)

    def __init__(self, alpha: float = 1.0, center: bool = True):
        check_range("alpha", alpha, 0, low_open=True)
        self.alpha, self.center = alpha, bool(center)
        self.initial: dict[str, torch.Tensor] | None = None          # f(w₀, x): split → (E, N)
        self.initial_weights: torch.Tensor | None = None            # w₀ flattened: (E, P)

    def centred(self, z: torch.Tensor, split: str = "train", index: torch.Tensor | None = None) -> torch.Tensor:
        """F = f − f₀ for outputs ``z`` (E, B) of the examples ``index`` of ``split`` (all of them if None)."""
        if not self.center:
            return z
        if self.initial is None:
            raise ValueError("alpha_hinge centres the output on f(w0, x), which the alpha_trick monitor records at "
                             "the step-0 evaluation: pass monitors=[sgd_noise.alpha_trick]")
        start = self.initial[split]
        return z - (start if index is None else start.index_select(-1, index))

    def __call__(self, logits, targets, index=None):
        single = logits.dim() == 2
        z = logits.squeeze(-1)
        z = z.unsqueeze(0) if z.dim() == 1 else z                                    # (E, B)
        if index is None:
            index = torch.arange(z.shape[-1], device=z.device)
        alpha = _member_values(self.alpha, z)
        loss = (hinge(alpha * self.centred(z, "train", index), targets) / alpha).mean(-1)   # (1/α) ℓ(αF, y)
        return loss[0] if single else loss


def _flat_weights(ev: Evaluation) -> torch.Tensor:
    stacked = ev.stacked_parameters()
    return torch.cat([p.reshape(ev.members, -1) for p in stacked.values()], dim=1)


@torch.no_grad()
def alpha_trick(ev: Evaluation) -> dict:
    r"""A monitor for :class:`AlphaHinge` runs. At step 0 (before any update) it records every member's
    outputs f(w₀, x) on the training and test sets and its initial weights in the loss; then, at every
    evaluation, with F = f − f₀:

    - ``train``/``hinge``: the training loss (1/α) ⟨ℓ(αF, y)⟩ (``hinge`` × α is the paper's ``aLoss``);
    - ``train``/``unfit``: the fraction of training points with y αF < 1 (0: training is over);
    - ``train``/``err`` and ``test``/``err``: the fraction with y F ≤ 0 (``edm/train.py: jit_le``);
    - ``weights``/``change``: the relative weight change ‖w − w₀‖ / ‖w₀‖.
    """
    loss = ev.loss
    if not isinstance(loss, AlphaHinge):
        raise ValueError("the alpha_trick monitor measures runs trained with sgd_noise.AlphaHinge")
    outputs = {split: ev.logits[split].squeeze(-1) for split in ("train", "test")}   # (E, N)
    if loss.initial is None or ev.step == 0:
        loss.initial = {split: z.clone() for split, z in outputs.items()}
        loss.initial_weights = _flat_weights(ev)
    alpha = _member_values(loss.alpha, outputs["train"])
    out = {}
    for split in ("train", "test"):
        f = loss.centred(outputs[split], split)
        y = ev.targets[split].to(f.dtype)
        margin = y * f
        out[(split, "err")] = ((margin <= 0) | ~torch.isfinite(f)).float().mean(-1)
        if split == "train":
            out[(split, "hinge")] = (hinge(alpha * f, y) / alpha).mean(-1)
            out[(split, "unfit")] = (alpha * margin < 1).float().mean(-1)
    w0 = loss.initial_weights
    out[("weights", "change")] = (_flat_weights(ev) - w0).norm(dim=1) / w0.norm(dim=1)
    return out


# ----------------------------------------------------------------- data


def parity(data: Dataset, name: str | None = None) -> Dataset:
    """A binary task from a digit set, as the paper's ``mnist_parity``: label +1 for an even digit and −1
    for an odd one (float targets), the inputs flattened and standardised by one mean and one standard
    deviation over all training pixels (``(x − 33.31) / 78.57`` for MNIST in ``edm/dataset.py``)."""
    x_train, x_test = data.x_train.flatten(1), data.x_test.flatten(1)
    mean, std = x_train.mean(), x_train.std()

    def sign(y):
        return 1.0 - 2.0 * (y % 2).to(torch.float32)                   # even → +1, odd → −1

    return Dataset(name or f"{data.name}-parity", (x_train - mean) / std, sign(data.y_train),
                   (x_test - mean) / std, sign(data.y_test), None, info={"task": "parity", "base": data.name})


def parity_subsets(name: str, seed: int = 0, **kwargs) -> Callable[..., Dataset]:
    """A data maker for a :class:`~tdlab.core.recipes.Recipe` with two knobs: ``train_size`` (P), the number of
    training examples, and ``subset_seed``: the first P of the permutation that ``subset_seed`` draws (so one
    seed's sets are nested in P), the whole test set each time. A member with its own ``subset_seed`` gets
    its own training set, as the official code draws one per initialisation (``edm/__main__.py``:
    ``seed_trainset = -seed_init - 2`` unless given)."""
    cache: dict = {}

    def make(train_size: int | None = None, subset_seed: int = seed) -> Dataset:
        if "full" not in cache:
            cache["full"] = parity(datasets.load(name, **kwargs))
        return cache["full"].subset(train_size, seed=subset_seed)

    return make


def recipe(name: str, in_features: int, width: int = 128, depth: int = 5, activation: str = "relu",
           batch_size: int = 16, data_seed: int = 0, **settings):
    """A :class:`~tdlab.core.recipes.Recipe` of the paper's setup on the parity of ``name``: the mean-field MLP,
    the α-trick hinge loss (α per member), plain SGD (no momentum, no weight decay) with batches of
    ``batch_size``, the :func:`alpha_trick` monitor; knobs ``alpha``, ``lr`` (T = η/(hB), see
    :func:`members`), ``seed`` and ``train_size`` (P, one engine call per value)."""
    from tdlab.core.recipes import Recipe

    return Recipe(parity_subsets(name, seed=data_seed),
                  lambda: MeanFieldMLP(in_features, width, depth, activation),
                  {"loss": AlphaHinge(), "optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0,
                   "batch_size": batch_size, "monitors": [alpha_trick], "data_seed": data_seed, **settings})


def members(alphas: Sequence[float], temperatures: Sequence[float], width: int, batch_size: int,
            seeds: Sequence[int] = (0,), own_subsets: bool = False, **knobs) -> list[dict]:
    """Members for :func:`recipe`: every (α, T, seed), T set through the learning rate η = T h B. With
    ``own_subsets`` each seed also draws its own training set (``subset_seed`` = seed; one engine call per
    seed), as the official code does."""
    return [{"alpha": float(a), "lr": learning_rate(t, batch_size, width), "seed": int(s),
             **({"subset_seed": int(s)} if own_subsets else {}), **knobs}
            for a in alphas for t in temperatures for s in seeds]


def add_temperature(history, width: int):
    """Record each member's temperature T = η/(hB) among its knobs (``knobs["temperature"]``), for the
    explorer's sliders and :meth:`~tdlab.core.history.History.find`; returns the History."""
    for knobs in history.knobs:
        knobs["temperature"] = temperature(knobs["lr"], knobs["batch_size"], width)
    return history


@dataclass
class Grids:
    """The chapter's sweeps at one scale (:data:`GRIDS`): the data and network of :func:`recipe`, the (α, T)
    phase diagram (one network per cell, ``phase_steps`` steps at P = ``phase_size``), the lazy sweep (α =
    ``lazy_alpha``, ``temperatures`` × ``sizes`` × ``lazy_seeds`` networks, each seed its own training set,
    :meth:`lazy_steps` steps); T_opt is read on the phase diagram's rows ``rich_alphas``. The phase diagram's
    networks use ``phase_activation`` (:meth:`phase_recipe`; the official phase-diagram command's GELU at paper
    scale), the lazy sweep's ReLU."""

    dataset: str
    in_features: int
    width: int
    depth: int
    batch_size: int
    phase_size: int
    phase_steps: int
    alphas: list
    phase_temperatures: list
    sizes: list
    temperatures: list
    lazy_seeds: int
    steps_per_point: float         # the lazy sweep trains max(min_steps, steps_per_point · P) steps
    min_steps: int
    rich_alphas: list              # the feature-learning rows of the phase diagram whose T_opt is read
    lazy_alpha: float = 2.0**15    # the paper's α = 32768
    phase_activation: str = "relu"  # the phase diagram's networks (the official code runs it with GELU)

    def lazy_steps(self, size: int) -> int:
        return int(max(self.min_steps, round(self.steps_per_point * size)))

    def recipe(self, seed: int, **settings):
        """:func:`recipe` at this scale, with training set and batch order drawn by ``seed``."""
        return recipe(self.dataset, self.in_features, width=self.width, depth=self.depth,
                      batch_size=self.batch_size, data_seed=seed, **settings)

    def phase_recipe(self, seed: int, **settings):
        """:meth:`recipe` with the phase diagram's activation ``phase_activation``."""
        return self.recipe(seed, activation=self.phase_activation, **settings)


#: ``cpu``: digits parity, 3 hidden layers of 64. ``paper``: the official README commands (MNIST parity, 5
#: hidden layers of 128; lazy sweep P = 1024 … 16384, T = 2^-13 … 2^2, five initialisations; phase diagram
#: P = 1024, α = 2^-14 … 2^11, every η = 2^-15 … 2^15 as T = η/(hB), GELU as in the README's phase-diagram
#: command; the README runs nine initialisations, a build one), a fixed budget of 200 000 steps in place of
#: "until the hinge loss is zero or the wall-clock limit". The CPU phase diagram keeps ReLU.
GRIDS = {
    "cpu": Grids("digits", 64, 64, 3, 16, phase_size=512, phase_steps=3000,
                 alphas=[2.0**k for k in (-6, -4, -2, 0, 3, 15)],
                 phase_temperatures=[2.0**k for k in range(-12, -2)],
                 sizes=[128, 256, 512, 1024], temperatures=[2.0**k for k in (-12, -10, -8, -7, -6, -5, -4, -3)],
                 lazy_seeds=5, steps_per_point=1.25, min_steps=160, rich_alphas=[2.0**k for k in (-6, -4, -2, 0)]),
    "paper": Grids("mnist", 784, 128, 5, 16, phase_size=1024, phase_steps=200_000,
                   alphas=[2.0**k for k in range(-14, 12)],
                   phase_temperatures=[2.0**k / (128 * 16) for k in range(-15, 16)],
                   sizes=[1024, 2048, 4096, 8192, 16384], temperatures=[2.0**k for k in range(-13, 3)],
                   lazy_seeds=5, steps_per_point=0.0, min_steps=200_000,
                   rich_alphas=[2.0**k for k in range(-14, 1, 2)], phase_activation="gelu"),
}


def paper_recipe(seed: int = 0):
    """The paper's lazy sweep as the official README runs it (``README.md`` l.81: ``--arch mlp --act relu --L 5
    --h 128 --alpha 32768 --dataset mnist_parity --loss hinge --dynamics sgd --bs 16``): MNIST parity, the
    mean-field MLP with 5 hidden layers of 128 (ReLU), the α-trick hinge loss, plain SGD with batches of 16, a
    budget of 200 000 steps read every 20 000 (``GRIDS["paper"]``; the official run stops when the hinge loss is
    zero, or at ``--max_wall`` 10 000 s). α, the temperature (through the learning rate, :func:`members`), P and
    the network are the members' knobs; the phase diagram is :meth:`Grids.phase_recipe` of ``GRIDS["paper"]``
    (GELU). ``seed`` draws the training set and the batch order."""
    grid = GRIDS["paper"]
    steps = grid.lazy_steps(grid.sizes[0])
    return grid.recipe(seed, progress=False, steps=steps, eval_every=steps // 10)


# ----------------------------------------------------------------- reading a sweep


@torch.no_grad()
def centred_outputs(history, member: int, build: Callable[[], nn.Module], x: torch.Tensor) -> torch.Tensor:
    """F(w, x) = f(w, x) − f(w₀, x) of a trained member: its final model against the initial one, rebuilt
    by ``build`` under the member's seed (as the engine built it)."""
    torch.manual_seed(history.knobs[member]["seed"])
    initial = build().to(x.device)
    return (history.models[member](x) - initial(x)).squeeze(-1)


def crossover_temperature(temperatures: Sequence[float], values: Sequence[float], level: float) -> float:
    """T_c: the temperature at which ``values`` (a quantity that grows with T, such as the relative weight
    change ‖w − w₀‖/‖w₀‖ the chapter passes) first reaches ``level``, interpolated linearly in (log T, value) between the two grid points around the crossing;
    ``inf`` if it never does within the grid, the lowest T if it already does there."""
    t = np.asarray(temperatures, dtype=float)
    v = np.asarray(values, dtype=float)
    order = np.argsort(t)
    t, v = t[order], v[order]
    above = np.nonzero(v >= level)[0]
    if len(above) == 0:
        return math.inf
    i = int(above[0])
    if i == 0:
        return float(t[0])
    fraction = (level - v[i - 1]) / (v[i] - v[i - 1])
    return float(np.exp(np.log(t[i - 1]) + fraction * (np.log(t[i]) - np.log(t[i - 1]))))


@dataclass
class PowerLaw:
    """A fit y = C x^slope on log–log axes: the slope and prefactor of every seed's fit, and their spread."""

    slopes: np.ndarray            # one least-squares slope per seed
    prefactors: np.ndarray        # one C per seed

    @property
    def slope(self) -> float:
        return float(np.mean(self.slopes))

    @property
    def spread(self) -> float:
        """The standard deviation of the slope over seeds (0 for one seed)."""
        return float(np.std(self.slopes, ddof=1)) if len(self.slopes) > 1 else 0.0

    @property
    def prefactor(self) -> float:
        return float(np.exp(np.mean(np.log(self.prefactors))))

    def __call__(self, x) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** self.slope


def power_law(x: Sequence[float], ys: Sequence[Sequence[float]]) -> PowerLaw:
    """Fit log y = slope · log x + log C by least squares, once per row of ``ys`` (one row per seed);
    points that are not finite and positive are left out of that seed's fit (a seed with fewer than two
    points left gives a NaN slope)."""
    x = np.asarray(x, dtype=float)
    slopes, prefactors = [], []
    for row in np.atleast_2d(np.asarray(ys, dtype=float)):
        keep = np.isfinite(row) & (row > 0) & (x > 0)
        if keep.sum() < 2:
            slopes.append(math.nan)
            prefactors.append(math.nan)
            continue
        slope, intercept = np.polyfit(np.log(x[keep]), np.log(row[keep]), 1)
        slopes.append(slope)
        prefactors.append(math.exp(intercept))
    return PowerLaw(np.array(slopes), np.array(prefactors))


def fitted_at(history, member: int = 0) -> float:
    """The first evaluated step at which every training point has y αF ≥ 1 (the hinge loss is zero, the
    paper's stopping point; ``inf`` if never within the run)."""
    steps, unfit = history.curve("train", "unfit", member)
    done = np.nonzero(unfit == 0)[0]
    return float(steps[done[0]]) if len(done) else math.inf


def status(history, member: int) -> str:
    """``"diverged"`` (the loss became NaN/inf), ``"not fitted"`` (training points left with y αF < 1 at the
    end of the budget) or ``"fitted"``."""
    if history.diverged_at[member] is not None or not math.isfinite(history.final("test", "err", member)):
        return "diverged"
    return "fitted" if history.final("train", "unfit", member) == 0 else "not fitted"


@torch.no_grad()
def predicted_signs(history, build: Callable[[], nn.Module], x: torch.Tensor,
                    members: Sequence[int] | None = None) -> torch.Tensor:
    """sign F(w, x) of the ``members`` of ``history`` (all of them if None) on the inputs ``x``, shape (E, N):
    the trained classifier, read from the final models against their initial ones (:func:`centred_outputs`)."""
    members = range(history.num_members) if members is None else members
    return torch.stack([torch.sign(centred_outputs(history, m, build, x)) for m in members])


def departure(signs: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """The fraction of inputs that each row of ``signs`` (E, N) classifies differently from ``reference``
    (N,), or from the same row of ``reference`` (E, N): how far a trained function has moved from the
    reference run's (0: the same classifier)."""
    return (signs != reference).float().mean(-1).cpu().numpy()


def optimum_temperature(temperatures: Sequence[float], errors: Sequence[float],
                        usable: Sequence[bool] | None = None, smooth: bool = True) -> float:
    """T_opt: the temperature of the lowest test error among the ``usable`` runs (fitted, not diverged; all
    finite ones if None), NaN if none is: the paper's optimum of the feature-learning regime, T_opt ∝ α^k.
    With ``smooth`` each usable run's error is first averaged with its usable neighbours on the (sorted)
    grid, so that one network's luck at one temperature does not pick the optimum."""
    order = np.argsort(np.asarray(temperatures, dtype=float))
    t, e = np.asarray(temperatures, dtype=float)[order], np.asarray(errors, dtype=float)[order]
    keep = np.isfinite(e) & (np.ones(len(e), bool) if usable is None else np.asarray(usable, bool)[order])
    if not keep.any():
        return math.nan
    if smooth:
        e = np.array([np.mean([e[j] for j in (i - 1, i, i + 1) if 0 <= j < len(e) and keep[j]]) if keep[i]
                      else math.nan for i in range(len(e))])
    index = np.nonzero(keep)[0]
    return float(t[index[np.argmin(e[index])]])


def fitted_window(temperatures: Sequence[float], usable: Sequence[bool]) -> tuple[float, float]:
    """The coldest and the hottest temperature of a row whose run is ``usable`` (fitted, not diverged): the
    window inside which :func:`optimum_temperature` can put T_opt; (NaN, NaN) if none is."""
    t = np.asarray(temperatures, dtype=float)[np.asarray(usable, bool)]
    return (float(t.min()), float(t.max())) if len(t) else (math.nan, math.nan)


def interior_optimum(temperatures: Sequence[float], errors: Sequence[float], usable: Sequence[bool],
                     smooth: bool = True) -> bool:
    """Whether a row's T_opt (:func:`optimum_temperature`) is an interior minimum: both of its neighbours on
    the sorted grid are usable runs, so the error rises on both sides, rather than the optimum being the
    edge of the fitted window (where the error may still fall until training breaks)."""
    t = np.sort(np.asarray(temperatures, dtype=float))
    ok = np.asarray(usable, bool)[np.argsort(np.asarray(temperatures, dtype=float))]
    best = optimum_temperature(temperatures, errors, usable, smooth)
    if not math.isfinite(best):
        return False
    i = int(np.nonzero(t == best)[0][0])
    return 0 < i < len(t) - 1 and bool(ok[i - 1]) and bool(ok[i + 1])


def departure_arms(temperatures: Sequence[float], t_c: float) -> tuple[list[float], list[float]]:
    """The two arms of :func:`error_departure`: the temperatures below ``t_c`` and those at T ≥ 4 T_c. On a
    whole-octave grid the hot arm is the same one or two grid points for every T_c within an octave, so a
    departure read this way cannot show a shift that follows T_c(P)."""
    t = [float(v) for v in temperatures]
    return [v for v in t if v < t_c], [v for v in t if v >= 4 * t_c]


def error_departure(errors: Sequence[float], temperatures: Sequence[float], t_c: float) -> float:
    """The test error's departure at T_c: the mean of ``errors`` (one per temperature, e.g. a seed mean over
    the fitted runs) below ``t_c`` minus their mean at T ≥ 4 T_c (positive: the error falls once the noise
    matters); NaN entries (runs not fitted) are left out of both arms; NaN if either arm is then empty."""
    t, e = np.asarray(temperatures, dtype=float), np.asarray(errors, dtype=float)
    ok = np.isfinite(e)
    below, above = e[ok & (t < t_c)], e[ok & (t >= 4 * t_c)]
    return float(below.mean() - above.mean()) if len(below) and len(above) else math.nan


def fitted_errors(errors: np.ndarray, unfit: np.ndarray) -> np.ndarray:
    """``errors`` with every run that has not fitted its training set (``unfit`` > 0) set to NaN, so that
    seed means (``np.nanmean``) and :func:`error_departure` read the fitted runs only."""
    return np.where(np.asarray(unfit) > 0, np.nan, np.asarray(errors, dtype=float))


def lazy_arrays(grid, sizes: Sequence[int], seeds: Sequence[int], temperatures: Sequence[float],
                build: Callable[[], nn.Module], x_test: torch.Tensor) -> dict:
    """The lazy sweep's final measurements as arrays indexed [seed, P, T]: ``weights`` (‖w − w₀‖/‖w₀‖),
    ``errors`` (test error), ``unfit`` (fraction of training points with y αF < 1 at the end) and ``moved``
    (:func:`departure` of each temperature's classifier from the coldest one's, same seed and P)."""
    last = {(r["member"], r["split"], r["metric"]): r["value"] for r in grid.records}   # one pass: the final values

    def final(split, metric):
        return np.array([[[last[grid.find(train_size=p, seed=s, temperature=t), split, metric]
                           for t in temperatures] for p in sizes] for s in seeds])

    def moved(p, s):
        order = [grid.find(train_size=p, seed=s, temperature=t) for t in temperatures]
        signs = torch.stack([torch.sign(centred_outputs(grid, m, build, x_test)) for m in order])
        return departure(signs, signs[0])

    return {"weights": final("weights", "change"), "errors": final("test", "err"),
            "unfit": final("train", "unfit"), "moved": np.array([[moved(p, s) for p in sizes] for s in seeds])}


def falls_with_size(values: np.ndarray) -> np.ndarray:
    """For each column of ``values`` [P, T] (rows in increasing P): whether it falls strictly from every P
    to the next (e.g. the test images the trained classifier moves at one temperature, smaller at every
    larger P)."""
    return np.all(np.diff(np.asarray(values, dtype=float), axis=0) < 0, axis=0)


def slope_through(alphas: Sequence[float], temperatures: Sequence[float]) -> float:
    """The log–log slope k of ``temperatures`` against ``alphas`` (T ∝ α^k, least squares; the paper's
    T_opt ∝ α^k, or the fitted window's hot edge); NaN if a temperature is missing (NaN: a row with no
    usable run)."""
    t = np.asarray(temperatures, dtype=float)
    if not (np.isfinite(t).all() and (t > 0).all()):
        return math.nan
    return float(np.polyfit(np.log2(np.asarray(alphas, dtype=float)), np.log2(t), 1)[0])


def window_permutation(alphas: Sequence[float], temperatures: Sequence[float], errors: Sequence[Sequence[float]],
                       usable: Sequence[Sequence[bool]], seed: int, shuffles: int = 100,
                       smooth: bool = True) -> np.ndarray:
    """The within-window null of T_opt ∝ α^k: ``shuffles`` draws of a generator seeded by ``seed``, in each of
    which every row's test errors (``errors[i]``, one per temperature, for the row α = ``alphas[i]``) are
    permuted among that row's own ``usable`` temperatures, T_opt is read again (:func:`optimum_temperature`,
    the same smoothing) and the slope k fitted (:func:`slope_through`). Returns the ``shuffles`` slopes.
    Every row keeps its fitted window, so its hot edge's slope is unchanged, while T_opt is placed inside it
    without the test error's help: k minus the edge slope on the real rows beyond this null is a T_opt that
    the window alone does not place."""
    rng = np.random.default_rng(seed)
    rows = [(np.asarray(e, dtype=float), np.asarray(u, bool) & np.isfinite(np.asarray(e, dtype=float)))
            for e, u in zip(errors, usable)]
    slopes = []
    for _ in range(shuffles):
        t_opt = []
        for e, ok in rows:
            where, shuffled = np.nonzero(ok)[0], e.copy()
            shuffled[where] = e[rng.permutation(where)]
            t_opt.append(optimum_temperature(temperatures, shuffled, ok, smooth))
        slopes.append(slope_through(alphas, t_opt))
    return np.array(slopes)


def twin_seeds(seed: int, count: int) -> list[int]:
    """The initialisations that stand in for a network in the nulls of the lazy sweep: 1000 + 10 × ``seed`` + k,
    k < ``count`` (another initialisation on the same training set and batches; none shared between seeds)."""
    return [1000 + 10 * seed + k for k in range(count)]


def _untimed(label: str, train: Callable, *args, **kwargs):
    return train(*args, **kwargs)


def null_runs(recipe, grid: "Grids", seed: int, seeds: Sequence[int], below: Sequence[float], cold_errors: np.ndarray,
              level: float, timed: Callable = _untimed, phase_recipe=None) -> dict:
    """The runs of the chapter's nulls (trained by the seed runner, ``TDLAB_NULLS``, not on every build) and
    the nulls read from them. ``recipe`` is the build's (its batch order ``seed``), ``seeds`` the lazy sweep's
    networks, ``below`` the departure's below-T_c temperatures at the largest P and ``cold_errors`` [network,
    T ∈ ``below``] the departure's cold arm there (fitted runs, NaN otherwise); ``timed`` wraps every training
    call (:func:`tdlab.book.chapter.timed`); ``phase_recipe`` (default ``recipe``) trains the phase-diagram twins,
    so that they have the phase diagram's activation (:meth:`Grids.phase_recipe`). Returns:

    - ``twin_tc`` [network, k]: the weight-change T_c (``level``) of ``len(grid.sizes)`` other initialisations
      (:func:`twin_seeds`), each on that network's training set of the smallest P: the T_c's spread between
      networks, which the effect's null fits against the sizes as labels;
    - ``twin_k``, ``twin_edge``: the slopes of T_opt and of the fitted window's hot edge through
      ``len(grid.rich_alphas)`` phase-diagram networks at the smallest α (``seed`` + 1000 + k, the build's
      training set and batches), the k-th given the row α = ``rich_alphas[k]`` as its label;
    - ``paired_null``: the departure's paired null at the largest P, the seed-mean test error of
      ``cold_errors`` minus that of the same networks and training sets at the same temperatures with another
      batch order (``seed`` + 5000): the noise redrawn, T unchanged;
    - ``redrawn_error``: that seed-mean test error with the other batch order;
    - ``histories``: the three trained Histories (``twin``, ``twin_sweep``, ``again``)."""
    from tdlab.core import history as histories

    rich, sizes, temps, width, batch = grid.rich_alphas, grid.sizes, grid.temperatures, grid.width, grid.batch_size
    phase_run = (recipe if phase_recipe is None else phase_recipe).but(steps=grid.phase_steps,
                                                                       eval_every=grid.phase_steps // 10)
    rows = [seed + 1000 + k for k in range(len(rich))]
    twin = add_temperature(timed("null run", phase_run.sweep, members(rich[:1], grid.phase_temperatures, width, batch,
                                                                      rows), train_size=grid.phase_size), width)
    twin_sweep = add_temperature(histories.concat([timed(
        "null run", recipe.sweep, [m for s in seeds for m in (
            members([grid.lazy_alpha], temps, width, batch, twin_seeds(s, len(sizes)), subset_seed=s) if p == sizes[0]
            else members([grid.lazy_alpha], below, width, batch, twin_seeds(s, 1), subset_seed=s))],
        train_size=p, steps=grid.lazy_steps(p), eval_every=grid.lazy_steps(p) // 10) for p in (sizes[0], sizes[-1])]),
        width)
    again = add_temperature(timed("null run", recipe.but(data_seed=seed + 5000).sweep, members(
        [grid.lazy_alpha], below, width, batch, seeds, own_subsets=True), train_size=sizes[-1],
        steps=grid.lazy_steps(sizes[-1]), eval_every=grid.lazy_steps(sizes[-1]) // 10), width)

    def final(runs, split, metric, **knobs):
        return runs.final(split, metric, runs.find(**knobs))

    twin_tc = np.array([[crossover_temperature(temps, [final(twin_sweep, "weights", "change", train_size=sizes[0], seed=w,
                                                             temperature=t) for t in temps], level)
                         for w in twin_seeds(s, len(sizes))] for s in seeds])
    windows = []                                          # per row: (test errors, usable) of its stand-in network
    for w in rows:
        found = [twin.find(alpha=rich[0], temperature=t, seed=w) for t in grid.phase_temperatures]
        windows.append(([twin.final("test", "err", m) for m in found], [status(twin, m) == "fitted" for m in found]))
    twin_k = slope_through(rich, [optimum_temperature(grid.phase_temperatures, e, u) for e, u in windows])
    twin_edge = slope_through(rich, [fitted_window(grid.phase_temperatures, u)[1] for _, u in windows])
    redrawn = fitted_errors(*(np.array([[final(again, split, metric, seed=s, temperature=t) for t in below] for s in seeds])
                              for split, metric in (("test", "err"), ("train", "unfit"))))
    paired = float(np.nanmean(np.nanmean(cold_errors, 0)) - np.nanmean(np.nanmean(redrawn, 0)))
    return {"twin_tc": twin_tc, "twin_k": twin_k, "twin_edge": twin_edge, "paired_null": paired,
            "redrawn_error": float(np.nanmean(np.nanmean(redrawn, 0))), "histories": {"twin": twin, "twin_sweep": twin_sweep, "again": again}}


def paper_rows(*, eta_hot: str, change_alpha: float, change_temp: float, eta_ratio: float, lazy: str, small: str,
               cold: str, hot: str, k: float, k_edge: float, window: str, interior: int, rows: int, k_range: str,
               edge_range: str, interior_range: str, k_minus_edge: str, slope_t: float, slope_p: float, largest: int,
               reordered: float, reorder_range: str, pair: float, pair_range: str, departures: Sequence[float],
               sizes: Sequence[int], departure_counts: Sequence[str], departure_range: str, departure_verdict: str,
               tc_slope: float, tc_spread: float, networks: int, level: float,
               departure_ranges: Sequence[str] | None = None):
    """The chapter's ours-vs-the-paper table: one row per claim of the paper (Sclocchi, Geiger & Wyart 2023),
    with this build's numbers and the committed table's ten-seed ranges (strings) beside them. A DataFrame
    indexed by the paper's claim. ``departure_ranges``: the ten-seed range of the departure at every P, printed
    beside this build's value (one build's value alone reads as typical)."""
    import pandas as pd

    per_p = ", ".join(f"{100 * d:+.2f}" + (f" ({r})" if departure_ranges else "")
                      for d, r in zip(departures, departure_ranges or [None] * len(departures)))
    counts = ", ".join(departure_counts)
    return pd.DataFrame({
        "the paper": ["(α, T) phase diagram: noise hurts or helps depending on the regime; raising T and lowering α "
                      "can have opposite effects on performance",
                      "lowering α or raising T both leave the lazy regime",
                      "feature-learning regime: the test error is best at T_opt ∝ α^k, k = (D − 1)/(D + 1)",
                      "lazy regime: relative weight change grows as a power of T and of P",
                      "lazy regime: below T_c the trained model is unchanged (v2); above, the model leaves the kernel "
                      "regime and the test error changes",
                      "T_c ∝ P^(−a)"],
        "this build": [
            f"not tested here: at small α the hottest cells diverge or end unfitted (η = T·h·B up to {eta_hot}), a "
            "step-size limit, and no arm has the same η without the noise",
            f"weight change ×{change_alpha:.0f} from {lazy} to {small}, ×{change_temp:.0f} from T = {cold} to {hot} "
            f"(η ×{eta_ratio:.0f}: a larger step, not the noise alone)",
            f"not decided here: k = {k:.2f} over {window} (the paper's argument: 1/2 for D = 3; {k_range}), but T_opt "
            f"is read inside a fitted window whose hot edge has slope {k_edge:.2f} ({edge_range}); k minus the edge "
            f"slope: {k_minus_edge}; {interior} of {rows} rows have an interior optimum ({interior_range})",
            f"log–log slope in T {slope_t:.2f} (five coldest T, P = {largest}), in P {slope_p:.2f} (coldest T)",
            f"the paper's test-error T_c is not seen to track P here. Test error (fitted runs) below T_c minus at "
            f"T ≥ 4 T_c: {per_p} points at P = {', '.join(map(str, sizes))}, positive on {counts} seeds; its arms are "
            f"the same grid temperatures at every P. At P = {largest}: {departure_range}; {departure_verdict}. "
            f"Below T_c the model is not unchanged: two batch orders at the coldest T disagree on "
            f"{100 * reordered:.1f}% of the test images ({reorder_range}), the two coldest T on {100 * pair:.1f}% "
            f"({pair_range})",
            f"T_c read from a {level:.0%} weight change: slope {tc_slope:.2f} ± {tc_spread:.2f} over P = {sizes[0]} … "
            f"{sizes[-1]} ({networks} networks; a factor {sizes[-1] // sizes[0]} in P) — the paper's scaling argument; "
            "the paper's T_c itself (where the test error or the trained function departs) is not measured here"],
    }).set_index("the paper")


# ----------------------------------------------------------------- the chapter's figures and panel


def power_of_two(value: float) -> str:
    """``value`` as a power of two in mathtext (``$2^{-12}$``), for axis labels and titles."""
    return f"$2^{{{math.log2(value):g}}}$" if value > 0 else "0"


def phase_frame(values: dict, alphas: Sequence[float], temperatures: Sequence[float], show=float,
                blank: dict | None = None):
    """A dict (α, T) → value as an α × T DataFrame of ``show(value)`` (rows α, columns T, labelled as powers
    of two); the cells where ``blank`` is true are NaN."""
    import pandas as pd

    blank = blank or {}
    return pd.DataFrame([[np.nan if blank.get((a, t)) else show(values[a, t]) for t in temperatures] for a in alphas],
                        index=pd.Index([power_of_two(a) for a in alphas], name="output scale α"),
                        columns=pd.Index([power_of_two(t) for t in temperatures], name="temperature T = η/(hB)"))


def phase_figure(error: dict, change: dict, state: dict, alphas, temperatures, title: str):
    """The (α, T) phase diagram as two heatmaps: the test error (%) and log₁₀ of the relative weight change,
    each cell's value (the weight change as its log₁₀) written in it with "n.f." (not fitted) under it where
    the run did not fit; diverged cells blank, marked "div.". ``state`` maps (α, T) to :func:`status`. The
    test error is coloured on the fitted runs only, its scale spanning their range, so that the few points
    between them can be read by colour; a run that has not fitted or has diverged is left grey there (its
    error, a run stopped before the paper's stopping point, keeps its number)."""
    import matplotlib.pyplot as plt

    from tdlab.book import plots

    diverged = {k: s == "diverged" for k, s in state.items()}
    unfitted = {k: s != "fitted" for k, s in state.items()}
    fitted = [100 * error[k] for k, s in state.items() if s == "fitted" and math.isfinite(error[k])]
    low, high = (min(fitted), max(fitted)) if fitted else (None, None)

    def text(values, show):
        labels = {k: show(v) + ("\nn.f." if state[k] == "not fitted" else "") for k, v in values.items()}
        return phase_frame(labels, alphas, temperatures, str, diverged).fillna("")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
    plots.heatmap(phase_frame(error, alphas, temperatures, lambda e: 100 * e, unfitted), ax=axes[0],
                  labels=text(error, lambda e: f"{100 * e:.1f}"), cmap="viridis", vmin=low, vmax=high,
                  colorbar="test error of the fitted runs (%)", blank="div.", fontsize=10,
                  title="test error (%; grey: not fitted or diverged)")
    axes[0].set_facecolor("0.86")                       # the masked (not fitted, diverged) cells
    plots.heatmap(phase_frame(change, alphas, temperatures, np.log10, diverged), ax=axes[1],
                  labels=text(change, lambda c: f"{np.log10(c):.1f}"), cmap="magma", vmin=-4, vmax=1, blank="div.",
                  colorbar=r"$\log_{10}\,\|w - w_0\| / \|w_0\|$", fontsize=10,
                  title=r"relative weight change ($\log_{10}$ in the cells)")
    fig.suptitle(title, fontweight="bold")
    return fig


def optimum_figure(error: dict, usable: dict, alphas, temperatures, t_opt, edge, k: float, k_edge: float, title: str,
                   interior: Sequence[bool] | None = None):
    """The feature-learning side: left, each row's test error (%) against T over its usable runs (``usable``
    maps α to one bool per temperature), dotted at its T_opt; right, T_opt and the fitted window's hot edge
    against α on log–log axes with their slopes ``k`` and ``k_edge``, and the paper's k = 1/2 through the
    first T_opt (for D = 3 hidden layers). With ``interior`` (one bool per row, :func:`interior_optimum`) a
    T_opt that is an interior minimum is drawn filled and one on the window's edge open."""
    import matplotlib.pyplot as plt

    from tdlab.book import plots

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    for i, a in enumerate(alphas):
        ts = [t for t, u in zip(temperatures, usable[a]) if u]
        axes[0].plot(ts, [100 * error[a, t] for t in ts], "o-", color=plots.COLORBLIND[i], label=f"α = {power_of_two(a)}")
        axes[0].axvline(t_opt[i], color=plots.COLORBLIND[i], ls=":", lw=1.2)
    axes[0].set(xscale="log", xlabel="temperature T", ylabel="test error (%)",
                title=f"{title}\n(dotted: $T_{{opt}}$, the minimum after neighbour averaging)")
    inner = np.ones(len(alphas), bool) if interior is None else np.asarray(interior, bool)
    axes[1].plot(alphas, t_opt, "-", color="k", label=f"$T_{{opt}}$: log–log slope k = {k:.2f}")
    axes[1].plot(np.asarray(alphas)[inner], np.asarray(t_opt)[inner], "o", color="k", ms=8, ls="none",
                 label="$T_{opt}$ an interior minimum")
    axes[1].plot(np.asarray(alphas)[~inner], np.asarray(t_opt)[~inner], "o", mfc="white", mec="k", ms=8, mew=1.5,
                 ls="none", label="$T_{opt}$ on the window's edge")
    axes[1].plot(alphas, edge, "s--", color="0.55", label=f"edge: the hottest T that still fits (slope {k_edge:.2f})")
    axes[1].plot(alphas, t_opt[0] * (np.asarray(alphas) / alphas[0]) ** 0.5, color=plots.COLORBLIND[3], lw=1,
                 label="the paper's k = (D − 1)/(D + 1) = 1/2")
    axes[1].set(xscale="log", yscale="log", xlabel="output scale α", ylabel="temperature T",
                title="the optimum temperature against α")
    for ax in axes:
        plots.legend_below(ax, columns=2)
    return fig


def lazy_figure(arrays: dict, sizes, temperatures, t_c: np.ndarray, fit: PowerLaw, level: float, alpha: float,
                seeds, images: int, reordered: float | None = None, build_seed: int | None = None):
    """The lazy sweep (``arrays`` of :func:`lazy_arrays`, one row per network ``seeds``): top, the test images
    classified differently from the coldest run (with ``reordered``, the mean disagreement of two batch orders
    at the coldest T and the largest P) and the test error, mean ± std over the networks, dotted at each P's
    T_c (geometric mean of ``t_c`` [network, P]); bottom left, the weight change (mean, band lowest to highest,
    × a run not fitted) and the level; bottom right, T_c per network against P with the power-law ``fit``.
    The test-error panel averages the fitted runs only (:func:`fitted_errors`, as the departure does) and
    marks the runs left out with ×. One legend above the panels names the sizes P (the colours the first
    three panels share) and, with ``build_seed``, the build (``TDLAB_SEED``) whose networks these are; each
    panel keeps its own marks in a legend below it."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from tdlab.book import plots

    weights, temps = arrays["weights"], np.asarray(temperatures, dtype=float)
    colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0.05, 0.85, len(sizes)))))
    tc_mean = np.exp(np.log(t_c).mean(axis=0))
    networks = f"{len(seeds)} networks"
    fig, axes = plt.subplots(2, 2, figsize=(10, 8.5), layout="constrained")
    for j, p in enumerate(sizes):
        fitted = 100 * fitted_errors(arrays["errors"][:, j], arrays["unfit"][:, j])   # the departure's runs
        for ax, values in ((axes[0, 0], 100 * arrays["moved"][:, j]), (axes[0, 1], fitted)):
            with np.errstate(all="ignore"):
                ax.errorbar(temps, np.nanmean(values, 0), yerr=np.nanstd(values, 0), fmt="o-", color=colors[p],
                            capsize=2)
            ax.axvline(tc_mean[j], color=colors[p], ls=":", lw=1.2)
        axes[1, 0].plot(temps, weights[:, j].mean(0), "o-", color=colors[p])
        axes[1, 0].fill_between(temps, weights[:, j].min(0), weights[:, j].max(0), color=colors[p], alpha=0.2, linewidth=0)
    late = np.nonzero(arrays["unfit"] > 0)
    if len(late[0]):
        axes[1, 0].plot(temps[late[2]], weights[late], "x", color="k", ms=9, mew=1.5, ls="none", label="a run not fitted")
        axes[0, 1].plot(temps[late[2]], 100 * arrays["errors"][late], "x", color="k", ms=9, mew=1.5, ls="none",
                        label="a run not fitted (left out)")
    if reordered is not None:
        axes[0, 0].plot([temps[0]], [100 * reordered], "D", color="k", ms=8, ls="none",
                        label=f"P = {sizes[-1]}: two batch orders, same T")
    axes[0, 0].axhline(100 / images, color="0.4", ls="--", lw=1, label="one test image")
    axes[0, 0].set(xscale="log", xlabel="temperature T", ylabel="images moved (%)",
                   title=f"the trained model against the coldest run's\n(test images moved: mean ± std of {networks})")
    axes[0, 1].set(xscale="log", xlabel="temperature T", ylabel="test error (%)",
                   title=f"test error of the fitted runs\n(mean ± std of {networks})")
    axes[1, 0].axhline(level, color="k", ls="--", lw=1, label=f"level {level:.0%} (defines $T_c$)")
    axes[1, 0].set(xscale="log", yscale="log", xlabel="temperature T", ylabel=r"$\|w - w_0\| / \|w_0\|$",
                   title=f"weight change at the end (α = {power_of_two(alpha)})\nmean of {networks}, band: lowest to highest")
    for i, s in enumerate(seeds):
        axes[1, 1].plot(sizes, t_c[i], "o", color=plots.COLORBLIND[i], alpha=0.8, label=f"network {s}")
    grid_p = np.geomspace(sizes[0], sizes[-1], 50)
    axes[1, 1].plot(grid_p, fit(grid_p), "k-", lw=1.5, label=f"fit: slope {fit.slope:.2f} ± {fit.spread:.2f}")
    axes[1, 1].set(xscale="log", yscale="log", xlabel="training-set size P", ylabel="$T_c$",
                   title="the weight-change $T_c$ against P")
    axes[1, 1].set_xticks(sizes, [str(p) for p in sizes])
    axes[1, 1].xaxis.set_minor_locator(plt.NullLocator())
    fig.legend([Line2D([], [], color=colors[p], marker="o") for p in sizes] + [Line2D([], [], color="0.3", ls=":")],
               [f"P = {p}" for p in sizes] + ["the weight-change $T_c$ (top, in its P's colour)"],
               loc="outside upper center", ncols=len(sizes) + 1, frameon=False,
               title="training-set size P: the colours of the first three panels"
               + (f"; build seed {build_seed} (TDLAB_SEED): networks {seeds[0]} … {seeds[-1]}"
                  if build_seed is not None else ""))
    for ax, columns in zip(axes.flat, (2, 1, 2, 3)):     # each panel's own marks
        if ax.get_legend_handles_labels()[0]:
            plots.legend_below(ax, columns=columns)
    return fig


def summary(history) -> dict:
    """The widget panel's readout of one run."""
    return {"final test error": history.final("test", "err"), "final train error": history.final("train", "err"),
            "points not fitted": history.final("train", "unfit"),
            "‖w − w₀‖/‖w₀‖": history.final("weights", "change"), "fitted at step": fitted_at(history)}


def training_figure(history):
    """One run's training: the fraction of training points not yet fitted (y αF < 1), train and test error."""
    import matplotlib.pyplot as plt

    from tdlab.book import plots

    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for (split, metric), label, color in ((("train", "unfit"), r"not fitted ($y\,\alpha F < 1$)", plots.COLORBLIND[2]),
                                          (("train", "err"), "train error", plots.COLORBLIND[0]),
                                          (("test", "err"), "test error", plots.COLORBLIND[1])):
        ax.plot(*history.curve(split, metric), color=color, label=label)
    ax.set(xlabel="training step", ylabel="fraction")
    ax.legend(fontsize=9)
    return fig


def one_run(recipe, width: int, seed: int, **defaults) -> Callable:
    """The panel's ``run``: one network of ``recipe`` at knobs ``alpha``, ``temperature`` (T, set through the
    learning rate η = T h B), ``train_size`` and ``batch_size``, from initialisation and training set ``seed``."""

    def train(callback=None, **knobs):
        knobs = {**defaults, **knobs}
        temp = knobs.pop("temperature")
        run = recipe(callback=callback, lr=learning_rate(temp, knobs["batch_size"], width), seed=seed,
                     subset_seed=seed, **knobs)
        return add_temperature(run, width)

    return train
