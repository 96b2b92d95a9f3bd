"""Small-scale proxies for Transformer training instabilities (Wortsman et al. 2023, arXiv 2309.14322).

The pieces of the chapter ``05_stability/01_small_scale_proxies``:

- :class:`ZLossCrossEntropy` — cross-entropy plus the z-loss c·(log Z)², Z = Σ_j exp(y_j) over the
  output logits y (the paper's §3.2, c = 10⁻⁴; PaLM's auxiliary loss), with c a per-member
  coefficient of a sweep;
- :func:`attention_monitor` — the max attention logit and the attention entropy of every block
  (:func:`tdlab.core.transformer.attention_stats`) from the members' current parameters;
- :func:`output_logit_monitor` — the mean log Z and mean output logit (output-logit divergence:
  the logits drift very negative, §3.2);
- :func:`lr_sensitivity` — the paper's learning-rate sensitivity (§2.2),
  E_η[min(ℓ(η), ℓ₀) − min_η ℓ(η)];
- :func:`count_model_losses` — the held-out loss of a unigram and a bigram model fitted by counting,
  the yardstick of the paper's transplant test ("worse than a zero-layer bigram model");
- :func:`independent_weight_decay` — the paper's independent decay (θ ← θ − s_t λ θ, not multiplied
  by the learning rate) as the coupled decay of AdamW that equals it;
- :func:`recipe` — the tiny Transformer on the standard-library corpus, with ``qk_layernorm``,
  ``z_loss`` and the decay as knobs.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from tdlab.core import text
from tdlab.core.config import check_range
from tdlab.core.losses import Loss, _member_values, cross_entropy
from tdlab.core.monitors import Evaluation, Monitor, Values
from tdlab.core.recipes import Recipe
from tdlab.core.transformer import TinyTransformer, attention_stats

Z_LOSS = 1e-4   # the paper's z-loss coefficient


# ----------------------------------------------------------------- the z-loss


def log_z(logits: torch.Tensor) -> torch.Tensor:
    """log Z = log Σ_j exp(y_j) over the last (vocabulary) axis: (..., V) → (...)."""
    return torch.logsumexp(logits, dim=-1)


class ZLossCrossEntropy(Loss):
    r"""Cross-entropy plus the z-loss (Wortsman et al. 2023, §3.2; Chowdhery et al. 2022):

    .. math::
        \mathcal{L} = \frac1B \sum_b \big[-\log \mathrm{softmax}(y_b)_{t_b} + c\,(\log Z_b)^2\big],
        \qquad Z_b = \sum_j e^{y_{bj}},

    which keeps log Z near 0 — the logits cannot all drift down (or up) together, the output-logit
    divergence the paper sees late in training. ``z_loss`` is c (10⁻⁴ in the paper; 0 is plain
    cross-entropy), a per-member coefficient of a sweep.
    """

    name = "ce_zloss"
    hyperparameters = ("z_loss",)

    def __init__(self, z_loss: float = Z_LOSS):
        check_range("z-loss coefficient", float(torch.as_tensor(z_loss).min()), 0)
        self.z_loss = z_loss

    def __call__(self, logits, targets, index=None):
        penalty = log_z(logits).pow(2).mean(-1)                           # (1/B) Σ_b (log Z_b)²
        return cross_entropy(logits, targets) + _member_values(self.z_loss, penalty) * penalty


# ----------------------------------------------------------------- monitors


def attention_monitor(model: TinyTransformer, examples: int = 64, split: str = "test") -> Monitor:
    """A monitor: the attention statistics of every member on the first ``examples`` windows of
    ``split`` (:func:`tdlab.core.transformer.attention_stats`), from the members' current parameters.

    Logs, under split ``"attention"``: ``max_logit`` (the largest z_ij = q_i·k_j/√d_h over all
    blocks, heads, examples and positions) and its ``log10_max_logit``, ``max_logit_0`` … (per block;
    the paper tracks block 0),
    ``entropy`` (the smallest over blocks of the mean attention entropy, nats) and ``entropy_0`` ….
    ``model`` is any module of the members' shape (its own parameters are not used)."""
    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        x = (ev.data.x_test if split == "test" else ev.data.x_train)[:examples]
        stats = attention_stats(model, x, ev.stacked_parameters())
        out = {}
        for block, s in enumerate(stats):
            out[("attention", f"max_logit_{block}")] = s["max_logit"]
            out[("attention", f"entropy_{block}")] = s["entropy"]
        out[("attention", "max_logit")] = torch.stack([s["max_logit"] for s in stats]).amax(0)
        out[("attention", "log10_max_logit")] = out[("attention", "max_logit")].clamp_min(1e-30).log10()
        out[("attention", "entropy")] = torch.stack([s["entropy"] for s in stats]).amin(0)
        return out

    return monitor


