"""Sparse training (book/07_sparse_training): the methods of its chapters.

- :mod:`tdlab.methods.sparse_training.granet` — The GraNet chapter's setup (book/07_sparse_training/01_granet): the pruning derivation a recipe trains with, …
- :mod:`tdlab.methods.sparse_training.sparsity` — Sparse training: masks, gradual magnitude pruning and GraNet's zero-cost neuroregeneration.
"""
