"""The Z-loss chapter's monitors (top-k accuracy, logit scale) against naive loops, in and out of the loop."""
import math

import pytest
import torch

from tdlab.core import data, models, monitors, sweep
from tdlab.core.monitors import Evaluation


def evaluation(logits: torch.Tensor, targets: torch.Tensor) -> Evaluation:
    """An Evaluation holding only test (and, the same, train) logits (E, N, C) and targets (E, N)."""
    return Evaluation(0, {"train": logits, "test": logits}, {"train": targets, "test": targets}, None, None,
                      None, None, [{}] * logits.shape[0], lambda member: {})


def naive_top_k(z, y, k):
    hits = 0
    for row, label in zip(z.tolist(), y.tolist()):
        ranked = sorted(range(len(row)), key=lambda c: -row[c])
        hits += label in ranked[:k]
    return hits / len(y)


def test_top_k_matches_a_naive_ranking():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, 7, generator=gen)
    targets = torch.randint(0, 7, (3, 40), generator=gen)
    out = monitors.top_k(1, 3, 7)(evaluation(logits, targets))
    assert set(out) == {("test_top1", "acc"), ("test_top3", "acc"), ("test_top7", "acc")}
    for member in range(3):
        for k in (1, 3, 7):
            assert out[(f"test_top{k}", "acc")][member].item() == pytest.approx(
                naive_top_k(logits[member], targets[member], k), abs=1e-7)
    assert out[("test_top7", "acc")].tolist() == [1.0, 1.0, 1.0]                   # every class is in the top C
    top1 = (logits.argmax(-1) == targets).float().mean(-1)
    torch.testing.assert_close(out[("test_top1", "acc")], top1)                   # top-1 is the accuracy


def test_top_k_refuses_k_beyond_the_classes_and_nonsense():
    logits, targets = torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="at least 5 classes"):
        monitors.top_k(5)(evaluation(logits, targets))
    for bad in ((), (0,), (1.5,)):
        with pytest.raises(ValueError, match="whole numbers"):
            monitors.top_k(*bad)


def test_logit_scale_matches_naive_norm_and_population_std():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 25, 6, generator=gen) * 3 + 1
    targets = torch.zeros(2, 25, dtype=torch.long)
    out = monitors.logit_scale(("train", "test"))(evaluation(logits, targets))
    for member in range(2):
        rows = logits[member].tolist()
        norm = sum(math.sqrt(sum(v * v for v in row)) for row in rows) / len(rows)
        std = sum(math.sqrt(sum((v - sum(row) / len(row)) ** 2 for v in row) / len(row)) for row in rows) / len(rows)
        for split in ("train", "test"):
            assert out[(split, "logit_norm")][member].item() == pytest.approx(norm, rel=1e-6)
            assert out[(split, "logit_std")][member].item() == pytest.approx(std, rel=1e-6)
    scaled = monitors.logit_scale()(evaluation(5 * logits - 2, targets))            # σ scales, ignores the shift
    torch.testing.assert_close(scaled[("test", "logit_std")], 5 * out[("test", "logit_std")])


def test_the_monitors_in_a_stacked_run_see_each_members_model():
    digits = data.digits()
    history = sweep.sweep(lambda: models.MLP(64, 10, width=16, depth=1), digits,
                          [{"seed": 0}, {"seed": 1, "lr": 3e-3}], loss="zloss", a=1.0, b=1.0, steps=20,
                          eval_every=20, progress=False, monitors=[monitors.top_k(2), monitors.logit_scale()])
    for member, model in enumerate(history.models):
        z = monitors.logits(model, digits.x_test)
        assert history.final("test_top2", "acc", member) == pytest.approx(naive_top_k(z, digits.y_test, 2),
                                                                          abs=1e-6)
        assert history.final("test", "logit_std", member) == pytest.approx(
            z.double().std(-1, unbiased=False).mean().item(), rel=1e-4)
