"""The Z-loss chapter's paper-scale setup (book/01_noisy_labels/05_zloss). The Z-loss itself is a loss of the core
(:class:`tdlab.core.losses.ZLoss`); de Brébisson & Vincent (2016) trained a word-level language model, which the
book does not run, so the paper-scale recipe is a standard image benchmark with many classes instead (the chapter
says so)."""
from __future__ import annotations

from tdlab.core import augment, data, models
from tdlab.core.recipes import Recipe


def paper_recipe(seed: int = 0) -> Recipe:
    """CIFAR-100 with crop and flip, ResNet-34, SGD (lr 0.1, momentum 0.9, weight decay 5·10⁻⁴, batch 128) for 200
    epochs on a cosine schedule — not the paper's own (word-level) setup."""
    epoch = 50_000 // 128
    return Recipe(lambda: data.standardize(data.load("cifar100")), lambda: models.ResNet34(num_classes=100),
                  {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128,
                   "steps": 200 * epoch, "eval_every": 5 * epoch, "schedule_name": "cosine",
                   "batch_hook": augment.crop_flip(padding=4, seed=seed)})
