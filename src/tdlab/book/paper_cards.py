"""Each chapter's recipe card: the paper's own setup, value by value with where each comes from, against the
paper recipe the chapter's ``TDLAB_SCALE=paper`` runs (issue 34 item 2).

A card is committed beside its chapter, ``book/<part>/<chapter>.paper.yaml``::

    chapter: 01_noisy_labels/01_memorization_elr
    paper: Liu et al., NeurIPS 2020 — Early-Learning Regularization Prevents Memorization of Noisy Labels
    recipe: tdlab.methods.noisy_labels.early_learning:paper_recipe     # built with ``arguments:`` (a mapping), if any
    train_size: 50000            # examples an epoch reads (steps ↔ epochs); omit for a card without epochs
    settings:                    # the paper's values; every one must equal the recipe's
      optimizer: {value: sgd, source: "App. G.3"}
      lr: {value: 0.02, source: "App. G.3"}
      epochs: {value: 120, source: "App. G.3"}
      lr_multiplier_at_epoch: {value: {0: 1, 40: 0.01, 80: 0.0001}, source: "App. G.3"}
    differences:                 # where the recipe deliberately departs: the paper's value, ours, and why
      train_size: {paper: 45000, ours: 50000, why: "the paper holds 5000 images out for validation"}

:func:`ours` reads a recipe's values (:data:`READERS`: the engine settings, ``epochs`` from ``steps``, the model's
class and parameter count, the augmentation, the last step's learning rate, the loss object's hyper-parameters);
:func:`disagreements` lists every card value the recipe does not hold (``make unit`` fails on any:
tests/test_paper_cards.py); :func:`table` is what the chapter shows, with :func:`cost` — what the paper run costs on
a reference GPU (issue 34 item 3), from the card's ``cost`` entry::

    cost:
      input: [3, 32, 32]     # one example's shape (token sequences: ``dtype: long``)
      test_size: 10000       # examples each evaluation reads beside ``train_size`` (``cost: train_size`` overrides it)
      runs: 2                # the paper-scale runs of the chapter's main comparison (the method and its control)
      steps: 2350            # optional: where the run's length is not the recipe's ``steps`` setting (also
                             # ``eval_every``, ``batch_size``); a local dataset's split sizes are read from it
"""
from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path
from typing import Any, Callable

import yaml

SUFFIX = ".paper.yaml"
BOOK = Path(__file__).resolve().parents[3] / "book"


def path(chapter: str, book: Path = BOOK) -> Path:
    return book / f"{chapter}{SUFFIX}"


def load(chapter: str, book: Path = BOOK) -> dict:
    """The committed card of ``chapter`` (a clear error when it has none)."""
    p = path(chapter, book)
    if not p.exists():
        raise FileNotFoundError(f"{chapter} has no recipe card ({p}); see tdlab.book.paper_cards")
    card = yaml.safe_load(p.read_text())
    for key in ("chapter", "paper", "recipe", "settings"):
        if key not in card:
            raise ValueError(f"{p}: a card needs {key!r}")
    for name, entry in card["settings"].items():
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("source"):
            raise ValueError(f"{p}: setting {name!r} needs a value and its source (the paper's table or official code)")
    return card


def recipe_of(card: dict):
    """The paper recipe a card names (``module:function``), built with the card's ``arguments`` (none if absent)."""
    module, _, function = card["recipe"].partition(":")
    return getattr(importlib.import_module(module), function)(**(card.get("arguments") or {}))


def _multipliers(recipe, card: dict, at: dict) -> dict:
    """The recipe's learning-rate multiplier at each epoch of ``at`` (the card's keys; 0 is the first step),
    read from its schedule as the loop builds it (:func:`tdlab.core.engine.schedule`)."""
    from tdlab.core import engine
    rule = engine.schedule(recipe.settings.get("schedule_name", "constant"), recipe.steps,
                           recipe.settings.get("warmup", 0))
    per_epoch = card["train_size"] // recipe.settings["batch_size"]
    return {epoch: round(float(rule(int(round(epoch * per_epoch)))), 12) for epoch in at}


def _epochs_asked(card: dict) -> dict:
    """The epochs at which a card states the learning-rate multiplier: its setting's value, else (where the recipe
    departs from the paper's schedule) its difference's ``ours``."""
    entry = card["settings"].get("lr_multiplier_at_epoch")
    return entry["value"] if entry else card["differences"]["lr_multiplier_at_epoch"]["ours"]


def _model(recipe) -> Any:
    import torch
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return recipe.model()


def _model_name(recipe) -> str:
    """The factory's name, else the class of the model it builds; a CIFAR ResNet of basic blocks
    (:class:`tdlab.core.models.ResNet`, made by a lambda) is named by its depth, ``ResNet34``."""
    if getattr(recipe.model, "__name__", "<lambda>") != "<lambda>":
        return recipe.model.__name__
    model = _model(recipe)
    from tdlab.core import models
    if type(model) is models.ResNet:
        return f"ResNet{2 * sum(isinstance(m, models.BasicBlock) for m in model.modules()) + 2}"
    return type(model).__name__


