"""Noisy labels (book/01_noisy_labels): the methods of its chapters.

- :mod:`tdlab.methods.noisy_labels.calibration` — Calibration: how far a model's confidence is from its accuracy.
- :mod:`tdlab.methods.noisy_labels.coteaching` — Co-teaching: two networks, each trained on the examples its peer finds easy.
- :mod:`tdlab.methods.noisy_labels.cutmix` — CutMix (Yun et al., ICCV 2019): the chapter's paper recipe.
- :mod:`tdlab.methods.noisy_labels.early_learning` — The ELR chapter's paper recipe (book/01_noisy_labels/01_memorization_elr): Liu et al.
- :mod:`tdlab.methods.noisy_labels.mixup` — Mixup under label noise (Zhang et al., ICLR 2018; Zou et al., ICML 2023): the chapter's batch hooks and its paper recipe.
- :mod:`tdlab.methods.noisy_labels.nested` — Nested dropout on the penultimate features, and the choice of how many features to keep.
- :mod:`tdlab.methods.noisy_labels.pskd` — The PS-KD chapter's paper recipe (book/01_noisy_labels/06_pskd): the official CIFAR-100 run of Kim et al.
- :mod:`tdlab.methods.noisy_labels.pyramidnet` — PyramidNet (Han, Kim & Kim, CVPR 2017) for 32×32 images: the CutMix paper's CIFAR network.
- :mod:`tdlab.methods.noisy_labels.zloss` — The Z-loss chapter's paper-scale setup (book/01_noisy_labels/05_zloss).
"""
