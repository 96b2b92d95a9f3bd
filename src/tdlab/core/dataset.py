"""The :class:`Dataset` every loader returns: train/test tensors on the device, with example indices
(the row of an example is its index), and where data are kept on disk (:func:`cache_dir`).
Loading by name is :func:`tdlab.core.data.load`."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch

from tdlab.core.config import check_range

OFFLINE = ("mnist1d", "digits", "modular", "teacher")
ONLINE = ("cifar10", "cifar100", "mnist", "fashion_mnist", "letter")
DATASETS = OFFLINE + ONLINE      # the names tdlab.core.data.load knows


@dataclass
class Dataset:
    """A train/test split held as tensors on one device.

    ``y_train`` holds the labels the model is trained on. When label noise was
    applied (:func:`with_label_noise`), ``y_train_true`` keeps the clean labels and
    ``corrupted_mask`` marks the examples whose label differs from the true one.
    ``num_classes`` is ``None`` for regression.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None
    y_train_true: torch.Tensor | None = None
    corrupted_mask: torch.Tensor | None = None
    pairs_train: torch.Tensor | None = None  # modular arithmetic: (a, b) per example
    pairs_test: torch.Tensor | None = None
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def num_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def num_test(self) -> int:
        return self.x_test.shape[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def has_noise(self) -> bool:
        return self.corrupted_mask is not None

    @property
    def device(self) -> torch.device:
        return self.x_train.device

    def to(self, device) -> "Dataset":
        """A copy with every tensor moved to ``device``."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[key] = value.to(device)
        return Dataset(**moved)

    def replace(self, **changes) -> "Dataset":
        return dataclasses.replace(self, **changes)

    def subset(self, num_train: int | None = None, seed: int = 0) -> "Dataset":
        """The first ``num_train`` training examples of a seeded permutation (test set kept)."""
        if num_train is None or num_train >= self.num_train:
            return self
        check_range("num_train", num_train, 1, self.num_train)
        order = torch.randperm(self.num_train, generator=torch.Generator().manual_seed(seed))[:num_train]
        order = order.to(self.device)
        changes = {"x_train": self.x_train[order], "y_train": self.y_train[order]}
        for key in ("y_train_true", "corrupted_mask", "pairs_train"):
            value = getattr(self, key)
            if value is not None:
                changes[key] = value[order]
        return self.replace(**changes)

    def __repr__(self) -> str:
        corrupted = f", corrupted={int(self.corrupted_mask.sum())}" if self.has_noise else ""
        return (f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
                f"classes={self.num_classes}{corrupted}, device={self.device})")


def cache_dir() -> Path:
    """Where generated and downloaded data are kept (``TDLAB_DATA`` overrides)."""
    root = os.environ.get("TDLAB_DATA")
    if root:
        return Path(root)
    return Path(platformdirs.user_cache_dir("tdlab"))


def _tensors(name, x_train, y_train, x_test, y_test, num_classes, **extra) -> Dataset:
    return Dataset(
        name=name,
        x_train=torch.as_tensor(np.array(x_train), dtype=torch.float32),
        y_train=torch.as_tensor(np.array(y_train), dtype=torch.long),
        x_test=torch.as_tensor(np.array(x_test), dtype=torch.float32),
        y_test=torch.as_tensor(np.array(y_test), dtype=torch.long),
        num_classes=num_classes,
        **extra,
    )