def _loss_attribute(name: str) -> Callable:
    """A reader of a hyper-parameter of the recipe's loss object (``None`` when its loss is a name or lacks it)."""
    return lambda r, card: getattr(r.settings.get("loss"), name, None)


def _augmentation(recipe) -> Any:
    """The recipe's batch hook as its ``settings`` record it (crop and flip: ``{crop_padding: 4, crop_flip: true}``),
    ``"none"`` without one. A recipe whose hook is made by a :func:`tdlab.core.recipes.per_member` derivation (the
    mixup and CutMix chapters: the method is a knob) is read at the derivation's default knobs."""
    hook = recipe.settings.get("batch_hook")
    if hook is None:
        from tdlab.core import recipes
        made = [f() for f in recipe.derive if recipes._is_per_member(f)
                and all(p.default is not p.empty for p in inspect.signature(f).parameters.values())]
        hook = next((m["batch_hook"] for m in made if "batch_hook" in m), None)
    return "none" if hook is None else getattr(hook, "settings", type(hook).__name__)


def _final_lr(recipe) -> float:
    """The learning rate at the run's last step: ``lr`` × the schedule's multiplier at ``steps``."""
    from tdlab.core import engine
    rule = engine.schedule(recipe.settings.get("schedule_name", "constant"), recipe.steps,
                           recipe.settings.get("warmup", 0))
    lr = recipe.settings.get("lr", inspect.signature(engine.run).parameters["lr"].default)
    return round(lr * float(rule(recipe.steps)), 15)


def _setting_or_knob(recipe, name: str) -> Any:
    """A setting of the recipe, else the default of the knob of that name of one of its derivations (a chapter whose
    optimizer is chosen by a knob: ``optimizer="AdamW"``, ``lr=0.01``), else ``None``."""
    if name in recipe.settings:
        return recipe.settings[name]
    try:
        return recipe.knob_default(name)
    except ValueError:
        return None


READERS: dict[str, Callable] = {
    "optimizer": lambda r, card: _setting_or_knob(r, "optimizer"),
    "lr": lambda r, card: _setting_or_knob(r, "lr"),
    "momentum": lambda r, card: r.settings.get("momentum"),
    "nesterov": lambda r, card: r.settings.get("nesterov", False),
    "weight_decay": lambda r, card: r.settings.get("weight_decay", 0.0),
    "betas": lambda r, card: list(r.settings.get("betas", (0.9, 0.999))),
    "batch_size": lambda r, card: r.settings.get("batch_size"),
    "steps": lambda r, card: r.steps,
    "epochs": lambda r, card: r.steps / (card["train_size"] // r.settings["batch_size"]),
    "warmup": lambda r, card: r.settings.get("warmup", 0),
    "lr_multiplier_at_epoch": lambda r, card: _multipliers(r, card, _epochs_asked(card)),
    "noise": lambda r, card: r.settings.get("noise"),
    "noise_rate": lambda r, card: r.settings.get("noise_rate"),
    "loss": lambda r, card: r.settings.get("loss", "ce") if isinstance(r.settings.get("loss", "ce"), str)
    else type(r.settings["loss"]).__name__,
    "model": lambda r, card: _model_name(r),          # the factory's name, else the class's (ResNet: by depth)
    "parameters": lambda r, card: sum(p.numel() for p in _model(r).parameters()),
    "augmentation": lambda r, card: _augmentation(r),
    "final_lr": lambda r, card: _final_lr(r),
    "decay": lambda r, card: (r.settings.get("tags") or {}).get("decay"),   # weight decay coupled to lr or not
    "z_loss": _loss_attribute("z_loss"),
    "new_weight": _loss_attribute("new_weight"),
    "student_temperature": _loss_attribute("student_temperature"),
    "teacher_temperature": _loss_attribute("teacher_temperature"),
    "forget_rate": _loss_attribute("forget_rate"),      # co-teaching's τ
    "sigma": lambda r, card: getattr(_model(r), "sigma", None),   # nested dropout's σ (the model's)
}


def ours(recipe, card: dict, name: str):
    """The recipe's value of setting ``name`` (a key of :data:`READERS`, else a knob's default or a setting)."""
    if name in READERS:
        return READERS[name](recipe, card)
    return recipe.knob_default(name)


def _equal(a, b, tolerance: float = 0.0) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], tolerance) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=max(tolerance, 1e-9), abs_tol=1e-12)
    return a == b


