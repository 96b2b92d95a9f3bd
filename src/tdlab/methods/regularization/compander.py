"""The weight compander: every weight trained through a bounded, zero-repelling function.

Cakaj, Mehnert, Yang, *Weight Compander: A Simple Weight Reparameterization for
Regularization*, IJCNN 2023 (arXiv:2306.16993; no code released). Each weight of the linear
and convolutional layers is reparameterized as

    w = Ψ(v) = a · arctan(v / b)                                          (Eq. 1)

and the optimizer trains v. Ψ bounds the weights, |w| < a·π/2, and its slope

    dΨ/dv = a / (b · (1 + v²/b²))                                       (Eqs. 2–3)

is largest at v = 0 (a/b): a weight near zero moves faster than a large one (an *expander*
near zero, a *compressor* far from it). The initial v is v₀ = b · tan(w₀ / a) (Eq. 4), so
that Ψ(v₀) is the layer's usual initial weight. Biases are not reparameterized. With fixed
a, b the paper applies weight decay to w = Ψ(v), not to v: the penalty (λ/2)·‖Ψ(v)‖², whose
gradient λ·Ψ(v)·Ψ'(v) :class:`CompandedLinear` adds in the backward pass of Ψ (so the
training loop's own weight decay on v must be 0 for these runs).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tdlab.core import augment, data, engine, models
from tdlab.core.config import check_range
from tdlab.core.data import Dataset
from tdlab.core.history import History


def compand(v: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Ψ(v) = a · arctan(v / b) (Eq. 1)."""
    return a * torch.atan(v / b)


