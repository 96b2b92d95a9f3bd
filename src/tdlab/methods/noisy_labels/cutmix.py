"""CutMix (Yun et al., ICCV 2019; official code clovaai/CutMix-PyTorch @ 2d8eb68): the chapter's paper recipe.

The mixing is :func:`tdlab.core.augment.cutmix` (the official ``train.py`` l.227-240 and ``rand_bbox``); the
comparison's batch hooks (CutMix, mixup, Cutout, chosen by the knob ``method``) are
:func:`tdlab.core.recipes.cutmix_comparison`, and the network :func:`tdlab.methods.noisy_labels.pyramidnet.pyramidnet200`.
"""
from __future__ import annotations

from tdlab.core import recipes
from tdlab.core.recipes import Recipe
from tdlab.methods.noisy_labels import pyramidnet


def paper_recipe(seed: int = 0, mixup_alpha: float = 8.0, cutout_size: int = 16) -> Recipe:
    """The CutMix paper's CIFAR-100 comparison (Table 5) as the official README trains it: PyramidNet-200 with
    α = 240 and bottleneck blocks (``--depth 200 --alpha 240``), the CIFAR optimizer of ``train.py``
    (:func:`tdlab.core.recipes.cutmix_cifar100`: SGD with Nesterov momentum 0.9, lr 0.25, batch 64, weight decay
    10⁻⁴, 300 epochs, ÷10 at 50% and 75%), random crop and flip (l.80-85), CutMix with β = 1 at probability 0.5
    (``--beta 1.0 --cutmix_prob 0.5``) and its loss, cross-entropy against the mixed one-hot label (l.240). The comparison's other arms are the knob ``method``: ``"mixup"`` at
    ``mixup_alpha`` (the chapter's 8; the paper's is 1) and ``"Cutout"`` with a ``cutout_size`` square (16: the
    size behind Table 5's row is not in the book's sources); CutMix at probability 0 is the baseline."""
    return recipes.cutmix_cifar100(pyramidnet.pyramidnet200, epochs=300, loss="soft_ce").but(
        recipes.cutmix_comparison(100, cutout_size, seed, crop=True, cutmix_prob=0.5, cutmix_beta=1.0,
                                  mixup_alpha=mixup_alpha))