def disagreements(card: dict, recipe=None) -> list[str]:
    """Every card setting the recipe does not hold, and every stated difference the recipe does not make."""
    recipe = recipe_of(card) if recipe is None else recipe
    found = []
    for name, entry in card["settings"].items():
        value = ours(recipe, card, name)
        if not _equal(value, entry["value"], entry.get("tolerance", 0.0)):
            found.append(f"{card['chapter']}: {name} is {value!r} in the recipe, {entry['value']!r} in the paper "
                         f"({entry['source']})")
    for name, entry in (card.get("differences") or {}).items():
        value = card.get(name) if name == "train_size" else ours(recipe, card, name)
        if not _equal(value, entry["ours"]):
            found.append(f"{card['chapter']}: the card says ours is {entry['ours']!r} for {name}, the recipe has {value!r}")
    return found


def table(card: dict, recipe=None):
    """The chapter's recipe card: setting, ours, the paper's, where the paper's comes from (a difference says why)."""
    import pandas as pd
    recipe = recipe_of(card) if recipe is None else recipe
    rows = [{"setting": name, "ours (TDLAB_SCALE=paper)": _shown(ours(recipe, card, name)),
             "paper": _shown(entry["value"]), "source": entry["source"]} for name, entry in card["settings"].items()]
    rows += [{"setting": name, "ours (TDLAB_SCALE=paper)": _shown(entry["ours"]), "paper": _shown(entry["paper"]),
              "source": f"differs: {entry['why']}"} for name, entry in (card.get("differences") or {}).items()]
    return pd.DataFrame(rows).set_index("setting")


def _shown(value):
    """A value as the table shows it: a float below 10⁻⁴ in magnitude as text (``1e-25``), which pandas would
    print as 0 at its default precision; anything else as it is."""
    if isinstance(value, float) and 0 < abs(value) < 1e-4:
        return f"{value:.3g}"
    return value


def cost(card: dict, recipe=None) -> dict:
    """What the card's paper run costs (issue 34 item 3). FLOPs of one forward and backward pass per example are
    counted by :func:`tdlab.core.smoke.model_size_and_flops` on the paper model (on PyTorch's ``meta`` device:
    shapes only, so an 85M-parameter model counts in about a second on a CPU); the run reads
    ``steps × batch`` examples and, at each evaluation, both splits forward (:func:`tdlab.core.smoke.paper_flops`);
    ``runs`` such runs cost ``hours`` on :data:`tdlab.core.smoke.REFERENCE_GPU` at
    :data:`~tdlab.core.smoke.UTILIZATION` of its peak."""
    import torch
    from tdlab.core import smoke
    recipe = recipe_of(card) if recipe is None else recipe
    if "cost" not in card:
        raise ValueError(f"{card['chapter']}: the card has no 'cost' entry (input, test_size, runs)")
    spec = card["cost"]
    x = torch.zeros(2, *spec["input"], dtype=getattr(torch, spec.get("dtype", "float32")))
    per_example = smoke.model_size_and_flops(recipe.model, x)[1]
    train, test = spec.get("train_size", card.get("train_size")), spec.get("test_size")
    if train is None or test is None:      # a local dataset (the bundled text): its own split sizes
        train, test = recipe.dataset.num_train, recipe.dataset.num_test
    settings = {**recipe.settings, **{k: spec[k] for k in ("steps", "eval_every", "batch_size") if k in spec}}
    runs = spec.get("runs", 1)
    flops = smoke.paper_flops(per_example, settings, train, test, runs)
    return {"flops_per_example": per_example, "runs": runs, "flops": flops, "hours": smoke.gpu_hours(flops),
            "gpu": smoke.REFERENCE_GPU, "utilization": smoke.UTILIZATION, "tflops": smoke.REFERENCE_TFLOPS}


def show(chapter: str) -> None:
    """The chapter's cell for its paper recipe: the card (:func:`table`) and one sentence of what the paper run
    costs (:func:`cost`), every number computed from the recipe now."""
    from IPython.display import Markdown, display
    card = load(chapter)
    recipe = recipe_of(card)
    display(table(card, recipe))
    c = cost(card, recipe)
    display(Markdown(
        f"**What the paper run costs.** One forward and backward pass of the paper's model takes "
        f"{c['flops_per_example']:.3g} FLOPs per example (counted by PyTorch's `FlopCounterMode`: matrix products "
        f"and convolutions); {c['runs']} run(s) of the recipe, with their evaluations, take {c['flops']:.3g} FLOPs: "
        f"about **{c['hours']:.2g} GPU-hours** on an {c['gpu']} at {c['utilization']:.0%} of its "
        f"{c['tflops']:g} TFLOP/s dense TF32 peak (small models reach less of it, so read this as a lower bound)."))


def chapters(book: Path = BOOK) -> list[str]:
    """The chapters that have a card."""
    return sorted(str(p.relative_to(book))[: -len(SUFFIX)] for p in book.glob(f"*/*{SUFFIX}"))