def compand_slope(v: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """dΨ/dv = a / (b · (1 + v²/b²)) (Eqs. 2–3)."""
    return a / (b * (1 + (v / b) ** 2))


def expand(w: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """Ψ⁻¹(w) = b · tan(w / a) (Eq. 4: v₀ from the usual initial weight w₀); needs |w| < a·π/2."""
    if bool((w.abs() >= a * math.pi / 2).any()):
        raise ValueError(f"a weight of magnitude ≥ a·π/2 = {a * math.pi / 2:.3g} has no preimage under Ψ (a = {a})")
    return b * torch.tan(w / a)


class _CompandWithDecay(torch.autograd.Function):
    """w = Ψ(v); backward: ∂L/∂v = ∂L/∂w · Ψ'(v) + λ · Ψ(v) · Ψ'(v), the gradient of the loss plus the
    weight-decay penalty (λ/2)·‖Ψ(v)‖² on the weights themselves (the paper's fixed-a, b setting)."""

    generate_vmap_rule = True          # the engine stacks members with vmap(functional_call)

    @staticmethod
    def forward(v, a, b, decay):
        return compand(v, a, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        v, a, b, decay = inputs
        ctx.save_for_backward(v, output)
        ctx.a, ctx.b, ctx.decay = a, b, decay

    @staticmethod
    def backward(ctx, grad):
        v, w = ctx.saved_tensors
        slope = compand_slope(v, ctx.a, ctx.b)
        return (grad + ctx.decay * w) * slope, None, None, None


class CompandedLinear(nn.Module):
    """A linear layer whose weight is Ψ(v): ``v`` is the trained parameter (initialised from
    ``nn.Linear``'s own initial weight by Eq. 4), ``bias`` is an ordinary one; ``decay`` λ is the
    weight decay on Ψ(v) (0: none)."""

    def __init__(self, in_features: int, out_features: int, a: float = 1.0, b: float = 0.6, decay: float = 0.0,
                 bias: bool = True):
        super().__init__()
        check_range("a", a, 0, low_open=True)
        check_range("b", b, 0, low_open=True)
        check_range("decay", decay, 0)
        plain = nn.Linear(in_features, out_features, bias=bias)
        self.a, self.b, self.decay = float(a), float(b), float(decay)
        self.v = nn.Parameter(expand(plain.weight.detach(), self.a, self.b))
        self.bias = plain.bias

    @property
    def weight(self) -> torch.Tensor:
        """The layer's effective weight Ψ(v)."""
        return compand(self.v, self.a, self.b)

    def forward(self, x):
        return F.linear(x, _CompandWithDecay.apply(self.v, self.a, self.b, self.decay), self.bias)

    def extra_repr(self) -> str:
        return f"{self.v.shape[1]} → {self.v.shape[0]}, a={self.a:g}, b={self.b:g}, decay={self.decay:g}"


class CompandedMLP(nn.Module):
    """x → [CompandedLinear → ReLU] × depth → CompandedLinear, on flattened inputs: every weight
    companded, as the paper asks ("each layer must be reparameterized")."""

    def __init__(self, in_features: int, num_classes: int, width: int = 256, depth: int = 2, a: float = 1.0,
                 b: float = 0.6, decay: float = 0.0):
        super().__init__()
        sizes = [in_features] + [width] * depth + [num_classes]
        self.layers = nn.ModuleList(CompandedLinear(i, o, a, b, decay) for i, o in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        h = x.flatten(1)
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if index < len(self.layers) - 1:
                h = torch.relu(h)
        return h

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """E companded MLPs of this shape at once (``params[name]`` stacked to ``(E, ...)``, ``x``
        shared) → ``(E, B, C)``: Ψ of every member's v in one call, one batched product per layer
        (what the engine runs instead of ``vmap``; the tests compare the two)."""
        members = next(iter(params.values())).shape[0]
        h = x.flatten(1).expand(members, -1, -1)                          # (E, B, features)
        for index, layer in enumerate(self.layers):
            w = _CompandWithDecay.apply(params[f"layers.{index}.v"], layer.a, layer.b, layer.decay)   # (E, out, in)
            bias = params.get(f"layers.{index}.bias")
            h = torch.bmm(h, w.transpose(1, 2)) if bias is None else torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
            if index < len(self.layers) - 1:
                h = torch.relu(h)
        return h


class Compander(nn.Module):
    """Ψ as a ``torch.nn.utils.parametrize`` parametrization of an existing layer's ``weight``:
    ``right_inverse`` is Eq. 4, so registering it keeps the layer's initial weight."""

    def __init__(self, a: float, b: float, decay: float = 0.0):
        super().__init__()
        self.a, self.b, self.decay = float(a), float(b), float(decay)

    def forward(self, v):
        return _CompandWithDecay.apply(v, self.a, self.b, self.decay)

    def right_inverse(self, w):
        return expand(w, self.a, self.b)


def compand_model(model: nn.Module, a: float = 1.0, b: float = 0.6, decay: float = 0.0) -> nn.Module:
    """``model`` with every ``nn.Linear`` and ``nn.Conv2d`` weight companded in place (biases and
    batch norm untouched, as the paper does): for networks other than :class:`CompandedMLP`
    (the paper-scale ResNets; such a model trains one member at a time)."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            parametrize.register_parametrization(module, "weight", Compander(a, b, decay))
    return model


def effective_weights(parameters: dict[str, torch.Tensor], a: float | None = None,
                      b: float | None = None) -> torch.Tensor:
    """Every weight of a network as one flat tensor — Ψ(v) for the companded layers' ``v`` (pass
    their a, b), the weight itself for plain ``weight`` parameters; biases left out."""
    names = [n for n in parameters if n.endswith(".v") or n.endswith(".weight")]
    out = []
    for name in names:
        p = parameters[name].detach()
        out.append(compand(p, a, b).flatten() if name.endswith(".v") else p.flatten())
    return torch.cat(out)


def weight_monitor(a: float, b: float, near_zero: float = 0.01, top: float = 0.999):
    """A monitor of the loop's parameters: the largest |w| (``weights``, ``max_abs``), the ``top``
    quantile of |w| (``weights``, ``top_abs``: the tail, less at the mercy of one weight than the
    maximum) and the fraction of weights with |w| < ``near_zero`` (``weights``, ``near_zero``), with
    w = Ψ(v) for companded layers (a, b given) and w itself for plain ones, all layers together."""

    def monitor(ev) -> dict:
        largest, tail, small = [], [], []
        for member in range(ev.members):
            w = effective_weights(ev.parameters(member), a, b).abs()
            largest.append(float(w.max()))
            tail.append(float(torch.quantile(w, top)))
            small.append(float((w < near_zero).float().mean()))
        return {("weights", "max_abs"): largest, ("weights", "top_abs"): tail, ("weights", "near_zero"): small}

    return monitor


def train(data: Dataset, members, *, companded: bool, a: float = 1.0, b: float = 0.6, weight_decay: float = 0.0,
          width: int = 128, depth: int = 2, build=None, near_zero: float = 0.01, **settings) -> History:
    """Train plain or companded networks with one call of the loop and the weight monitor on.

    ``companded=True`` trains :class:`CompandedMLP` (or ``compand_model(build())`` when ``build``
    makes another network) with weight decay ``weight_decay`` on Ψ(v) and none on v;
    ``companded=False`` trains the plain network with ordinary weight decay on w. ``members`` are
    the loop's (seeds, noise rates). The knobs record ``compander`` ("off" or "a, b") and
    ``decay`` (the weight decay on the weights, whichever way it was applied), so plain and
    companded runs sit in one grid.

    The two ways differ beyond the weights: the loop's weight decay on a plain run decays *every*
    parameter, the biases (and a ResNet's batch-norm scales and shifts) included, while a companded run
    decays only Ψ(v) and leaves its biases (and batch norm) undecayed. A plain control is therefore not
    equal to its companded run in everything but the compander: its biases decay too."""
    features, classes = math.prod(data.input_shape), data.num_classes
    if build is None:
        model = ((lambda: CompandedMLP(features, classes, width, depth, a, b, weight_decay)) if companded
                 else (lambda: models.MLP(features, classes, width=width, depth=depth)))
    else:
        model = (lambda: compand_model(build(), a, b, weight_decay)) if companded else build
    tags = {"compander": f"a={a:g}, b={b:g}" if companded else "off", "decay": weight_decay,
            **({"a": a, "b": b} if companded else {}), **settings.pop("tags", {})}
    return engine.run(model, data, members, weight_decay=0.0 if companded else weight_decay, tags=tags,
                      monitors=[weight_monitor(a, b, near_zero), *settings.pop("monitors", [])], **settings)


def train_variants(setup: dict, variants: dict, members, data_seed: int, names=None, note: str = "") -> History:
    """Train the variants ``variants`` — name → (the compander's (a, b), or None for plain training; the weight
    decay; the learning-rate factor) — each as one :func:`train` call on ``setup`` (its keywords) with
    ``members``, and stack them in one History (only ``names``, if given). Every member's knobs carry its
    ``lr_factor`` beside :func:`train`'s ``compander`` and ``decay``, so :func:`variant_members` finds it."""
    from tdlab.core import history as histories

    return histories.concat([
        train(**{**setup, "lr": setup["lr"] * factor, **(dict(zip("ab", ab)) if ab else {})}, members=members,
              companded=ab is not None, weight_decay=decay, data_seed=data_seed, description=name + note,
              tags={"lr_factor": factor})
        for name, (ab, decay, factor) in variants.items() if names is None or name in names])


def variant_members(history: History, variant: tuple, noise_rate: float) -> list[int]:
    """The members of ``history`` (from :func:`train_variants`) trained as ``variant`` — ((a, b) or None, weight
    decay, learning-rate factor) — at label-noise rate ``noise_rate``: one per seed."""
    ab, decay, factor = variant
    wanted = f"a={ab[0]:g}, b={ab[1]:g}" if ab else "off"
    return [i for i, k in enumerate(history.knobs) if k["compander"] == wanted and k["decay"] == decay
            and k["lr_factor"] == factor and k["noise_rate"] == noise_rate]


def final_weights(history: History, member: int):
    """Every weight of one trained network of ``history`` — Ψ(v) for a companded one (its knobs' a, b), w for
    a plain one — as one flat numpy array (:func:`effective_weights`)."""
    knobs = history.knobs[member]
    return effective_weights(dict(history.models[member].named_parameters()), knobs.get("a"), knobs.get("b")).numpy()


# ----------------------------------------------------------------- the paper's own setup


def paper_recipe_settings(seed: int = 0):
    """The paper's ResNet-18 / CIFAR-10 setting (Sec. IV, Table I) as a :class:`~tdlab.core.recipes.Recipe` that loads
    nothing until asked (its data is a function): CIFAR-10 with crop and flip, ResNet-18 (He et al. 2016, the paper's
    [11]: :class:`~tdlab.core.models.ResNet` with blocks (2, 2, 2, 2), not the pre-activation variant) with every convolution and
    linear weight companded at a = 1, b = 0.6, SGD (lr 0.1, momentum 0.9, batch 128) for 200 epochs, the learning
    rate ÷10 at epochs 90 and 136, weight decay 10⁻⁴ on Ψ(v). :func:`paper_setup` is made from it (the recipe card,
    book/03_regularization/02_weight_compander.paper.yaml, checks it), so the two cannot drift apart. It holds the
    settings, a and b among them (:func:`train`'s keywords, not the engine's): train through :func:`paper_setup`
    and :func:`train`, not by calling the recipe."""
    from tdlab.core.recipes import Recipe
    epoch = 50_000 // 128
    return Recipe(lambda: data.standardize(data.load("cifar10")), lambda: models.ResNet((2, 2, 2, 2), 10),
                  dict(a=1.0, b=0.6, optimizer="sgd", lr=0.1, momentum=0.9, batch_size=128, steps=200 * epoch,
                       eval_every=5 * epoch,
                       schedule_name=lambda step: 0.1 ** ((step >= 90 * epoch) + (step >= 136 * epoch)),
                       batch_hook=augment.crop_flip(padding=4, seed=seed), weight_decay=1e-4))


def paper_setup(seed: int = 0) -> dict:
    """The paper-scale setup of the weight-compander chapter (book/03_regularization/02_weight_compander):
    CIFAR-10 with crop and flip (loaded here), ResNet-18 with every convolution and linear weight companded at
    a = 1, b = 0.6, SGD (lr 0.1, momentum 0.9, batch 128) for 200 epochs, the learning rate ÷10 at epochs 90 and
    136 — the keywords the chapter's runs take (:func:`paper_recipe_settings`' settings, less the weight decay,
    which the chapter passes to :func:`train` itself). It trains on all 50 000 training images and the chapter
    reports the final step, where the paper holds a tenth out (9/1 split) and tests the best-validation
    checkpoint."""
    recipe = paper_recipe_settings(seed)
    settings = {k: v for k, v in recipe.settings.items() if k != "weight_decay"}
    return dict(data=recipe.dataset, build=recipe.model, **settings)
