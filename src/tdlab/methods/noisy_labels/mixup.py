"""Mixup under label noise (Zhang et al., ICLR 2018, Table 2; official code facebookresearch/mixup-cifar10 @ eaff31a)
and the early-stopped mixup of Zou et al. (ICML 2023): the chapter's batch hooks and its paper recipe.

The mixing itself is :func:`tdlab.core.augment.mixup` (one λ ~ Beta(α, α) and one permutation per batch, the
official ``mixup_data``); :func:`mixing` makes it a :func:`tdlab.core.recipes.per_member` derivation, so that ERM,
mixup and mixup switched off halfway train in one engine call, each member mixing its own batches.
"""
from __future__ import annotations

from tdlab.core import augment, models, recipes
from tdlab.core.recipes import Recipe

# CIFAR-10 steps per epoch at batch 128: 391, the official loader's count (train.py l.76-78: 390 batches of 128 and
# a last of 80, no drop_last); the engine draws full batches, so an epoch here reads 391 × 128 = 50 048 examples
EPOCH = -(-50_000 // 128)


def mixing(alpha: float, steps: int, seed: int, *, crop: bool = False, num_classes: int = 10):
    """The chapter's per-member batch hook, as a derivation with the knobs ``mixup_alpha`` (default ``alpha``;
    0 is ERM), ``mixup_stop_after`` (default ``steps``: mixup throughout; Zou et al.'s early-stopped mixup stops
    earlier) and ``mixup_gamma`` (1: λ' = λ; else λ' = g(λ) of :func:`tdlab.core.augment.label_power`). With
    ``crop``, random crop (padding 4) and horizontal flip first (train.py l.54-56). Every draw is seeded by
    ``seed``."""
    @recipes.per_member   # members that differ only in these knobs train in one call, each mixing its own batches
    def mixing(mixup_alpha=alpha, mixup_stop_after=steps, mixup_gamma=1.0):
        """The batch hook of one run: (crop and flip at paper scale, then) mixup, with λ' = g(λ) when γ ≠ 1,
        until step mixup_stop_after; α = 0 is ERM."""
        label_map = None if mixup_gamma == 1 else augment.label_power(mixup_gamma)
        mix = augment.mixup(mixup_alpha, num_classes, stop_after=mixup_stop_after, label_map=label_map, seed=seed)
        flip = augment.crop_flip(padding=4, seed=seed) if crop else None
        return {"batch_hook": augment.compose(flip, mix)}

    return mixing


def paper_recipe(seed: int = 0, alpha: float = 32.0) -> Recipe:
    """The mixup paper's CIFAR-10 run (official ``train.py``): PreAct ResNet-18 (``models/resnet.py``
    ``ResNet18``), SGD with momentum 0.9 (l.115-116), lr 0.1 (l.26), weight decay 10⁻⁴ (l.38), batches of 128
    (l.33), 200 epochs (l.34) with the learning rate ÷10 at 50% and 75% of them (``adjust_learning_rate``,
    l.220-228), random crop and flip (l.54-56), the test set read every epoch (l.237-239), and mixup at
    ``alpha`` (Table 2: 8 at 20% noise, 32 at 50% and 80%) as cross-entropy against the mixed one-hot label
    (``mixup_criterion``, l.137-138). The label noise is the chapter's knob."""
    steps = 200 * EPOCH
    return recipes.cifar10(lambda: models.PreActResNet18(num_classes=10), optimizer="sgd", lr=0.1, momentum=0.9,
                           weight_decay=1e-4, batch_size=128, steps=steps, eval_every=EPOCH, schedule_name="step",
                           loss="soft_ce").but(mixing(alpha, steps, seed, crop=True))
