"""Datasets read from the official archives, downloaded on first use and parsed by our own code (no
torchvision): CIFAR-10/100's python tar, MNIST and Fashion-MNIST's IDX files, UCI's Letter Recognition.
Offline, :func:`download` raises :class:`DatasetUnavailableError` with what to do instead.
:func:`tdlab.core.data.load` loads them by name."""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from tdlab.core.config import check_choice, check_range

from tdlab.core.dataset import OFFLINE, Dataset, _tensors, cache_dir


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


# --------------------------------------------------------------------- the same formats, written (generated data)


def write_cifar_archive(path: str | Path, num_classes: int = 10, num_train: int = 50_000, num_test: int = 10_000,
                        seed: int = 0) -> Path:
    """A CIFAR-10 or CIFAR-100 python archive as the official one is laid out (``cifar-10-batches-py/
    data_batch_1..5`` and ``test_batch`` with ``b"labels"``; ``cifar-100-python/train`` and ``test`` with
    ``b"fine_labels"``), holding ``num_train`` and ``num_test`` random images (uint8 rows of 3 × 32 × 32) with
    labels cycling through the classes. Written with light compression (it is noise: gzip cannot shrink it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if num_classes == 10:
        folder, key = "cifar-10-batches-py", b"labels"
        per = -(-num_train // 5)
        members = [(f"data_batch_{i + 1}", max(0, min(per, num_train - i * per))) for i in range(5)] + [("test_batch", num_test)]
    elif num_classes == 100:
        folder, key = "cifar-100-python", b"fine_labels"
        members = [("train", num_train), ("test", num_test)]
    else:
        raise ValueError(f"CIFAR has 10 or 100 classes, not {num_classes}")
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for name, count in members:
            batch = {b"data": rng.integers(0, 256, (count, 3 * 32 * 32), dtype=np.uint8),
                     key: [i % num_classes for i in range(count)]}
            raw = pickle.dumps(batch, protocol=4)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    tmp.replace(path)
    return path


def write_letter_file(path: str | Path, rows: int = 20_000, seed: int = 0) -> Path:
    """UCI's ``letter-recognition.data`` as the real file is laid out (``rows`` lines ``L,x1,…,x16``: a capital
    letter, then 16 integer features 0–15), with random features and letters cycling A–Z, read by
    :func:`letter` as the real one is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    features = np.random.default_rng(seed).integers(0, 16, (rows, 16))
    lines = [",".join([chr(ord("A") + i % 26), *map(str, row)]) for i, row in enumerate(features.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_idx_files(folder: str | Path, num_train: int = 60_000, num_test: int = 10_000, seed: int = 0) -> Path:
    """MNIST's four gzipped IDX files (:data:`IDX_FILES`) with random 28 × 28 images and labels
    cycling through the ten digits, read by :func:`tdlab.core.data.read_idx` as the real ones are."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def idx(array: np.ndarray) -> bytes:
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
        return header + array.astype(np.uint8).tobytes()

    contents = [rng.integers(0, 256, (num_train, 28, 28)), np.arange(num_train) % 10,
                rng.integers(0, 256, (num_test, 28, 28)), np.arange(num_test) % 10]
    for name, array in zip(IDX_FILES, contents):
        with gzip.open(folder / name, "wb", compresslevel=1) as f:
            f.write(idx(array))
    return folder
