"""Generated datasets, seeded and offline: modular arithmetic (the grokking chapters), a Gaussian
teacher–student regression set, the feature-noise model of the mixup chapter and the quadratic teacher of
the lazy-to-rich chapter. :func:`tdlab.core.data.load` loads the first two by name."""
from __future__ import annotations

import numpy as np
import torch

from tdlab.core.config import check_choice, check_range, device as default_device

from tdlab.core.dataset import Dataset, _tensors


MODULAR_OPERATIONS = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
}


def modular_arithmetic(p: int = 97, operation: str = "add", train_fraction: float = 0.5,
                       seed: int = 0) -> Dataset:
    """All p² pairs (a, b) with label a∘b mod p, split at random into train/test.

    Inputs are the concatenated one-hots [e_a, e_b] ∈ {0,1}^{2p} (Gromov 2023;
    Prieto et al. 2025); the pairs themselves are kept in ``pairs_train`` /
    ``pairs_test`` for models that index an embedding instead.
    """
    check_range("p", p, 2)
    check_choice("operation", operation, tuple(MODULAR_OPERATIONS))
    check_range("train_fraction", train_fraction, 0, 1, low_open=True, high_open=True)
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    labels = MODULAR_OPERATIONS[operation](a, b, p)
    eye = np.eye(p, dtype=np.float32)
    x = np.concatenate([eye[a], eye[b]], axis=1)
    order = np.random.default_rng(seed).permutation(p * p)
    cut = int(round(train_fraction * p * p))
    train, test = order[:cut], order[cut:]
    pairs = torch.as_tensor(np.stack([a, b], 1), dtype=torch.long)
    return _tensors(f"modular-{operation}-{p}", x[train], labels[train], x[test], labels[test], p,
                    pairs_train=pairs[train], pairs_test=pairs[test],
                    info={"p": p, "operation": operation, "train_fraction": train_fraction})


def teacher_student(num_train: int = 1000, num_test: int = 1000, dim: int = 20, hidden: int = 0,
                    noise_std: float = 0.0, seed: int = 0) -> Dataset:
    """Gaussian inputs x ~ N(0, I_d) and targets from a random teacher.

    ``hidden == 0``: a linear teacher y = w·x / √d. ``hidden > 0``: a two-layer tanh
    teacher y = a·tanh(W x / √d) / √hidden. Label noise N(0, noise_std²) is added to
    the training targets only. Targets are float, shape (n,); ``num_classes`` is None.
    """
    check_range("dim", dim, 1)
    check_range("noise_std", noise_std, 0)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_train + num_test, dim, generator=gen)
    if hidden:
        w = torch.randn(hidden, dim, generator=gen)
        a = torch.randn(hidden, generator=gen)
        y = torch.tanh(x @ w.T / dim**0.5) @ a / hidden**0.5
    else:
        w = torch.randn(dim, generator=gen)
        y = x @ w / dim**0.5
    y_train = y[:num_train] + noise_std * torch.randn(num_train, generator=gen)
    return Dataset("teacher", x[:num_train], y_train, x[num_train:], y[num_train:], None,
                   info={"dim": dim, "hidden": hidden, "noise_std": noise_std})


# --------------------------------------------------------------------- online sets


# --------------------------------------------------------------------- synthetic: feature-noise model


