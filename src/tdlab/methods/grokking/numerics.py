"""Floating-point limits of the softmax: Softmax Collapse and the logit gaps that cause it.

Prieto et al., "Grokking at the edge of numerical stability" (ICLR 2025):
once a network fits its training set, the loss keeps falling by scaling the
logits up (naive loss minimisation). When the correct logit exceeds every other by
more than a precision-dependent gap, Σ_k exp(z_k − max z) rounds to exactly 1 in
floating point, the softmax of the correct class is exactly 1, its loss exactly 0
and so is the correct class's component of its gradient (the others are of order
e^(−gap)/N, tiny but not zero): **Softmax Collapse** (SC). The sample stops learning,
and grokking stops with it.

Here:

- :func:`softmax_in`: the softmax in a chosen precision (``float16``, ``bfloat16``,
  ``float32``, ``float64``); the loss itself is :class:`tdlab.core.losses.SoftmaxCrossEntropy`
  (``loss="softmax_ce", precision=...``), built on :func:`tdlab.core.losses.cross_entropy_in`;
- :func:`softmax_collapse`: the SC fraction, as the official
  ``MetricsLogger.compute_softmax_collapse``; :func:`zero_loss_fraction`, its
  companion ``compute_zero_terms``; :func:`stablemax_collapse`, the same event for
  StableMax;
- :func:`collapse_gap`: the logit gap beyond which 1 + e^(−gap) rounds to 1 in a
  precision, found by evaluating that sum in the precision itself;
- :func:`logit_gap` / :func:`max_logit_gap`: top-1 minus top-2 logit;
- :func:`collapse`: a monitor for the training loop that logs SC, the zero-loss fraction
  and the logit gap at each evaluation, from the logits the loop computed.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from tdlab.core.losses import (PRECISIONS, Loss, StableMaxCrossEntropy, cross_entropy_in, dtype_of, name_of,
                          stablemax_s)
from tdlab.core.history import History
from tdlab.core import models, optim, recipes
from tdlab.core.monitors import Evaluation
from tdlab.book.plots import PALETTE, legend_below


# ----------------------------------------------------------------- softmax in a precision


def softmax_sums(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> torch.Tensor:
    """Σ_k exp(z_k − max_j z_j) per example, computed in ``precision``; shape ``logits.shape[:-1]``.

    Always ≥ 1 (the max term is exactly 1); exactly 1 means every other term was lost
    to rounding.
    """
    z = logits.detach().to(dtype_of(precision))
    return torch.exp(z - z.amax(-1, keepdim=True)).sum(-1)


def softmax_in(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> torch.Tensor:
    """exp(z − max z) / Σ exp(z − max z), every operation in ``precision`` (returned in that dtype)."""
    z = logits.to(dtype_of(precision))
    e = torch.exp(z - z.amax(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


# ----------------------------------------------------------------- the collapse metrics


def softmax_collapse(logits: torch.Tensor, precision: str | torch.dtype = "float32") -> float:
    """Softmax Collapse: the fraction of examples whose Σ_k exp(z_k − max z), computed in
    ``precision``, equals exactly 1 (official ``compute_softmax_collapse``; Prieto et al. 2025).

    ``logits`` has shape (N, C) (or (..., N, C): the fraction over all leading axes).
    """
    return collapsed(logits, precision).float().mean().item()


def stablemax_collapse(logits: torch.Tensor, precision: str | torch.dtype = "float64") -> float:
    """The same collapse for StableMax: the fraction of examples whose Σ_k s(z_k), in
    ``precision``, equals its largest term exactly (so StableMax(z)_max = 1 and its loss 0).

    s grows linearly, so this needs a ratio of about 1/ε between the largest and the
    other terms (≈ 10^16 in float64) instead of a logit gap of ln(2/ε).
    """
    return collapsed(logits, precision, stablemax=True).float().mean().item()


def collapsed(logits: torch.Tensor, precision: str | torch.dtype = "float32", stablemax: bool = False) -> torch.Tensor:
    """Per example (shape ``logits.shape[:-1]``), whether its normalisation collapsed in ``precision``:
    the softmax sum is exactly 1 (:func:`softmax_collapse`), or for StableMax the sum of s equals its
    largest term (:func:`stablemax_collapse`). The fractions above are the means of this mask."""
    z = logits.detach().to(dtype_of(precision))
    if stablemax:
        s = stablemax_s(z)
        return s.sum(-1) == s.amax(-1)
    return softmax_sums(z, precision) == 1


def zero_loss_fraction(logits: torch.Tensor, targets: torch.Tensor,
                       precision: str | torch.dtype = "float32") -> float:
    """The fraction of examples whose cross-entropy in ``precision`` is exactly 0
    (official ``compute_zero_terms``): their gradient vanishes too."""
    with torch.no_grad():
        return (cross_entropy_in(logits, targets, precision, reduction="none") == 0).float().mean().item()


def logit_gap(logits: torch.Tensor) -> torch.Tensor:
    """Per example, the largest logit minus the second largest, shape ``logits.shape[:-1]``."""
    top = logits.detach().topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def max_logit_gap(logits: torch.Tensor) -> float:
    """The largest top-1 − top-2 logit gap over all examples."""
    return logit_gap(logits).max().item()


def collapses(gap: float, precision: str | torch.dtype) -> bool:
    """Whether 1 + e^(−gap), with every operation in ``precision``, rounds to exactly 1."""
    dtype = dtype_of(precision)
    one = torch.ones((), dtype=dtype)
    return bool(one + torch.exp(-torch.tensor(gap, dtype=dtype)) == one)


def collapse_gap(precision: str | torch.dtype, low: float = 0.0, high: float = 1000.0,
                 iterations: int = 200) -> float:
    """The smallest logit gap at which 1 + e^(−gap) rounds to 1 in ``precision``.

    Two classes whose logits differ by more than this have a softmax sum of exactly 1
    (more classes collapse at about the same gap). Found by bisection on
    :func:`collapses`, i.e. by evaluating the sum in the precision itself, not from a
    formula; it lands at about ln(2/ε) for the machine epsilon ε of the format
    (float16 ≈ 7.6, bfloat16 ≈ 5.5, float32 ≈ 16.6, float64 ≈ 36.7).
    """
    if collapses(low, precision) or not collapses(high, precision):
        raise ValueError(f"the collapse gap of {name_of(precision)} is not in [{low}, {high}]")
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if collapses(middle, precision):
            high = middle
        else:
            low = middle
    return high


def collapse_gaps() -> dict[str, float]:
    """:func:`collapse_gap` for every precision, by name."""
    return {name: collapse_gap(name) for name in PRECISIONS}


# ----------------------------------------------------------------- a monitor for the training loop


def per_example_loss(loss: Loss, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The loss of every example separately, shape ``targets.shape``: each example is passed as
    a batch of one (logits (..., N, C) → (..., N, 1, C))."""
    with torch.no_grad():
        return loss(logits.unsqueeze(-2), targets.unsqueeze(-1))


