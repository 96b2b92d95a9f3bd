"""The lazy-to-rich chapter's setup (book/02_grokking/03_lazy_to_rich): the polynomial-regression toy of Kumar,
Bordelon, Gershman & Pehlevan (ICLR 2024) as a :class:`~tdlab.core.recipes.Recipe`, and its members with the paper's
step size. Beside the kernels it measures with (:mod:`tdlab.methods.grokking.kernels`)."""
from __future__ import annotations

from tdlab.core import data as datasets
from tdlab.core import models
from tdlab.core.losses import LazyMSE
from tdlab.core.recipes import Recipe
from tdlab.methods.grokking import kernels


def recipe(dim: int, width: int, eps: float, pool: int, num_test: int = 1000, seed: int = 0,
              kernel_points: int = 200, normalize: bool = False, **settings) -> Recipe:
    """The polynomial-regression toy of Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024): the quadratic
    teacher y = ½(β⋆·x)² in ``dim`` dimensions (``pool`` training examples — a member trains on the
    first ``train_size`` of them — and ``num_test`` test examples, drawn with ``seed``), the network
    (1/N) Σ φ(w_i·x) of ``width`` N neurons with φ(h) = h + (ε/2) h², and the α-scaled, centred squared
    error (:class:`~tdlab.core.losses.LazyMSE`); plain full-batch gradient descent; the monitor
    :func:`tdlab.methods.grokking.kernels.lazy_rich` (train/test MSE, the initial kernel's test loss, alignment, kernel
    change). The paper's step η = c N/α² is a member's ``lr``: see :func:`members`."""
    return Recipe(lambda: datasets.quadratic_teacher(pool, num_test, dim, seed=seed, normalize=normalize),
                  lambda: models.QuadraticFeatureNet(dim, width, eps),
                  {"loss": LazyMSE(), "optimizer": "sgd", "momentum": 0.0, "batch_size": None,
                   "monitors": [kernels.lazy_rich(models.QuadraticFeatureNet(dim, width, eps), kernel_points)],
                   **settings})


def paper_recipe(seed: int = 0) -> Recipe:
    """Kumar, Bordelon, Gershman & Pehlevan's polynomial-regression setup (ICLR 2024, Fig. 1; no official repository:
    the values of the third-party reproduction built on the authors' supplementary code,
    ``giovana-morais/amlds_final_project``, ``grokking_polynomial_regression.ipynb``), for a GPU: x ~ N(0, I_D/D) in
    D = 100 dimensions, y = ½(β⋆·x)² with β⋆ ~ N(0, I_D) not rescaled (``normalize=False``); N = 500 neurons,
    ε = 0.02; full-batch gradient descent on the centred, α-scaled squared error for 10⁵ steps, the losses read every
    100 steps. The training pool holds 10 000 examples (P = D², the largest of the chapter's sizes; the paper's
    P = 550 is the first 550 of them), 1000 test points, the kernel measured on 1000 of them. α, P and the step
    η = cN/α² (c = 1) are the members' knobs (:func:`members`)."""
    return recipe(100, 500, 0.02, pool=10_000, num_test=1000, seed=seed, normalize=False, kernel_points=1000,
                  steps=100_000, eval_every=100, data_seed=seed).but(seed=seed)


def members(alphas, sizes, width: int, lr_multiplier: float = 1.0, **knobs) -> list[dict]:
    """Members for :func:`recipe`: every (α, P) pair with the paper's step η = c N / α² as its
    learning rate (c = ``lr_multiplier``; Kumar et al. 2024, Sec. 2), plus any other per-member knobs."""
    return [{"alpha": float(a), "train_size": float(p), "lr": lr_multiplier * width / a**2, **knobs}
            for a in alphas for p in sizes]
