"""The GraNet chapter's setup (book/07_sparse_training/01_granet): the pruning derivation a recipe trains with,
and the paper's own recipe (Liu et al., NeurIPS 2021, "Sparse Training via Boosting Pruning Plasticity with
Neuroregeneration"; official code `VITA-Group/GraNet`, its CIFAR-10 ResNet-34 run).
"""
from __future__ import annotations

from typing import Callable

from tdlab.core import augment, data, models
from tdlab.core.recipes import Recipe
from tdlab.methods.sparse_training.sparsity import Pruner

EPOCH = 50_000 // 128            # CIFAR-10 steps per epoch at batch 128


def pruning(update_every: int, prune_end: int) -> Callable[..., dict]:
    """A recipe's derivation: a :class:`~tdlab.methods.sparse_training.sparsity.Pruner` step hook and its
    sparsity monitor. Its knobs — ``method``, ``final_sparsity``, ``regrowth``, ``update_every``,
    ``prune_start``, ``prune_end`` — are one value, or a list with one per member; the schedule's two step
    counts are the defaults given here."""
    def derive(method="granet", final_sparsity=0.98, regrowth=0.5, update_every=update_every, prune_start=0,
               prune_end=prune_end):
        hook = Pruner(method, final_sparsity, prune_start=prune_start, prune_end=prune_end,
                      update_every=update_every, regrowth=regrowth)
        return {"step_hook": hook, "monitors": [hook.monitor]}

    return derive


def paper_recipe(seed: int = 0) -> Recipe:
    """The paper's CIFAR-10 run: ResNet-34, SGD with Nesterov momentum 0.9, lr 0.1 divided by 10 at 50% and 75%
    of 160 epochs, weight decay 5·10⁻⁴, batch 128, random crop (padding 4) and flip; masks updated every
    ΔT = 1000 steps until epoch 80 (the official code's defaults for this run)."""
    return Recipe(lambda: data.standardize(data.load("cifar10")), lambda: models.ResNet34(10, 3),
                  {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4,
                   "batch_size": 128, "steps": 160 * EPOCH, "schedule_name": "step", "eval_every": 2 * EPOCH,
                   "batch_hook": augment.crop_flip(padding=4, seed=seed)},
                  derive=(pruning(update_every=1000, prune_end=80 * EPOCH),))
