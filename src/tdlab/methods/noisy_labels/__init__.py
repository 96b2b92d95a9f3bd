"""Noisy labels (book/01_noisy_labels): the methods of its chapters.

- :mod:`tdlab.methods.noisy_labels.nested` — Nested dropout on the penultimate features, and the choice of how many features to keep.
- :mod:`tdlab.methods.noisy_labels.coteaching` — Co-teaching: two networks, each trained on the examples its peer finds easy.
- :mod:`tdlab.methods.noisy_labels.calibration` — Calibration: how far a model's confidence is from its accuracy.
- :mod:`tdlab.methods.noisy_labels.pyramidnet` — PyramidNet (Han, Kim & Kim, CVPR 2017) for 32×32 images: the CutMix paper's CIFAR network.
"""
