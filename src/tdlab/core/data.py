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
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch

from tdlab.core import noise
from tdlab.core.config import check_choice, check_range, device as default_device

OFFLINE = ("mnist1d", "digits", "modular", "teacher")
ONLINE = ("cifar10", "cifar100", "mnist", "fashion_mnist", "letter")
DATASETS = OFFLINE + ONLINE


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


class DatasetUnavailableError(RuntimeError):
    """A dataset that must be downloaded could not be fetched (offline, or the server failed)."""


SOURCES = {
    "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "md5": "c58f30108f718f92721af3b95e74349a"},
    "cifar100": {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "md5": "eb9058c3a382ffc7106e4002c42a8d85"},
    # The original yann.lecun.com host is often down; this is the mirror torchvision uses.
    "mnist": {"url": "https://ossci-datasets.s3.amazonaws.com/mnist/", "md5": None},
    "fashion_mnist": {"url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", "md5": None},
    "letter": {"url": "https://archive.ics.uci.edu/ml/machine-learning-databases/letter-recognition/"
                      "letter-recognition.data", "md5": None},
}
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def download(name: str, url: str, path: Path, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``path`` unless it is already there; clear error when offline."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        tmp.unlink(missing_ok=True)
        raise DatasetUnavailableError(
            f"could not download the {name!r} dataset from {url} ({error}). "
            f"It is not generated locally, so it needs internet on first use; put the file at {path} "
            f"by hand, or use an offline dataset: {', '.join(OFFLINE)} (e.g. tdlab.core.data.load('mnist1d')).") from error
    if md5 is not None and hashlib.md5(tmp.read_bytes()).hexdigest() != md5:
        tmp.unlink()
        raise DatasetUnavailableError(f"the {name!r} archive from {url} failed its MD5 check; try again.")
    os.replace(tmp, path)
    return path


def cifar(num_classes: int = 10, root: str | Path | None = None) -> Dataset:
    """CIFAR-10/100 from the official python archive, parsed from the tar without extracting.

    Images become float tensors (3, 32, 32) in [0, 1] (normalise in the model or with
    :func:`standardize`). CIFAR-100 uses the 100 fine labels.
    """
    check_choice("CIFAR num_classes", num_classes, (10, 100))
    name = f"cifar{num_classes}"
    url = SOURCES[name]["url"]
    archive = download(name, url, Path(root or cache_dir()) / Path(url).name, SOURCES[name]["md5"])
    if num_classes == 10:
        train_members = [f"data_batch_{i}" for i in range(1, 6)]
        test_members, label_key = ["test_batch"], b"labels"
    else:
        train_members, test_members, label_key = ["train"], ["test"], b"fine_labels"
    batches = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base in train_members + test_members:
                batches[base] = pickle.load(tar.extractfile(member), encoding="bytes")
    missing = [m for m in train_members + test_members if m not in batches]
    if missing:
        raise DatasetUnavailableError(f"{archive} is not a {name} archive: missing {missing}")

    def stack(members):
        x = np.concatenate([np.asarray(batches[m][b"data"], dtype=np.uint8) for m in members])
        y = np.concatenate([np.asarray(batches[m][label_key]) for m in members])
        return x.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, y

    (x_train, y_train), (x_test, y_test) = stack(train_members), stack(test_members)
    return _tensors(name, x_train, y_train, x_test, y_test, num_classes)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzipped or not): magic 0x0000 0x08 ndim, big-endian sizes, uint8 data."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {data.size} bytes")
    return data.reshape(shape)


def idx_images(name: str = "mnist", root: str | Path | None = None) -> Dataset:
    """MNIST or Fashion-MNIST from the four IDX files, as (1, 28, 28) images in [0, 1]."""
    check_choice("IDX dataset", name, ("mnist", "fashion_mnist"))
    folder = Path(root or cache_dir()) / name
    paths = [download(name, SOURCES[name]["url"] + f, folder / f) for f in IDX_FILES]
    x_train, y_train, x_test, y_test = (read_idx(p) for p in paths)
    scale = lambda x: x.astype(np.float32)[:, None] / 255.0  # noqa: E731
    return _tensors(name, scale(x_train), y_train, scale(x_test), y_test, 10)


# --------------------------------------------------------------------- helpers


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


def letter(root: str | Path | None = None, num_train: int = 16_000) -> Dataset:
    """UCI Letter Recognition (Frey & Slate 1991): 20 000 rows ``letter,x1,…,x16`` of integer
    features 0–15, 26 classes (A–Z). The UCI documentation's split: the first 16 000 rows
    train, the last 4000 test. Features are scaled to [0, 1] (÷ 15).

    The tabular set of the LDR-KL paper (Zhu, Ying & Yang 2023), whose official code ships
    its own split as ``data/letter_{train,test}.npz``; this loader reads the UCI file.
    """
    url = SOURCES["letter"]["url"]
    path = download("letter", url, Path(root or cache_dir()) / "letter-recognition.data", SOURCES["letter"]["md5"])
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    if not rows or any(len(r) != 17 or len(r[0]) != 1 or not r[0].isalpha() for r in rows):
        raise ValueError(f"{path} is not UCI's letter-recognition.data: every row must be a letter and 16 numbers")
    labels = np.array([ord(r[0].upper()) - ord("A") for r in rows])
    features = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32) / 15.0
    check_range("num_train", num_train, 1, len(rows) - 1)
    return _tensors("letter", features[:num_train], labels[:num_train], features[num_train:], labels[num_train:], 26)


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