def feature_noise(num_train: int = 400, num_test: int = 2000, num_classes: int = 2, patches: int = 4,
                  dim: int = 64, rare_fraction: float = 0.1, feature_strength: float = 1.0,
                  feature_noise_strength: float = 0.3, noise_std: float = 0.5, seed: int = 0) -> Dataset:
    r"""The feature-noise data model of Zou, Cao, Li & Gu (ICML 2023, "The Benefits of Mixup
    for Feature Learning"), in a small seeded version — as described by secondary sources; the
    details below (patch layout, orthogonal noise) are not verified in the paper's full text.

    Each example x = [x^{(1)}, …, x^{(P)}] has P patches in R^d (shape (P, d)) and a label
    y uniform over the C classes:

    - patch 1, the **feature patch**: ``feature_strength`` · u_y (the *common* feature of
      class y) with probability 1 − ρ, or ``feature_strength`` · v_y (its *rare* feature)
      with probability ρ = ``rare_fraction``;
    - patch 2, **feature noise**: ``feature_noise_strength`` · u_{y'}, the common feature
      of a uniformly drawn *other* class y' ≠ y;
    - patches 3…P: Gaussian noise ξ ~ N(0, σ² (I − Π)), σ = ``noise_std``, with Π the
      projection onto the 2C feature directions (noise orthogonal to the features).

    The 2C features u_1…u_C, v_1…v_C are orthonormal: the first 2C columns of a seeded
    random orthogonal matrix. With P·d large against the number of training examples a
    network can fit the few rare examples by memorizing their noise patches instead of
    learning v_y — then on new rare examples only the feature noise u_{y'} is recognised
    and the prediction is y', wrong. The dimensions, fractions and strengths of the
    paper's theorem are asymptotic; these defaults are ours, chosen to show the effect
    in seconds.

    ``info`` holds ``rare_train`` and ``rare_test`` (boolean tensors marking the examples
    whose feature patch is a rare feature) and the ``features`` (2C, d) (rows u_1…u_C,
    v_1…v_C).
    """
    check_range("num_train", num_train, 1)
    check_range("num_test", num_test, 1)
    check_range("num_classes", num_classes, 2)
    check_range("patches", patches, 2)
    check_range("dim", dim, 2 * num_classes)
    check_range("rare_fraction", rare_fraction, 0, 1)
    check_range("feature_strength", feature_strength, 0)
    check_range("feature_noise_strength", feature_noise_strength, 0)
    check_range("noise_std", noise_std, 0)
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
    features = basis[:, :2 * num_classes].T.contiguous()                # (2C, d), orthonormal rows
    common, rare_features = features[:num_classes], features[num_classes:]
    projector = torch.eye(dim, dtype=torch.float64) - features.T @ features

    def draw(n: int):
        y = torch.randint(0, num_classes, (n,), generator=gen)
        rare = torch.rand(n, generator=gen) < rare_fraction
        other = (y + torch.randint(1, num_classes, (n,), generator=gen)) % num_classes
        feature = torch.where(rare[:, None], rare_features[y], common[y]) * feature_strength
        confuser = common[other] * feature_noise_strength
        noise = noise_std * torch.randn(n, patches - 2, dim, generator=gen, dtype=torch.float64) @ projector
        x = torch.cat([feature[:, None], confuser[:, None], noise], dim=1)
        return x.float(), y, rare

    x_train, y_train, rare_train = draw(num_train)
    x_test, y_test, rare_test = draw(num_test)
    return Dataset("feature-noise", x_train, y_train, x_test, y_test, num_classes,
                   info={"rare_train": rare_train, "rare_test": rare_test, "features": features.float(),
                         "rare_fraction": rare_fraction, "patches": patches, "dim": dim,
                         "feature_strength": feature_strength,
                         "feature_noise_strength": feature_noise_strength, "noise_std": noise_std})


# --------------------------------------------------------------------- synthetic: a quadratic teacher


def quadratic_teacher(num_train: int = 550, num_test: int = 1000, dim: int = 100, seed: int = 0,
                      normalize: bool = False, device=None) -> Dataset:
    r"""The polynomial-regression task of Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024, "Grokking
    as the Transition from Lazy to Rich Training Dynamics", Sec. 2):

    .. math::
        x \sim \mathcal{N}(0, I_D / D), \qquad y = \tfrac12 (\beta_\star \cdot x)^2,
        \qquad \beta_\star \sim \mathcal{N}(0, I_D)

    (β⋆ not normalised, as in the authors' code; so β⋆·x ≈ N(0, |β⋆|²/D) and y has mean |β⋆|²/(2D) ≈ ½;
    ``normalize=True`` rescales β⋆ to |β⋆|² = D exactly, which removes the draw-to-draw spread of the
    target's scale — ±√(2/D), large at small D). The task
    lives in the "Goldilocks" range D ≪ P ≪ D² when ``num_train`` P is chosen so: a kernel with
    quadratic features needs about D²/2 examples, a network that learns the one direction β⋆
    about D. The defaults are the paper's D = 100, P = 550, 1000 test points. Targets are float,
    shape (n,); ``num_classes`` is None; ``info["beta"]`` holds β⋆. Not registered in :func:`load`
    (call it directly); ``device`` as :func:`load`'s.
    """
    check_range("dim", dim, 1)
    check_range("num_train", num_train, 1)
    check_range("num_test", num_test, 1)
    gen = torch.Generator().manual_seed(seed)
    beta = torch.randn(dim, generator=gen)
    if normalize:
        beta = beta * dim**0.5 / beta.norm()                                     # |β⋆|² = D
    x = torch.randn(num_train + num_test, dim, generator=gen) / dim**0.5        # x ~ N(0, I/D)
    y = 0.5 * (x @ beta) ** 2                                                    # y = ½ (β⋆·x)²
    out = Dataset("quadratic-teacher", x[:num_train], y[:num_train], x[num_train:], y[num_train:], None,
                  info={"dim": dim, "beta": beta, "seed": seed, "normalize": normalize})
    return out.to(default_device() if device is None else device)
