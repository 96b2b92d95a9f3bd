"""Regularization (book/03_regularization): the methods of its chapters.

- :mod:`tdlab.methods.regularization.compander` — The weight compander: every weight trained through a bounded, zero-repelling function.
- :mod:`tdlab.methods.regularization.multisample` — Multi-sample dropout (Inoue 2019, "Multi-Sample Dropout for Accelerated Training and Better Generalization", …
"""
