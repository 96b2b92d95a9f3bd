"""The ELR chapter's paper recipe (book/01_noisy_labels/01_memorization_elr): Liu et al. (NeurIPS 2020), App. G.3,
on CIFAR-10. The ELR loss itself is a loss of the core (``loss="elr"``, :mod:`tdlab.core.losses`)."""
from __future__ import annotations

from tdlab.core import augment, engine, models, recipes
from tdlab.core.recipes import Recipe


def paper_recipe(seed: int = 0) -> Recipe:
    """CIFAR-10 with crop and flip (all 50 000 training images: the paper holds 5000 out), ResNet-34, SGD (lr 0.02,
    momentum 0.9, weight decay 10⁻³, batch 128) for 120 epochs, the learning rate ÷100 at epochs 40 and 80; labels
    corrupted uniformly (the paper's symmetric noise)."""
    epoch = 50_000 // 128
    return recipes.cifar10(models.ResNet34, optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=1e-3,
                           batch_size=128, steps=120 * epoch, eval_every=2 * epoch, noise="uniform",
                           schedule_name=engine.schedule("step", 120 * epoch, milestones=(1 / 3, 2 / 3), factor=0.01),
                           batch_hook=augment.crop_flip(padding=4, seed=seed))
