"""Realised noise rates against their definitions."""
import pytest
import torch

from tdlab.core import noise


def labels(n=10000, c=10, seed=0):
    return torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_symmetric_rate_is_exact_and_flips_to_other_classes(rate):
    y = labels()
    out = noise.symmetric(y, rate, 10, seed=1)
    assert out.corrupted_mask.sum().item() == round(rate * len(y))
    assert torch.equal(out.corrupted_mask, out.labels != y)
    assert (out.labels[out.corrupted_mask] != y[out.corrupted_mask]).all()


def test_symmetric_targets_are_uniform_over_other_classes():
    y = torch.zeros(30000, dtype=torch.long)
    out = noise.symmetric(y, 0.9, 10, seed=2)
    counts = torch.bincount(out.labels[out.corrupted_mask], minlength=10).float()
    assert counts[0] == 0
    share = counts[1:] / counts[1:].sum()
    assert (share - 1 / 9).abs().max() < 0.01


def test_uniform_rate_is_rho_times_one_minus_one_over_c():
    y = labels(n=50000, c=10)
    out = noise.uniform(y, 0.4, 10, seed=3)
    expected = 0.4 * (1 - 1 / 10)
    # binomial standard error with n·0.4 redrawn labels: well under 0.005
    assert out.realised_rate == pytest.approx(expected, abs=0.005)


def test_pairflip_maps():
    y = labels(n=5000)
    out = noise.pairflip(y, 0.3, 10, seed=4, mapping="next")
    flipped = out.corrupted_mask
    assert torch.equal(out.labels[flipped], (y[flipped] + 1) % 10)
    for c in range(10):
        members = (y == c).sum().item()
        assert (flipped & (y == c)).sum().item() == round(0.3 * members)
    cifar = noise.corrupt(y, "asymmetric", 0.4, 10, seed=5)
    moved = cifar.corrupted_mask
    for source, target in noise.CIFAR10_ASYMMETRIC.items():
        assert (cifar.labels[moved & (y == source)] == target).all()
    untouched = ~torch.isin(y, torch.tensor(list(noise.CIFAR10_ASYMMETRIC)))
    assert not moved[untouched].any()


def test_seeded_and_repeatable():
    y = labels()
    a = noise.symmetric(y, 0.4, 10, seed=7)
    b = noise.symmetric(y, 0.4, 10, seed=7)
    c = noise.symmetric(y, 0.4, 10, seed=8)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="noise rate"):
        noise.symmetric(labels(100), rate, 10)


def test_bad_kind_and_labels():
    with pytest.raises(ValueError, match="noise kind"):
        noise.corrupt(labels(100), "gaussian", 0.2, 10)
    with pytest.raises(ValueError, match="labels must lie"):
        noise.symmetric(torch.tensor([0, 11]), 0.2, 10)
