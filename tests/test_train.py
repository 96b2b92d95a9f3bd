"""The training loop: repeatable, measures what it says, survives divergence, rejects bad input."""
import math

import pytest
import torch

from tdlab.core import data, engine, models, train


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def small_mlp(d):
    return lambda: models.MLP(64, 10, width=32, depth=1)


def test_repeatable_with_seed(digits):
    runs = [train.train(small_mlp(digits), digits, steps=30, eval_every=10, seed=3, progress=False)
            for _ in range(2)]
    assert runs[0].frame["value"].tolist() == runs[1].frame["value"].tolist()
    other = train.train(small_mlp(digits), digits, steps=30, eval_every=10, seed=4, progress=False)
    assert other.frame["value"].tolist() != runs[0].frame["value"].tolist()


def test_learns_and_logs_every_eval(digits):
    history = train.train(small_mlp(digits), digits, steps=200, eval_every=50, lr=3e-3, progress=False)
    steps, acc = history.curve("test", "acc")
    assert steps.tolist() == [0, 50, 100, 150, 200]
    assert acc[-1] > 0.85 > acc[0]
    assert not history.diverged


def test_metrics_match_an_independent_computation(digits):
    noisy = data.with_label_noise(digits, "symmetric", 0.4, seed=1)
    history = train.train(small_mlp(noisy), noisy, steps=20, eval_every=20, progress=False)
    model = history.model.eval()
    with torch.no_grad():
        pred = model(noisy.x_train).argmax(1)
        test_pred = model(noisy.x_test).argmax(1)
    mask = noisy.corrupted_mask
    expected = {
        ("train", "acc"): (pred == noisy.y_train).float().mean().item(),
        ("test", "acc"): (test_pred == noisy.y_test).float().mean().item(),
        ("train_corrupted", "acc"): (pred[mask] == noisy.y_train[mask]).float().mean().item(),
        ("train_corrupted", "acc_true"): (pred[mask] == noisy.y_train_true[mask]).float().mean().item(),
        ("train_clean", "acc"): (pred[~mask] == noisy.y_train[~mask]).float().mean().item(),
    }
    for (split, metric), value in expected.items():
        assert history.final(split, metric) == pytest.approx(value, abs=1e-7)


def test_full_batch_and_batch_order():
    orders = list(engine.batch_order(10, 4, 5, seed=0))
    assert [len(o) for o in orders] == [4, 4, 4, 4, 4]
    first_epoch = torch.cat(orders[:2])
    assert len(set(first_epoch.tolist())) == 8
    full = list(engine.batch_order(10, None, 3, seed=0))
    assert all(torch.equal(o, torch.arange(10)) for o in full)


def test_schedules():
    cosine = engine.schedule("cosine", 100)
    assert cosine(0) == 1 and cosine(100) == pytest.approx(0) and cosine(50) == pytest.approx(0.5)
    step = engine.schedule("step", 100)
    assert step(10) == 1 and step(60) == pytest.approx(0.1) and step(80) == pytest.approx(0.01)
    warm = engine.schedule("warmup_cosine", 100, warmup=10)
    assert warm(0) == pytest.approx(0.1) and warm(9) == pytest.approx(1.0)


def test_divergence_is_marked_not_raised(digits):
    # a linear model under squared error grows geometrically at a too-large step size
    # (a ReLU network could instead die and keep a finite loss)
    linear = lambda: models.MLP(64, 10, depth=0)  # noqa: E731
    history = train.train(linear, digits, loss="mse", optimizer="sgd", lr=1e3, momentum=0.0,
                          steps=100, eval_every=10, progress=False)
    assert history.diverged
    assert history.diverged_at[0] <= 100
    assert history.frame["diverged"].all()


@pytest.mark.parametrize("kwargs,match", [
    ({"lr": -1e-3}, "learning rate"),
    ({"lr": 0.0}, "learning rate"),
    ({"weight_decay": -1}, "weight decay"),
    ({"steps": 0}, "steps"),
    ({"optimizer": "lion"}, "unknown optimizer"),
    ({"loss": "focal"}, "unknown loss"),
    ({"schedule_name": "linear"}, "unknown schedule"),
])
def test_bad_input(digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        train.train(small_mlp(digits), digits, progress=False, steps=kwargs.pop("steps", 5), **kwargs)


def test_elr_runs_through_the_loop(digits):
    noisy = data.with_label_noise(digits, "symmetric", 0.4, seed=1)
    history = train.train(small_mlp(noisy), noisy, loss="elr", lam=3.0, beta=0.7, steps=20,
                          eval_every=10, progress=False)
    assert math.isfinite(history.final("train", "objective"))
    assert history.knobs[0]["lam"] == 3.0


def test_crop_flip_matches_a_per_image_loop():
    from tdlab.core import augment
    from tdlab.core.engine import Batch

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=gen)
    hook = augment.crop_flip(padding=2, seed=11)
    out = hook(Batch(x, torch.zeros(6, dtype=torch.long), torch.arange(6), 1)).x
    # every output must be some crop (and maybe flip) of its own zero-padded input
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        candidates = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i], c) for c in candidates)
    assert not torch.equal(out, x)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_named_optimizers_match_torch_optim(digits, name):
    """train() steps named optimizers on a flat buffer (tdlab.core.flat); torch.optim is the reference."""
    settings = dict(lr=3e-2 if name == "sgd" else 3e-3, weight_decay=1e-2, momentum=0.8)
    common = dict(steps=40, eval_every=10, batch_size=64, seed=1, schedule_name="cosine", progress=False)
    ours = train.train(small_mlp(digits), digits, optimizer=name, **settings, **common)
    reference = train.train(small_mlp(digits), digits, **common,
                            optimizer=lambda params: engine.make_optimizer(name, params, **settings))
    for split in ("train", "test"):
        assert torch.allclose(torch.tensor(ours.curve(split, "loss")[1]),
                              torch.tensor(reference.curve(split, "loss")[1]), atol=1e-5, rtol=0)
    for a, b in zip(ours.model.parameters(), reference.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_flatten_keeps_the_model_and_shares_memory():
    from tdlab.core import flat

    model = models.MLP(5, 3, width=4, depth=1)
    x = torch.randn(7, 5)
    before = model(x).detach()
    buffer, params = flat.flatten_(model)
    assert buffer.shape == (1, sum(p.numel() for p in model.parameters()))
    assert torch.equal(model(x), before)
    with torch.no_grad():
        buffer.zero_()
    assert all((p == 0).all() for p in model.parameters())


def test_mixed_dtype_model_trains_with_torch_optim(digits):
    """flatten_ needs one dtype; train() then falls back to torch.optim for named optimizers."""
    from tdlab.core import flat

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = models.MLP(64, 10, width=8, depth=1)
            self.scale = torch.nn.Parameter(torch.ones((), dtype=torch.float64))

        def forward(self, x):
            return self.body(x) * self.scale.float()

    with pytest.raises(ValueError, match="one dtype"):
        flat.flatten_(Mixed())
    history = train.train(Mixed, digits, steps=5, eval_every=5, progress=False)
    assert history.model.scale.dtype == torch.float64
