"""Recipes: a chapter's whole training setup in one object, and the book's standard setups.

A :class:`Recipe` holds the data, the model and the settings of :func:`tdlab.core.engine.run`
that a chapter keeps fixed, plus *derivations*: small functions that turn a chapter's own
knobs into engine settings (mixup's α into a batch hook, a training fraction into a data
split, an optimizer's name into a factory). A recipe is what a chapter trains with:

- ``recipe(noise_rate=0.5, lam=3)`` trains one run with some knobs changed — the ``run``
  function a widget panel calls;
- ``recipe.sweep([{...}, {...}], **knobs)`` trains several, stacked where they can be
  (members that need different derived settings go in separate engine calls).

Every knob a run was given lands in its History's knobs, so a panel finds a precomputed
run by its knobs. A chapter states only what differs from a standard setup
(``recipes.mnist1d_cnn(lr=3e-3)``); :func:`pick` chooses the CPU or the paper scale from
``TDLAB_SCALE``.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from tdlab.core import data as datasets
from tdlab.core import augment, models
from tdlab.core.config import env_scale
from tdlab.core.data import Dataset
from tdlab.core.engine import KNOBS, run
from tdlab.core.history import History, concat
from tdlab.core.losses import LOSSES, get_loss

ENGINE_SETTINGS = tuple(p for p in inspect.signature(run).parameters if p not in ("model", "data", "members",
                                                                                  "loss_kwargs"))


@dataclass
class Recipe:
    """Data, model, fixed engine settings and derivations of one chapter's runs.

    - ``data``: a :class:`~tdlab.core.data.Dataset`, or a function that makes one, called when first
      needed (a paper-scale recipe downloads nothing until it trains); its parameters, if any,
      are knobs (``lambda train_fraction=0.6: ...``), and each setting is made once.
    - ``model``: a factory ``() -> nn.Module``.
    - ``settings``: keywords of :func:`tdlab.core.engine.run` (``optimizer``, ``lr``, ``steps``,
      ``loss``, ``noise_rate``, ...), plus ``seed``, the default member seed.
    - ``derive``: functions ``f(knob=default, ...) -> {engine setting: value}``; a knob named in
      a derivation's signature goes to it (and, if it is also an engine setting, to the engine).
      Members whose derivation knobs differ train in separate engine calls, except for a
      derivation marked :func:`per_member` (one that makes only a ``batch_hook``, or only an
      ``optimizer`` that is a flat rule with a ``per_member`` join, SPAM's): members that differ
      only in its knobs train in one call, each with its own hook or optimizer settings.
    """

    data: Dataset | Callable[[], Dataset]
    model: Callable[[], nn.Module]
    settings: dict = field(default_factory=dict)
    derive: tuple[Callable[..., dict], ...] = ()
    _loaded: dict = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ building
    def but(self, *derive: Callable[..., dict], **settings) -> "Recipe":
        """A copy with more derivations and some settings changed."""
        return dataclasses.replace(self, settings={**self.settings, **settings}, derive=self.derive + derive,
                                   _loaded=self._loaded)

    @property
    def dataset(self) -> Dataset:
        """The recipe's data at its default knobs."""
        return self._data({})

    def _data(self, knobs: dict) -> Dataset:
        if not callable(self.data):
            return self.data
        bound = inspect.signature(self.data).bind(**{k: v for k, v in knobs.items() if k in _parameters(self.data)})
        bound.apply_defaults()
        key = ("data",) + _key(bound.arguments)
        if key not in self._loaded:
            self._loaded[key] = self.data(**bound.arguments)
        return self._loaded[key]

    def _derivations(self) -> tuple[Callable, ...]:
        """The functions whose parameters are knobs: the data maker (if it has any) and ``derive``."""
        return ((self.data,) if callable(self.data) else ()) + self.derive

    @property
    def steps(self) -> int:
        return self.settings.get("steps", inspect.signature(run).parameters["steps"].default)

    def knob_default(self, name: str):
        """The default of a knob of a derivation (or of the data maker): what a run uses when no member sets
        it (a chapter reads its schedule's step counts this way, not from a function's ``__defaults__``)."""
        for f in self._derivations():
            parameter = inspect.signature(f).parameters.get(name)
            if parameter is not None and parameter.default is not inspect.Parameter.empty:
                return parameter.default
        if name in self.settings:
            return self.settings[name]
        raise ValueError(f"{name!r} is no knob with a default of this recipe; its derivations take "
                         f"{sorted(p for f in self._derivations() for p in _parameters(f))}")

    def knob_names(self) -> set[str]:
        """Every knob a run of this recipe accepts."""
        names = set(KNOBS) | set(ENGINE_SETTINGS) | {p for f in self._derivations() for p in _parameters(f)}
        return names | set(self._loss_names(self.settings))

    # ------------------------------------------------------------------ training
    def __call__(self, callback: Callable[[History], None] | None = None, **knobs) -> History:
        """One run with ``knobs`` changed (the ``run`` of a widget panel)."""
        return self.sweep([{}], callback=callback, **knobs).member(0)

    def sweep(self, members, **knobs) -> History:
        """Several runs: each member dict changes some knobs on top of ``knobs``.

        Members that share every knob outside the engine's per-member ones (:data:`KNOBS` and
        the loss's coefficients) are trained in one engine call; the History lists the
        members in the order given.
        """
        members = [dict(m) for m in members] or [{}]
        unknown = {k for m in members for k in m} | set(knobs)
        unknown -= self.knob_names()
        if unknown:
            raise ValueError(f"unknown knob {sorted(unknown)[0]!r}; this recipe takes {sorted(self.knob_names())}")
        derived = {p for f in self._derivations() if not _is_per_member(f) for p in _parameters(f)}
        hook_knobs = {p for f in self.derive if _is_per_member(f) for p in _parameters(f)} - derived
        groups: dict[tuple, list[int]] = {}
        resolved = []
        for index, member in enumerate(members):
            full = {**self.settings, **knobs, **member}
            # what a derivation reads must be the same for all members of one engine call (a
            # per_member derivation's knobs excepted: each member gets its own hook)
            per_member = ((set(KNOBS) | set(self._loss_hyperparameters(full))) - derived) | hook_knobs
            shared = {k: v for k, v in full.items() if k not in per_member}
            resolved.append((full, per_member, shared))
            groups.setdefault(_key(shared), []).append(index)
        parts, order = [], []
        for indices in groups.values():
            full, per_member, shared = resolved[indices[0]]
            parts.append(self._train_group(shared, [resolved[i][0] for i in indices], per_member))
            order += indices
        history = concat(parts)
        if order != sorted(order):
            history = concat([history.member(order.index(i)) for i in range(len(order))])
        return history

    # ------------------------------------------------------------------ helpers
    def _loss_hyperparameters(self, settings: dict) -> tuple[str, ...]:
        loss = settings.get("loss", "ce")
        return get_loss(loss).hyperparameters if isinstance(loss, str) else loss.hyperparameters

    def _loss_names(self, settings: dict) -> tuple[str, ...]:
        """Every knob the loss takes: the hyperparameters of every loss in the registry when the loss
        itself may be a knob, else the loss's own hyperparameters and settings."""
        loss = settings.get("loss", "ce")
        chosen = get_loss(loss) if isinstance(loss, str) else loss
        everyone = {k for cls in LOSSES.values() for k in cls.hyperparameters + cls.settings}
        return tuple(everyone) if isinstance(loss, str) else chosen.hyperparameters + chosen.settings

    def _train_group(self, shared: dict, fulls: list[dict], per_member: set[str]) -> History:
        loss_names = set(self._loss_names(shared))
        settings = {k: v for k, v in shared.items() if k in ENGINE_SETTINGS or k == "seed" or k in loss_names}
        tags = {k: v for k, v in shared.items() if k not in settings}
        for derivation in self.derive:
            names = _parameters(derivation)
            if _is_per_member(derivation):
                self._member_hooks(derivation, fulls, settings, tags)
                continue
            bound = inspect.signature(derivation).bind(**{k: v for k, v in shared.items() if k in names})
            bound.apply_defaults()
            tags.update(bound.arguments)           # the History records the knobs as the chapter names them
            made = derivation(**bound.arguments)
            # a knob the derivation reads that is also an engine setting (lr, weight_decay, ...) reaches the
            # engine too, at the value the derivation used, unless the derivation set it itself
            for key, value in bound.arguments.items():
                if key in ENGINE_SETTINGS and key not in made:
                    settings.setdefault(key, value)
            settings.update(made)
        if callable(self.data):
            tags.update({k: v for k, v in shared.items() if k in _parameters(self.data)})
            for name, parameter in inspect.signature(self.data).parameters.items():
                tags.setdefault(name, parameter.default)
        data = self._data(shared)
        seed = settings.pop("seed", 0)
        # the engine takes its own knobs and the loss's per member; a per_member derivation's other knobs made the hooks
        engine_knobs = set(KNOBS) | set(self._loss_hyperparameters(shared))
        members = [{k: v for k, v in full.items() if k in per_member & engine_knobs} for full in fulls]
        members = [{"seed": seed, **m} for m in members]
        tags.update(settings.pop("tags", {}) or {})
        return run(self.model, data, members, tags=tags, **settings)

    @staticmethod
    def _member_hooks(derivation: Callable, fulls: list[dict], settings: dict, tags: dict) -> None:
        """The batch hook of a per_member derivation for one engine call: the derivation's hook where
        every member has the same knobs (recorded as tags), else one hook per member
        (:func:`tdlab.core.augment.per_member`, each member's knobs in its own History entry). A derivation
        that makes only an ``optimizer`` (a flat rule) is joined the same way, by the rule's own
        ``per_member`` (:meth:`tdlab.methods.stability.spam.SPAMRule.per_member`)."""
        signature, names = inspect.signature(derivation), _parameters(derivation)
        arguments = []
        for full in fulls:
            bound = signature.bind(**{k: v for k, v in full.items() if k in names})
            bound.apply_defaults()
            arguments.append(dict(bound.arguments))
        if all(_key(a) == _key(arguments[0]) for a in arguments):
            made = [derivation(**arguments[0])]
            tags.update(arguments[0])
        else:
            made = [derivation(**a) for a in arguments]
        if all(set(m) == {"optimizer"} and hasattr(m["optimizer"], "per_member") for m in made):
            settings["optimizer"] = (made[0]["optimizer"] if len(made) == 1
                                     else made[0]["optimizer"].per_member([m["optimizer"] for m in made], arguments))
            return
        if any(set(m) != {"batch_hook"} for m in made):
            raise ValueError(f"a per_member derivation must return only a batch_hook (or only an optimizer with a "
                             f"per_member join); {derivation.__name__} returned {sorted(made[0])}")
        if "batch_hook" in settings:
            raise ValueError("two derivations make a batch_hook; compose them in one")
        settings["batch_hook"] = (made[0]["batch_hook"] if len(made) == 1
                                  else augment.per_member([m["batch_hook"] for m in made], arguments))


def per_member(derivation: Callable[..., dict]) -> Callable[..., dict]:
    """Mark a derivation that makes only a ``batch_hook`` (mixup on or off, its switch-off step, ...)
    as one whose knobs may differ between the members of one engine call: ERM, mixup and
    early-stopped mixup then train together, each member with its own hook
    (:func:`tdlab.core.augment.per_member`), instead of one engine call each. Every member's batches
    are what its hook alone would make. A derivation that makes only an ``optimizer`` with a
    ``per_member`` join (SPAM's ΔT and θ: :meth:`tdlab.methods.stability.spam.SPAMRule.per_member`) may be marked
    too: each member then steps with its own settings, stacked."""
    derivation.per_member = True
    return derivation


def _is_per_member(function: Callable) -> bool:
    return bool(getattr(function, "per_member", False))


def _parameters(function: Callable) -> tuple[str, ...]:
    return tuple(inspect.signature(function).parameters)


def _key(values: dict) -> tuple:
    """A hashable key of a settings dict (values compared by identity when not hashable)."""
    out = []
    for k in sorted(values):
        v = values[k]
        try:
            hash(v)
            out.append((k, v))
        except TypeError:
            out.append((k, id(v)))
    return tuple(out)


def pick(*, cpu: Callable[[], Recipe], paper: Callable[[], Recipe]) -> Recipe:
    """The CPU recipe or the paper's, as ``TDLAB_SCALE`` says (each given as a function, so the
    other is never built)."""
    return paper() if env_scale() == "paper" else cpu()


# ----------------------------------------------------------------- the book's standard setups


def mnist1d_cnn(**settings) -> Recipe:
    """MNIST-1D (Greydanus 2020: 4000 training and 1000 test sequences of length 40, 10 classes,
    generated offline) and the MNIST-1D paper's small 1-D CNN; AdamW, batches of 128."""
    return Recipe(lambda: datasets.load("mnist1d"), lambda: models.CNN1d(length=40, num_classes=10, channels=32),
                  {"optimizer": "adamw", "batch_size": 128, **settings})


def digits_cnn(channels: int = 32, **settings) -> Recipe:
    """scikit-learn's 8×8 digits (a fixed stratified split: 1257 train, 540 test) and a small
    2-D CNN (three 3×3 conv layers with ``channels`` and twice as many, two max-pools); AdamW,
    batches of 64."""
    return Recipe(lambda: datasets.load("digits"), lambda: models.CNN2d(1, 10, channels=channels, image_size=8),
                  {"optimizer": "adamw", "batch_size": 64, **settings})


def tabular_mlp(dataset: str, in_features: int, num_classes: int, width: int, **settings) -> Recipe:
    """The LDR-KL paper's protocol for its tabular sets (Zhu, Ying & Yang 2023, official
    ``experiment.py``): a two-hidden-layer tanh MLP of ``width`` units, SGD with momentum 0.9,
    batches of 64, the learning rate ÷10 at 50% and 75% of training (epochs 50 and 75 of 100)."""
    return Recipe(lambda: datasets.load(dataset),
                  lambda: models.MLP(in_features, num_classes, width=width, depth=2, activation="tanh"),
                  {"optimizer": "sgd", "momentum": 0.9, "batch_size": 64, "schedule_name": "step", **settings})


def modular_addition(p: int, model: Callable[[], nn.Module], seed: int = 0, train_fraction: float = 0.5,
                     **settings) -> Recipe:
    """All p² pairs (a, b) with label (a + b) mod p, as concatenated one-hots, split at random
    (``seed``) into a training fraction and a test set — the fraction is a knob; full-batch
    training (one step = one epoch)."""
    def split(train_fraction: float = train_fraction) -> Dataset:
        return datasets.load("modular", p=p, operation="add", train_fraction=train_fraction, seed=seed)

    return Recipe(split, model, {"batch_size": None, **settings})


def cifar10(model: Callable[[], nn.Module], **settings) -> Recipe:
    """CIFAR-10, standardized per channel (downloaded once; offline it raises
    :class:`~tdlab.core.data.DatasetUnavailableError`), with ``model``; for a GPU."""
    return Recipe(lambda: datasets.standardize(datasets.load("cifar10")), model, dict(settings))


def cutmix_cifar100(model: Callable[[], nn.Module], epochs: int = 300, **settings) -> Recipe:
    """CIFAR-100, standardized per channel (downloaded once), with ``model`` and the CIFAR optimizer of
    CutMix's official ``train.py`` (clovaai/CutMix-PyTorch; Yun et al., ICCV 2019, Table 5): SGD with
    Nesterov momentum 0.9, lr 0.25, batches of 64, weight decay 10⁻⁴, ``epochs`` epochs with the
    learning rate ÷10 at 50% and 75% of them (``schedule_name="step"``), the test set evaluated every
    epoch (781 steps: 50 000 / 64, rounded down); for a GPU."""
    epoch = 50_000 // 64
    return Recipe(lambda: datasets.standardize(datasets.load("cifar100")), model,
                  dict(optimizer="sgd", lr=0.25, momentum=0.9, nesterov=True, weight_decay=1e-4, batch_size=64,
                       steps=epochs * epoch, eval_every=epoch, schedule_name="step", **settings))


def cutmix_comparison(num_classes: int, cutout_size: int, seed: int, *, crop: bool = False,
                      cutmix_prob: float = 1.0, cutmix_beta: float = 1.0, mixup_alpha: float = 1.0):
    """The :func:`per_member` derivation of the CutMix paper's comparison (Yun et al., ICCV 2019, Table 5):
    a run's knob ``method`` picks its batch hook — ``"CutMix"`` (:func:`tdlab.core.augment.cutmix`; at
    ``cutmix_prob`` 0 it never mixes: the baseline), ``"mixup"`` (:func:`tdlab.core.augment.mixup`) or
    ``"Cutout"`` (:func:`tdlab.core.augment.cutout`, a ``cutout_size`` square) — after crop and flip
    (:func:`tdlab.core.augment.crop_flip`, padding 4) when ``crop``. The knobs ``cutmix_prob``, ``cutmix_beta``
    and ``mixup_alpha`` default to the values given here; every hook draws from ``seed``, whatever the
    run's initialisation, so two runs with the same knobs see the same λ, π and boxes."""
    @per_member
    def augmentation(method: str = "CutMix", cutmix_prob: float = cutmix_prob, cutmix_beta: float = cutmix_beta,
                     mixup_alpha: float = mixup_alpha) -> dict:
        makers = {"CutMix": lambda: augment.cutmix(cutmix_beta, num_classes, prob=cutmix_prob, seed=seed),
                  "mixup": lambda: augment.mixup(mixup_alpha, num_classes, seed=seed),
                  "Cutout": lambda: augment.cutout(cutout_size, seed=seed)}
        if method not in makers:
            raise ValueError(f"method must be one of {sorted(makers)}, got {method!r}")
        flip = augment.crop_flip(padding=4, seed=seed) if crop else None
        return {"batch_hook": augment.compose(flip, makers[method]())}

    return augmentation


class ScaledInit:
    """A model factory whose initialisation scale α is a knob of the recipe, ``init_scale``: every
    initial weight and bias is multiplied by α (:func:`tdlab.core.models.scale_init_`; Liu et al.'s
    Omnigrok and the ``initialization_scale`` of Humayun et al.'s MLP script).

    The scale is not one of the engine's per-member knobs (it shapes the model before training), so
    members with different scales train in separate engine calls; the recipe's derivation
    :meth:`derive` sets the scale just before each call builds its models, and the History records
    it among the knobs. Built by :func:`scaled_init`.
    """

    def __init__(self, build: Callable[[], nn.Module], init_scale: float = 1.0):
        self.build, self.init_scale = build, init_scale

    def __call__(self) -> nn.Module:
        return models.scale_init_(self.build(), self.init_scale)

    def derive(self, init_scale: float | None = None) -> dict:
        """The recipe's derivation: remember the scale of the engine call about to be made."""
        if init_scale is not None:
            self.init_scale = init_scale
        return {}


def scaled_init(data: Dataset | Callable[[], Dataset], build: Callable[[], nn.Module], init_scale: float = 1.0,
                **settings) -> Recipe:
    """A :class:`Recipe` whose model is ``build()`` with every initial parameter multiplied by
    ``init_scale``, a knob like any other (``recipe.sweep([{"init_scale": 1}, {"init_scale": 8}])``
    trains one engine call per scale)."""
    factory = ScaledInit(build, init_scale)

    def init(init_scale: float = init_scale) -> dict:
        return factory.derive(init_scale)

    return Recipe(data, factory, dict(settings), derive=(init,))