def collapse(precision: str | torch.dtype = "float32"):
    """A monitor (:mod:`tdlab.core.monitors`) that logs, at every evaluation, on the training set:

    - ``("train", "sc")``: the collapse of the run's own normalisation, in the precision the
      loss is computed in (``precision`` for a loss without one): the Softmax Collapse
      fraction (:func:`softmax_collapse`) for a softmax loss, :func:`stablemax_collapse` for
      StableMax;
    - ``("train", "softmax_sc")``: the Softmax Collapse fraction of the logits in
      ``precision``, whatever the loss (what a softmax of these logits would do);
    - ``("train", "zero_loss")``: the fraction of examples whose loss under the run's own
      loss is exactly 0;
    - ``("train", "max_gap")``: the largest top-1 − top-2 logit gap;
    - ``("train", "collapsed_nonzero_loss")``: the fraction of examples that collapsed (``sc``'s
      mask) but whose loss is *not* exactly 0 — 0 when every collapsed example's loss is 0.

    Everything is computed from the training logits the loop has just computed.
    """
    name = name_of(precision)

    def monitor(ev: Evaluation) -> dict[tuple[str, str], list[float]]:
        logits, targets = ev.logits["train"], ev.targets["train"]
        stablemax = isinstance(ev.loss, StableMaxCrossEntropy)
        out = {("train", "sc"): [], ("train", "softmax_sc"): [], ("train", "zero_loss"): [],
               ("train", "max_gap"): [], ("train", "collapsed_nonzero_loss"): []}
        zero_mask = per_example_loss(ev.loss, logits, targets) == 0
        zero = zero_mask.float().mean(-1).tolist()
        own = getattr(ev.loss, "precision", name)      # the precision the loss is computed in
        mask = collapsed(logits, own, stablemax)                        # (E, N): the collapsed examples
        sc = mask.float().mean(-1).tolist()
        nonzero = (mask & ~zero_mask).float().mean(-1).tolist()
        for member in range(ev.members):
            z = logits[member]
            out[("train", "sc")].append(sc[member])
            out[("train", "softmax_sc")].append(softmax_collapse(z, name))
            out[("train", "zero_loss")].append(zero[member])
            out[("train", "max_gap")].append(max_logit_gap(z))
            out[("train", "collapsed_nonzero_loss")].append(nonzero[member])
        return out

    return monitor


# ----------------------------------------------------------------- its figure