def output_logit_monitor(splits: Sequence[str] = ("test",)) -> Monitor:
    """A monitor of the output logits y the loop computed: ``log_z``, the mean over tokens of
    log Z = log Σ_j exp(y_j), and ``mean_logit``, the mean of y over tokens and vocabulary (both
    drift far below 0 in the paper's output-logit divergence)."""
    @torch.no_grad()
    def monitor(ev: Evaluation) -> dict[tuple[str, str], Values]:
        out = {}
        for split in splits:
            y = ev.logits[split].double()                                  # (E, N·T, V)
            out[(split, "log_z")] = log_z(y).mean(-1).float()
            out[(split, "mean_logit")] = y.mean((-1, -2)).float()
        return out

    return monitor


# ----------------------------------------------------------------- learning-rate sensitivity


def lr_sensitivity(final_losses: Sequence[float], initial_loss: float) -> float:
    """The learning-rate sensitivity of Wortsman et al. (2023, §2.2) over a grid of learning rates:

    .. math::
        \\mathrm{LRsens} = \\mathbb{E}_{\\eta}\\big[\\min(\\ell(\\eta), \\ell_0) - \\ell^*\\big],\\qquad
        \\ell^* = \\min_\\eta \\ell(\\eta),

    ``final_losses`` ℓ(η) the final (validation) losses of the grid, ``initial_loss`` ℓ₀ the loss at
    initialisation. A diverged run (NaN or inf) and any loss above ℓ₀ count as ℓ₀."""
    losses = np.asarray(final_losses, dtype=float)
    if losses.size == 0:
        raise ValueError("lr_sensitivity needs the final losses of at least one learning rate")
    capped = np.where(np.isfinite(losses), np.minimum(losses, initial_loss), initial_loss)
    return float(np.mean(capped - capped.min()))


def capped_losses(final_losses: Sequence[float], initial_loss: float) -> np.ndarray:
    """min(ℓ(η), ℓ₀) with a diverged run at ℓ₀ (what :func:`lr_sensitivity` averages)."""
    losses = np.asarray(final_losses, dtype=float)
    return np.where(np.isfinite(losses), np.minimum(losses, initial_loss), initial_loss)


# ----------------------------------------------------------------- models with no layers


def count_model_losses(x_train, y_train, x_test, y_test, vocab: int, smoothing: float = 0.5) -> dict[str, float]:
    """The held-out cross-entropy (nats per token) of two models with no layers, fitted by counting the
    training pairs (x, y) of next-token windows: ``"unigram"``, p(y), and ``"bigram"``, p(y | x), the next
    token given the current one, each with ``smoothing`` added to every count (½: the Krichevsky–Trofimov
    estimator), so that a pair never seen in training keeps a finite loss.

    Wortsman et al. (2023) rescale a trained model's queries and keys until its max attention logit is
    about κ: its loss degrades from κ ≈ 10³ and at κ ≈ 10⁴ is "worse than a zero-layer bigram model" —
    the bigram loss is where a run counts as broken in that sense, with or without a NaN."""
    check_range("smoothing", smoothing, 0, low_open=True)
    x, y, xt, yt = (torch.as_tensor(t).reshape(-1).long().cpu() for t in (x_train, y_train, x_test, y_test))
    if x.numel() != y.numel() or xt.numel() != yt.numel():
        raise ValueError("count_model_losses needs as many targets as inputs in each split")
    pairs = torch.zeros(vocab, vocab, dtype=torch.float64)
    pairs.index_put_((x, y), torch.ones(x.numel(), dtype=torch.float64), accumulate=True)
    bigram = (pairs + smoothing) / (pairs.sum(1, keepdim=True) + smoothing * vocab)
    unigram = (pairs.sum(0) + smoothing) / (pairs.sum() + smoothing * vocab)
    return {"unigram": float(-unigram[yt].log().mean()), "bigram": float(-bigram[xt, yt].log().mean())}


# ----------------------------------------------------------------- weight decay


