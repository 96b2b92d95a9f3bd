"""Datasets as tensors that live on the device, with example indices.

Every loader returns a :class:`Dataset`: train/test tensors already on the device,
so a training loop slices batches by index (``x_train[idx]``) instead of going
through a ``DataLoader`` — the habit of airbench and MNIST-1D. The index of an
example is its row, which is what methods with per-example state (ELR's target
buffer) key on.

Offline, built in:

- ``"mnist1d"``  — MNIST-1D (Greydanus 2020), *generated* with the ``mnist1d``
  package's procedural generator (never downloaded) and cached under the user
  cache dir. 4000 train / 1000 test sequences of length 40, 10 classes.
- ``"digits"``   — scikit-learn's 8×8 handwritten digits (1797 images, 10 classes),
  images of shape (1, 8, 8) scaled to [0, 1], stratified split.
- ``"modular"``  — all pairs (a, b) of Z_p with label a∘b mod p; one-hot inputs
  of size 2p and the pair itself in :attr:`Dataset.pairs` for embedding-style models.
- ``"teacher"``  — a seeded Gaussian teacher–student regression set.

Online, for GPU-scale runs (downloaded on first use from the official archives and
parsed by our own loader — no torchvision): ``"cifar10"``, ``"cifar100"``,
``"mnist"``, ``"fashion_mnist"``, and UCI's ``"letter"`` (20 000 × 16 features, 26 classes;
the tabular set of the LDR-KL paper).

Where things live: the :class:`Dataset` itself in :mod:`tdlab.core.dataset`, the downloaded archives'
loaders in :mod:`tdlab.core.archives`, the generated sets in :mod:`tdlab.core.synthetic`; this module
loads by name, builds the two offline image-like sets, standardizes and adds label noise. Every name
is importable from here as before.
"""
from __future__ import annotations

import os
import urllib.request  # noqa: F401  (tests patch urlopen through tdlab.core.data.urllib.request)

import numpy as np

from tdlab.core import noise
from tdlab.core.config import check_choice, check_range, device as default_device
from tdlab.core.archives import (IDX_FILES, SOURCES, DatasetUnavailableError, cifar, download,  # noqa: F401
                                 idx_images, letter, read_idx)
from tdlab.core.dataset import DATASETS, OFFLINE, ONLINE, Dataset, _tensors, cache_dir  # noqa: F401
from tdlab.core.synthetic import (MODULAR_OPERATIONS, feature_noise, modular_arithmetic,  # noqa: F401
                                  quadratic_teacher, teacher_student)


def load(name: str, device=None, **kwargs) -> Dataset:
    """Load a dataset by name (see the module docstring) onto ``device``.

    >>> data = load("mnist1d")          # doctest: +SKIP
    >>> data.x_train.shape               # doctest: +SKIP
    torch.Size([4000, 40])
    """
    check_choice("dataset", name, DATASETS)
    builders = {
        "mnist1d": mnist1d,
        "digits": digits,
        "modular": modular_arithmetic,
        "teacher": teacher_student,
        "cifar10": lambda **kw: cifar(10, **kw),
        "cifar100": lambda **kw: cifar(100, **kw),
        "mnist": lambda **kw: idx_images("mnist", **kw),
        "fashion_mnist": lambda **kw: idx_images("fashion_mnist", **kw),
        "letter": letter,
    }
    data = builders[name](**kwargs)
    return data.to(default_device() if device is None else device)


# --------------------------------------------------------------------- offline sets


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> Dataset:
    """MNIST-1D, generated procedurally by the ``mnist1d`` package (no download).

    The default arguments are the package's defaults (Greydanus 2020): 5000
    sequences of length 40, 80% train. Generation takes about 2 s; the arrays are
    cached as ``.npz`` keyed by the arguments.
    """
    check_range("num_samples", num_samples, 10)
    check_range("train_split", train_split, 0, 1, low_open=True, high_open=True)
    key = f"mnist1d-n{num_samples}-s{train_split}-seed{seed}.npz"
    path = cache_dir() / key
    if path.exists():
        arrays = dict(np.load(path))
    else:
        from mnist1d.data import get_dataset_args, make_dataset   # imported on a cache miss only (about 1 s)

        args = get_dataset_args()
        args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
        made = make_dataset(args)
        arrays = {k: made[k] for k in ("x", "y", "x_test", "y_test")}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    return _tensors("mnist1d", arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"], 10)


def digits(test_fraction: float = 0.3, seed: int = 0) -> Dataset:
    """scikit-learn's 8×8 handwritten digits as (1, 8, 8) images in [0, 1], stratified split."""
    check_range("test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
    from sklearn.datasets import load_digits                  # imported here: scikit-learn takes about 1 s
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    x_train, x_test, y_train, y_test = train_test_split(
        x, bunch.target, test_size=test_fraction, stratify=bunch.target, random_state=seed)
    return _tensors("digits", x_train, y_train, x_test, y_test, 10)


def standardize(data: Dataset) -> Dataset:
    """Subtract the training mean and divide by the training std (per input feature / channel)."""
    dims = (0,) if data.x_train.dim() == 2 else tuple(d for d in range(data.x_train.dim()) if d != 1)
    mean = data.x_train.mean(dim=dims, keepdim=True)
    std = data.x_train.std(dim=dims, keepdim=True).clamp_min(1e-8)
    return data.replace(x_train=(data.x_train - mean) / std, x_test=(data.x_test - mean) / std)


def with_label_noise(data: Dataset, kind: str = "symmetric", rate: float = 0.4, seed: int = 0) -> Dataset:
    """A copy of ``data`` whose training labels are corrupted (see :mod:`tdlab.core.noise`).

    ``y_train`` becomes the noisy labels, ``y_train_true`` keeps the clean ones and
    ``corrupted_mask`` marks the examples whose label now differs from the truth.
    The test set is untouched.
    """
    if data.num_classes is None:
        raise ValueError("label noise needs a classification dataset (num_classes is None)")
    true = data.y_train_true if data.y_train_true is not None else data.y_train
    noisy = noise.corrupt(true, kind=kind, rate=rate, num_classes=data.num_classes, seed=seed)
    return data.replace(y_train=noisy.labels, y_train_true=true, corrupted_mask=noisy.corrupted_mask,
                        info={**data.info, "noise": {"kind": kind, "rate": rate, "seed": seed}})
