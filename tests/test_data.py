"""Datasets: shapes, labels against independent computations, loaders on generated archives."""
import gzip
import io
import pickle
import tarfile
import urllib.error

import numpy as np
import pytest
import torch

from tdlab.core import data


def test_mnist1d_generated_and_cached(tmp_data_dir):
    d = data.mnist1d(num_samples=200, train_split=0.8)
    assert d.x_train.shape == (160, 40) and d.x_test.shape == (40, 40)
    assert d.num_classes == 10 and d.y_train.dtype == torch.long
    assert list(tmp_data_dir.glob("mnist1d-*.npz"))
    again = data.mnist1d(num_samples=200, train_split=0.8)
    assert torch.equal(d.x_train, again.x_train)


def test_digits_split_is_stratified():
    d = data.digits()
    assert d.input_shape == (1, 8, 8)
    assert d.num_train + d.num_test == 1797
    assert 0 <= d.x_train.min() and d.x_train.max() <= 1
    test_counts = torch.bincount(d.y_test, minlength=10).float()
    all_counts = test_counts + torch.bincount(d.y_train, minlength=10)
    assert ((test_counts - 0.3 * all_counts).abs() <= 1).all()


def test_modular_arithmetic_labels():
    d = data.modular_arithmetic(p=7, operation="sub", train_fraction=0.5, seed=1)
    assert d.num_train + d.num_test == 49
    a, b = d.pairs_train[:, 0], d.pairs_train[:, 1]
    assert torch.equal(d.y_train, (a - b) % 7)
    assert torch.equal(d.x_train[:, :7].argmax(1), a) and torch.equal(d.x_train[:, 7:].argmax(1), b)
    assert d.x_train.sum(1).eq(2).all()
    all_pairs = torch.cat([d.pairs_train, d.pairs_test])
    assert len({tuple(p) for p in all_pairs.tolist()}) == 49


def test_teacher_student_is_seeded_and_noisy_on_train_only():
    clean = data.teacher_student(num_train=50, num_test=20, dim=5, noise_std=0.0, seed=3)
    noisy = data.teacher_student(num_train=50, num_test=20, dim=5, noise_std=0.5, seed=3)
    assert torch.equal(clean.x_train, noisy.x_train)
    assert torch.equal(clean.y_test, noisy.y_test)
    assert not torch.equal(clean.y_train, noisy.y_train)


def test_with_label_noise_keeps_true_labels():
    d = data.digits()
    n = data.with_label_noise(d, "symmetric", 0.3, seed=0)
    assert torch.equal(n.y_train_true, d.y_train)
    assert torch.equal(n.corrupted_mask, n.y_train != d.y_train)
    assert n.corrupted_mask.sum().item() == round(0.3 * d.num_train)
    assert torch.equal(n.y_test, d.y_test)


def write_cifar10_archive(path, per_batch=4):
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            payload = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                       b"labels": rng.integers(0, 10, per_batch).tolist()}
            raw = pickle.dumps(payload)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return rng


def test_cifar10_loader_on_generated_archive(tmp_path, monkeypatch):
    monkeypatch.setitem(data.SOURCES["cifar10"], "md5", None)
    write_cifar10_archive(tmp_path / "cifar-10-python.tar.gz")
    d = data.cifar(10, root=tmp_path)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    # independent check of the first image: row-major channel planes, scaled to [0, 1]
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz") as tar:
        first = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")
    expected = np.asarray(first[b"data"][0], dtype=np.float32).reshape(3, 32, 32) / 255
    np.testing.assert_allclose(d.x_train[0].numpy(), expected)
    assert d.y_train[:4].tolist() == first[b"labels"]


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_loader_on_generated_files(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    images = rng.integers(0, 256, (6, 28, 28))
    labels = rng.integers(0, 10, 6)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images[:2])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:2])
    d = data.idx_images("fashion_mnist", root=tmp_path)
    assert d.x_train.shape == (6, 1, 28, 28)
    np.testing.assert_allclose(d.x_train[3, 0].numpy(), images[3] / 255, rtol=1e-6)
    assert d.y_train.tolist() == labels.tolist()


def test_idx_rejects_corrupt_file(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(ValueError, match="header says"):
        data.read_idx(bad)


def test_offline_download_gives_clear_error(tmp_data_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    with pytest.raises(data.DatasetUnavailableError) as info:
        data.load("cifar100")
    message = str(info.value)
    assert "cifar100" in message and "cs.toronto.edu" in message and "mnist1d" in message


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")


def test_letter_loader_on_generated_file(tmp_path):
    rng = np.random.default_rng(2)
    letters = rng.integers(0, 26, 12)
    features = rng.integers(0, 16, (12, 16))
    lines = [",".join([chr(ord("A") + int(k))] + [str(int(v)) for v in row]) for k, row in zip(letters, features)]
    (tmp_path / "letter-recognition.data").write_text("\n".join(lines) + "\n")
    d = data.letter(root=tmp_path, num_train=9)
    assert d.x_train.shape == (9, 16) and d.x_test.shape == (3, 16) and d.num_classes == 26
    np.testing.assert_allclose(d.x_test[1].numpy(), features[10] / 15, rtol=1e-6)   # independent: row 10, ÷ 15
    assert d.y_train.tolist() == letters[:9].tolist() and d.y_test.tolist() == letters[9:].tolist()
    (tmp_path / "letter-recognition.data").write_text("A,1,2\n")
    with pytest.raises(ValueError, match="not UCI"):
        data.letter(root=tmp_path)
