"""The LDR-KL chapter's paper-scale setup (book/01_noisy_labels/04_ldr_kl). The losses themselves are losses of
the core (:class:`tdlab.core.losses.robust.LDRKL`, :class:`tdlab.core.losses.robust.ALDRKL`); this module holds the recipe of
Zhu, Ying & Yang (ICML 2023, "Label Distributionally Robust Losses for Multi-class Classification") for their
tabular sets, as the official code ``Optimization-AI/ICML2023_LDR`` runs it on UCI's Letter."""
from __future__ import annotations

from tdlab.core import recipes
from tdlab.core.recipes import Recipe


def paper_recipe() -> Recipe:
    """UCI Letter (16 features, 26 classes; the UCI split, 16 000 training rows) with the official protocol
    (:func:`tdlab.core.recipes.tabular_mlp`): a two-hidden-layer tanh MLP of width min(features, classes) = 16
    (``models.py``, ``MLP``: ``neurons = min(dims, num_classes)``), SGD with momentum 0.9 (``experiment.py``,
    ``--momentum``), batches of 64 (``BATCH_SIZE``), lr 10⁻³ and weight decay 5·10⁻³ (the README's commands,
    ``--lr=1e-3 --decay=5e-3``), 100 epochs with the learning rate ÷10 at epochs 50 and 75 (``total_epochs``,
    ``decay_epochs``): 100 × 16 000 / 64 = 25 000 steps, the test set read every 5 epochs. The noise and the
    loss are the members' knobs (the chapter's sweep)."""
    return recipes.tabular_mlp("letter", 16, 26, width=16, lr=1e-3, weight_decay=5e-3, steps=25_000,
                               eval_every=1250)