def collapse_curves(history: History, member: int = 0, ax=None, precision: str | None = None):
    """Softmax Collapse during training (:func:`tdlab.methods.grokking.numerics.collapse` monitor): the SC and
    zero-loss fractions in % of training examples (left axis) and the largest top-1 − top-2 logit
    gap over the training examples (right axis; dotted: the collapse gap, the gap at which a softmax
    sum rounds to exactly 1 in the softmax's precision — the run's own for a softmax loss,
    ``precision`` or float32 otherwise, StableMax having none of its own). For a StableMax run, its
    own collapse and, dotted, what a float32 softmax of the same logits would do. Both gap lines are
    in the legend."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    knobs = history.knobs[member]
    stablemax = knobs.get("loss") == "stablemax"
    own = knobs.get("precision", "float32")
    precision = precision or ("float32" if stablemax else own)
    steps, sc = history.curve("train", "sc", member)
    ax.plot(steps, 100 * sc, color=PALETTE["train_corrupted"], linewidth=2,
            label=f"StableMax collapse ({own})" if stablemax else f"SC fraction ({precision})")
    if stablemax:
        steps, softmax_sc = history.curve("train", "softmax_sc", member)
        ax.plot(steps, 100 * softmax_sc, color=PALETTE["train_corrupted"], linewidth=1, linestyle=":",
                label=f"a {precision} softmax of these logits would collapse")
    steps, zero = history.curve("train", "zero_loss", member)
    ax.plot(steps, 100 * zero, color=PALETTE["train_corrupted_true"], linestyle="--", label="loss exactly 0")
    ax.set(xlabel="training step", ylabel="training examples (%)", ylim=(-2, 102))
    gap_ax = ax.twinx()
    gap_ax.plot(*history.curve("train", "max_gap", member), color="#555555", linewidth=1,
                label="largest logit gap (top-1 − top-2)")
    gap_ax.axhline(collapse_gap(precision), color="#555555", linestyle=":", linewidth=1,
                   label=f"gap at which a {precision} softmax sum rounds to 1"
                         + (" (not StableMax's)" if stablemax else ""))
    gap_ax.set_ylabel("largest logit gap (top-1 − top-2)")     # the dotted line: named in the legend
    gap_ax.grid(False)
    lines = ax.get_lines() + gap_ax.get_lines()[:2]
    legend_below(ax, lines, [line.get_label() for line in lines], columns=1)
    return ax


# ----------------------------------------------------------------- the chapter's optimizers and the paper's recipe


def official_optimizers(lr: float = 0.01, beta2: float = 0.99):
    """The softmax-collapse chapter's ``optimizer`` knob, a recipe derivation: ``"AdamW"`` as the official runs set
    it (``utils.py`` ``get_optimizer``: β = (0.9, ``beta2``), ε the recipe's ``eps``), ``"AdamW (defaults)"``
    (β = (0.9, 0.999), ε = 10⁻⁸: what the official ⊥Grad run's inner AdamW steps with, ⊥Grad's control) and
    ``"⊥Grad-AdamW"`` (:func:`tdlab.core.optim.orthograd_adamw` at those defaults). ``lr`` and ``beta2`` are the
    knobs' defaults."""
    def optimizer(optimizer="AdamW", loss="softmax_ce", lr=lr, weight_decay=0.0, beta2=beta2):
        """AdamW as the official runs set it (β₂ a knob); AdamW's defaults (⊥Grad's control); ⊥Grad-AdamW."""
        if optimizer == "⊥Grad-AdamW":
            return {"optimizer": optim.orthograd_adamw(lr=lr, weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8)}
        if optimizer == "AdamW (defaults)":
            return {"optimizer": "adamw", "betas": (0.9, 0.999), "eps": 1e-8}
        return {"optimizer": "adamw", "betas": (0.9, beta2)}      # ε: the recipe's (ADAM_EPS) unless a run sets one

    return optimizer


def paper_recipe(seed: int = 0) -> "recipes.Recipe":
    """Prieto et al.'s Figure 1 setup (official ``LucasPrietoAl/grokking-at-the-edge-of-numerical-stability``,
    ``run_main_experiments.sh`` l.50-52 and ``utils.py`` ``parse_args``), for a GPU: addition mod p = 113
    (``--modulo``), 40% of the pairs for training (``--train_fraction 0.4``), the concatenated one-hot inputs; an MLP
    of two hidden layers of 200 ReLU units without biases (``--hidden_sizes 200 200``); full batch; AdamW at lr 0.01,
    β = (0.9, 0.99), ε = 10⁻²⁵ (``--beta2``, ``--adam_epsilon``), no weight decay; softmax cross-entropy in float32
    (``--softmax_precision 32``) with the Softmax-Collapse monitor (:func:`collapse`); 80 000 steps (``--num_epochs
    80000``), the accuracies read every 500. The runs of the chapter change the loss (``stablemax``), the precision,
    β₂ and the optimizer (:func:`official_optimizers`) as knobs."""
    p, width = 113, 200
    return recipes.modular_addition(p, lambda: models.MLP(2 * p, p, width=width, depth=2, bias=False), seed=seed,
                                    train_fraction=0.4, loss="softmax_ce", precision="float32", steps=80_000,
                                    eval_every=500, eps=1e-25,
                                    monitors=[collapse("float32")]).but(official_optimizers(0.01, 0.99), seed=seed)
