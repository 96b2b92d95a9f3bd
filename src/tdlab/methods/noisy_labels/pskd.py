"""The PS-KD chapter's paper recipe (book/01_noisy_labels/06_pskd): the official CIFAR-100 run of Kim et al.
(ICCV 2021; lgcnsai/PS-KD-Pytorch). The PS-KD loss itself is a loss of the core (``loss="pskd"``,
:mod:`tdlab.core.losses`), its calibration measures in :mod:`tdlab.methods.noisy_labels.calibration`."""
from __future__ import annotations

from tdlab.core import augment, data, models
from tdlab.core.recipes import Recipe


def paper_recipe(seed: int = 0) -> Recipe:
    """CIFAR-100 with crop and flip, PreAct ResNet-18, SGD with Nesterov momentum 0.9 (lr 0.1, weight decay
    5·10⁻⁴, batch 128) for 300 epochs, the learning rate ÷10 at epochs 150 and 225 (the step schedule)."""
    epoch = 50_000 // 128
    return Recipe(lambda: data.standardize(data.load("cifar100")), lambda: models.PreActResNet18(num_classes=100),
                  dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, batch_size=128,
                       steps=300 * epoch, eval_every=5 * epoch, schedule_name="step",
                       batch_hook=augment.crop_flip(padding=4, seed=seed)))