def independent_weight_decay(decay: float, lr: float) -> float:
    """AdamW's (lr-coupled) weight decay that equals the paper's *independent* decay ``decay`` at
    peak learning rate ``lr``.

    AdamW steps θ ← θ (1 − s_t η λ_c) (s_t the schedule's multiplier); independent decay
    (Loshchilov & Hutter 2019; Wortsman et al. 2023, §3.2.2) steps θ ← θ (1 − s_t λ). They are the
    same update when λ_c = λ / η."""
    check_range("learning rate", lr, 0, low_open=True)
    check_range("weight decay", decay, 0)
    return decay / lr


# ----------------------------------------------------------------- the recipe


class Factory:
    """A model factory whose ``qk_layernorm`` is a recipe knob (it changes the parameters, so members
    that differ in it train in separate engine calls); the derivation sets it before each call."""

    def __init__(self, vocab: int, context: int, width: int, depth: int, heads: int, qk_layernorm: bool = False):
        self.shape = dict(vocab=vocab, context=context, width=width, depth=depth, heads=heads)
        self.qk_layernorm = qk_layernorm

    def __call__(self) -> TinyTransformer:
        return TinyTransformer(**self.shape, qk_layernorm=self.qk_layernorm)


def recipe(data, vocab: int, context: int, width: int, depth: int, heads: int, qk_layernorm: bool = False,
           z_loss: float = 0.0, decay: str = "coupled", attention_examples: int = 64,
           monitors: Sequence[Monitor] = (), **settings) -> Recipe:
    """A :class:`~tdlab.core.recipes.Recipe` of :class:`~tdlab.core.transformer.TinyTransformer` on ``data``
    with :class:`ZLossCrossEntropy` and the attention and output-logit monitors.

    Knobs: ``qk_layernorm`` and ``warmup`` (separate engine calls), ``z_loss`` (per member), ``lr``
    and ``weight_decay``. ``decay`` (fixed for the recipe, recorded as a tag): ``"coupled"`` passes
    ``weight_decay`` to AdamW as it is (θ ← θ (1 − s_t η λ)); ``"independent"`` makes it the paper's
    independent decay λ (θ ← θ (1 − s_t λ), AdamW's decay λ/η through
    :func:`independent_weight_decay`; the History records λ). An independent-decay recipe reads
    ``lr`` in a derivation, so its members of one engine call share ``lr`` and ``weight_decay``.
    ``settings`` are the engine's."""
    factory = Factory(vocab, context, width, depth, heads, qk_layernorm)
    extra = tuple(monitors)

    def architecture(qk_layernorm: bool = qk_layernorm) -> dict:
        factory.qk_layernorm = bool(qk_layernorm)
        with torch.random.fork_rng():          # a module of the members' shape, for the attention monitor
            probe = factory()
        return {"monitors": (attention_monitor(probe, attention_examples), output_logit_monitor()) + extra}

    def independent(lr: float = settings.get("lr", 1e-3), weight_decay: float = settings.get("weight_decay", 0.0)) -> dict:
        return {"weight_decay": independent_weight_decay(weight_decay, lr)}

    if decay not in ("coupled", "independent"):
        raise ValueError(f"decay must be 'coupled' or 'independent', got {decay!r}")
    def warm_up(warmup: int = settings.get("warmup", 0)) -> dict:
        return {"warmup": warmup}                  # a knob, so that the History records it

    derive: tuple[Callable[..., dict], ...] = (architecture, warm_up) + ((independent,) if decay == "independent" else ())
    settings = {**settings, "tags": {"decay": decay, **settings.get("tags", {})}}
    return Recipe(data, factory, {"loss": ZLossCrossEntropy(z_loss), **settings}, derive=derive)


# ----------------------------------------------------------------- the paper's own setup


def paper_recipe(decay: str = "independent") -> Recipe:
    """The paper's §2.1 recipe (Wortsman et al. 2023) on the whole standard-library text, for a GPU: 512-character
    windows, a Transformer of width 512, 8 blocks and 8 heads, AdamW (β = (0.9, 0.95), ε = 10⁻⁸, weight decay
    10⁻⁴, ``decay`` independent of the learning rate by default), batch 256, 100 000 steps of warm-up (5000) and
    cosine, z-loss 10⁻⁴ (the small-scale proxies chapter, book/05_stability/01_small_scale_proxies)."""
    return recipe(lambda: text.corpus(context=512, size=480_000), vocab=len(text.VOCAB), context=512,
                  width=512, depth=8, heads=8, optimizer="adamw", betas=(0.9, 0.95), eps=1e-8,
                  batch_size=256, steps=100_000, schedule_name="warmup_cosine", warmup=5_000,
                  eval_every=2_000, z_loss=Z_LOSS, decay=decay, weight_decay=1e-4)
