"""Nested dropout (tdlab.methods.noisy_labels.nested) and co-teaching (tdlab.methods.noisy_labels.coteaching) against independent computations:
the official formulas written out naively, the 0/1 mask of the official code, brute force over every
truncation, and batched runs against separate runs."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdlab.methods.noisy_labels import coteaching, nested
from tdlab.core import data, engine, flat, history, losses, noise


@pytest.fixture(scope="module")
def digits():
    d = data.digits()
    return d.replace(x_train=d.x_train.flatten(1), x_test=d.x_test.flatten(1))


def official_gaussian_dist(mu, std, n):
    """``GaussianDist`` of nested/train_resnet.py, verbatim in numpy."""
    dist = np.array([np.exp(-((i - mu) / std) ** 2) for i in range(1, n + 1)])
    return dist / np.sum(dist)


@pytest.mark.parametrize("width,sigma,mu", [(512, 10.0, 0.0), (64, 3.0, 0.0), (20, 100.0, 2.0)])
def test_truncation_distribution_is_the_official_gaussian(width, sigma, mu):
    np.testing.assert_allclose(nested.truncation_distribution(width, sigma, mu), official_gaussian_dist(mu, sigma, width),
                               rtol=1e-12)


def test_draws_follow_the_distribution():
    model = nested.NestedMLP(8, 3, width=12, sigma=4.0, mask_seed=1).train()
    counts = np.bincount([model.kept_channels() for _ in range(20000)], minlength=13)[1:]
    expected = nested.truncation_distribution(12, 4.0) * 20000
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max())


def test_training_forward_equals_the_official_mask_values_and_gradients():
    torch.manual_seed(0)
    model = nested.NestedMLP(10, 4, width=16, depth=2, sigma=5.0, mask_seed=3).train()
    x, y = torch.randn(9, 10), torch.randint(0, 4, (9,))
    out = model(x)
    keep = model.kept
    loss = F.cross_entropy(out, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    # the official code: full features times a 0/1 mask of the first k + 1 channels, then the classifier
    twin = nested.NestedMLP(10, 4, width=16, depth=2, sigma=5.0)
    twin.load_state_dict(model.state_dict())
    mask = torch.zeros(16)
    mask[:keep] = 1
    reference = (twin.trunk(x) * mask) @ twin.classifier.weight.T
    torch.testing.assert_close(out, reference)
    reference_grads = torch.autograd.grad(F.cross_entropy(reference, y), list(twin.parameters()))
    for g, r in zip(grads, reference_grads):
        torch.testing.assert_close(g, r)


def test_stacked_forward_equals_each_network_in_training_and_evaluation():
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(nested.NestedMLP(10, 5, width=12, depth=2, sigma=4.0, mask_seed=7))
    _, params, _ = flat.stack(models)
    x = torch.randn(6, 10)
    for keep in (None, 1, 5, 12):
        for m in models:
            m.eval()
            m.keep = keep
        torch.testing.assert_close(models[0].forward_stacked(params, x), torch.stack([m(x) for m in models]))
    twins = []
    for seed in range(3):                       # the same mask seed: the same truncation at every call
        torch.manual_seed(seed)
        twins.append(nested.NestedMLP(10, 5, width=12, depth=2, sigma=4.0, mask_seed=7).train())
    stacked_model = models[0].train()
    for _ in range(5):
        stacked = stacked_model.forward_stacked(params, x)
        separate = torch.stack([t(x) for t in twins])
        assert stacked_model.kept == twins[0].kept == twins[2].kept
        torch.testing.assert_close(stacked, separate)


def test_every_truncation_at_once_equals_brute_force():
    torch.manual_seed(0)
    models = [nested.NestedMLP(10, 4, width=9, sigma=3.0) for _ in range(2)]
    x, y = torch.randn(30, 10), torch.randint(0, 4, (30,))
    curves = nested.truncation_curves(models, x, y)
    pair = nested.truncation_curves(models, x, y, pairs=True)
    for K in range(1, 10):
        logits = []
        for m, model in enumerate(models):
            model.eval()
            model.keep = K
            with torch.no_grad():
                logits.append(model(x))
            assert curves[m, K - 1] == pytest.approx((logits[-1].argmax(-1) == y).float().mean().item())
        averaged = (logits[0] + logits[1]) / 2
        assert pair[0, K - 1] == pytest.approx((averaged.argmax(-1) == y).float().mean().item())


def test_choice_of_truncation_breaks_ties_towards_fewer_channels():
    accuracy = torch.tensor([[0.5, 0.7, 0.7, 0.6], [0.9, 0.2, 0.9, 0.95], [0.1, 0.1, 0.1, 0.1]])
    assert nested.choose_truncation(accuracy).tolist() == [2, 4, 1]


def test_holdout_is_a_disjoint_seeded_split(digits):
    train, val = nested.holdout(digits, 0.1, seed=3)
    assert train.num_train + val.x.shape[0] == digits.num_train and val.x.shape[0] == round(0.1 * digits.num_train)
    rows = {tuple(r) for r in digits.x_train.tolist()}
    assert {tuple(r) for r in val.x.tolist()} <= rows
    again, val_again = nested.holdout(digits, 0.1, seed=3)
    assert torch.equal(val.x, val_again.x) and torch.equal(train.y_train, again.y_train)
    noisy = val.labels("symmetric", 0.4, 5)
    assert torch.equal(noisy, noise.symmetric(val.y, 0.4, 10, 5).labels)
    assert torch.equal(val.labels("symmetric", 0.0, 5), val.y)


def naive_coteaching(logits, targets, rate):
    """The official SampleSelection + Classification for one pair, on the whole batch (Han et al.)."""
    z1, z2 = logits
    remember = int((1 - rate) * len(targets))
    idx1 = torch.argsort(F.cross_entropy(z1, targets, reduction="none").detach(), stable=True)[:remember]
    idx2 = torch.argsort(F.cross_entropy(z2, targets, reduction="none").detach(), stable=True)[:remember]
    return torch.stack([F.cross_entropy(z1[idx2], targets[idx2]), F.cross_entropy(z2[idx1], targets[idx1])])


@pytest.mark.parametrize("rate", [0.2, 0.45])
def test_coteaching_loss_equals_the_official_selection_values_and_gradients(rate):
    gen = torch.Generator().manual_seed(0)
    logits = (2 * torch.randn(4, 32, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 5, (32,), generator=gen)
    loss = coteaching.CoTeaching(forget_rate=torch.tensor([rate, rate, 0.3, 0.3]), start=0.0, ramp_epochs=0)
    loss.setup(32, 5, members=4)
    loss.at_step(1, 10, 5)
    value = loss(logits, targets.expand(4, -1))
    reference = torch.cat([naive_coteaching(logits[0:2], targets, rate), naive_coteaching(logits[2:4], targets, 0.3)])
    torch.testing.assert_close(value, reference)
    torch.testing.assert_close(torch.autograd.grad(value.sum(), logits)[0],
                               torch.autograd.grad(reference.sum(), logits)[0])
    assert loss.kept.sum(-1).tolist() == [int((1 - rate) * 32)] * 2 + [int(0.7 * 32)] * 2


def test_coteaching_is_cross_entropy_in_stage_one_and_with_no_forgetting():
    gen = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(2, 16, 3, generator=gen), torch.randint(0, 3, (2, 16), generator=gen)
    targets[1] = targets[0]
    ce = losses.cross_entropy(logits, targets)
    loss = coteaching.CoTeaching(forget_rate=0.4, start=0.5, ramp_epochs=0)
    loss.setup(16, 3, members=2)
    loss.at_step(50, 100, 10)                                   # stage 1: the first half of the steps
    torch.testing.assert_close(loss(logits, targets), ce)
    loss.at_step(51, 100, 10)
    assert loss.rates == [0.4, 0.4]
    assert not torch.allclose(loss(logits, targets), ce)
    no_forgetting = coteaching.CoTeaching(forget_rate=0.0, start=0.0)
    no_forgetting.setup(16, 3, members=2)
    no_forgetting.at_step(1, 100, 10)
    torch.testing.assert_close(no_forgetting(logits, targets), ce)


def test_random_drop_control_keeps_the_same_share_independent_of_the_losses():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 40, 5, generator=gen, dtype=torch.float64).requires_grad_()
    targets = torch.randint(0, 5, (40,), generator=gen).expand(4, -1)
    runs = []
    for shift in (0.0, 3.0):                                   # other losses, the same seeded draw
        loss = coteaching.CoTeaching(forget_rate=0.4, start=0.0, ramp_epochs=0, selection="random", seed=7)
        loss.setup(40, 5, members=4)
        loss.at_step(1, 10, 5)
        value = loss(logits + shift * torch.randn(4, 40, 5, generator=gen, dtype=torch.float64), targets)
        runs.append(loss.kept.clone())
        assert loss.kept.sum(-1).tolist() == [int(0.6 * 40)] * 4
        assert value.shape == (4,) and torch.isfinite(value).all()
    assert torch.equal(runs[0], runs[1])
    assert loss.describe()["selection"] == "random"
    with pytest.raises(ValueError):
        coteaching.CoTeaching(selection="largest")


@pytest.mark.parametrize("ramp", [0, 1, 5])
def test_forget_rate_schedule_is_the_official_rate_schedule(ramp):
    tau, epochs, epoch_length, first = 0.3, 12, 4, 20
    official = np.ones(epochs) * tau
    official[:ramp] = np.linspace(0, tau, ramp)
    loss = coteaching.CoTeaching(forget_rate=tau, start=first / (first + epochs * epoch_length), ramp_epochs=ramp)
    loss.setup(100, 3, members=2)
    seen = []
    for step in range(first + 1, first + epochs * epoch_length + 1):
        loss.at_step(step, first + epochs * epoch_length, epoch_length)
        seen.append(loss.rates[0])
    np.testing.assert_allclose(seen[::epoch_length], official, atol=1e-12)


def test_coteaching_checks_its_pairs():
    with pytest.raises(ValueError, match="pairs"):
        coteaching.CoTeaching().setup(10, 3, members=3)
    with pytest.raises(ValueError, match="same forget rate"):
        coteaching.CoTeaching(forget_rate=torch.tensor([0.1, 0.2])).setup(10, 3, members=2)
    loss = coteaching.CoTeaching(forget_rate=0.5, start=0.0, ramp_epochs=0)
    loss.setup(8, 3, members=2)
    loss.at_step(1, 10, 2)
    with pytest.raises(ValueError, match="same labels"):
        loss(torch.randn(2, 8, 3), torch.stack([torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long)]))


def _run(digits, members, **kw):
    return engine.run(lambda: nested.NestedMLP(64, 10, width=16, sigma=4.0, mask_seed=2), digits, members,
                      loss=coteaching.CoTeaching(0.3, start=0.5, ramp_epochs=2), optimizer="adamw", lr=3e-3,
                      batch_size=64, steps=60, eval_every=30, progress=False, **kw)


def test_batched_pairs_equal_separate_runs_of_each_pair(digits):
    members = [dict(seed=0, noise_rate=0.4, forget_rate=0.3), dict(seed=1, noise_rate=0.4, forget_rate=0.3),
               dict(seed=0, noise_rate=0.4, forget_rate=0.0), dict(seed=1, noise_rate=0.4, forget_rate=0.0)]
    together = _run(digits, members)
    first, second = _run(digits, members[:2]), _run(digits, members[2:])
    for m, (alone, index) in enumerate([(first, 0), (first, 1), (second, 0), (second, 1)]):
        for a, b in zip(together.models[m].parameters(), alone.models[index].parameters()):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # stage 1 is shared: with τ = 0 the pair trained with plain cross-entropy throughout
    assert together.final("test", "acc", 0) != together.final("test", "acc", 2)


# two networks trained on the same 40%-noisy labels (the monitor tests below)
NOISY_PAIR = [dict(seed=0, noise_rate=0.4, noise_seed=3, forget_rate=0.0),
              dict(seed=1, noise_rate=0.4, noise_seed=3, forget_rate=0.0)]


def _nested16():
    return nested.NestedMLP(64, 10, width=16, sigma=4.0)


def _first_best_K(curve):
    """Brute force: the smallest K (1-based) at which a truncation curve of 16 widths peaks (earliest tie)."""
    return int(np.argmax(curve - 1e-5 * np.arange(16))) + 1


def test_monitor_chooses_K_on_noisy_validation_labels_as_brute_force(digits):
    train, val = nested.holdout(digits, 0.2, seed=0)
    h = _run(train, NOISY_PAIR, monitors=[nested.monitor(_nested16(), val, pairs=True)])
    noisy = noise.symmetric(val.y, 0.4, 10, 3).labels
    val_curves = nested.truncation_curves(h.models, val.x, noisy)
    test_curves = nested.truncation_curves(h.models, train.x_test, train.y_test)
    for m in range(2):
        K = _first_best_K(val_curves[m])
        assert h.final("val", "K", m) == K
        assert h.final("test_K", "acc", m) == pytest.approx(test_curves[m, K - 1])
        assert h.final("val", "acc", m) == pytest.approx(val_curves[m, K - 1])
        assert h.final("val_all", "acc", m) == pytest.approx(val_curves[m, -1])
    pair_val = nested.truncation_curves(h.models, val.x, noisy, pairs=True)[0]
    pair_test = nested.truncation_curves(h.models, train.x_test, train.y_test, pairs=True)[0]
    K = _first_best_K(pair_val)
    assert h.final("val_pair", "K", 1) == K
    assert h.final("val_pair", "acc", 1) == pytest.approx(pair_val[K - 1])
    assert h.final("test_pair", "acc", 0) == pytest.approx(pair_test[K - 1])
    assert h.final("val_pair_all", "acc", 0) == pytest.approx(pair_val[-1])
    assert h.final("test_pair_all", "acc", 1) == pytest.approx(pair_test[-1])
    # the best-validation reading: the test value at the step where the validation curve peaks (earliest tie)
    steps, values = h.curve("val", "acc", 0)
    best = int(steps[int(np.argmax(values))])
    assert nested.at_best_validation(h, ("val", "acc"), ("test_K", "acc"), 0) == h.at_step("test_K", "acc", best, 0)
    # the loop's own accuracy is the full-width one
    assert h.final("test", "acc", 0) == pytest.approx(test_curves[0, -1])


def test_monitor_with_clean_labels_chooses_K_on_the_true_labels(digits):
    train, val = nested.holdout(digits, 0.2, seed=0)
    h = _run(train, NOISY_PAIR, monitors=[nested.monitor(_nested16(), val, pairs=True, clean_labels=True)])
    val_curves = nested.truncation_curves(h.models, val.x, val.y)
    for m in range(2):
        K = _first_best_K(val_curves[m])
        assert h.final("val", "K", m) == K
        assert h.final("val", "acc", m) == pytest.approx(val_curves[m, K - 1])


def test_monitor_also_on_clean_labels_keeps_the_noisy_choice(digits):
    train, val = nested.holdout(digits, 0.2, seed=0)
    h = _run(train, NOISY_PAIR, monitors=[nested.monitor(_nested16(), val, pairs=True, clean_too=True)])
    noisy = noise.symmetric(val.y, 0.4, 10, 3).labels
    clean_curves = nested.truncation_curves(h.models, val.x, val.y)
    noisy_curves = nested.truncation_curves(h.models, val.x, noisy)
    test_curves = nested.truncation_curves(h.models, train.x_test, train.y_test)
    for m in range(2):
        K = _first_best_K(clean_curves[m])
        assert h.final("val_clean", "K", m) == K
        assert h.final("val_clean", "acc", m) == pytest.approx(clean_curves[m, K - 1])
        assert h.final("test_K_clean", "acc", m) == pytest.approx(test_curves[m, K - 1])
        assert h.final("val_all_clean", "acc", m) == pytest.approx(clean_curves[m, -1])
        assert h.final("val", "K", m) == _first_best_K(noisy_curves[m])
    clean_pair = nested.truncation_curves(h.models, val.x, val.y, pairs=True)[0]     # the pair's averaged logits
    test_pair = nested.truncation_curves(h.models, train.x_test, train.y_test, pairs=True)[0]
    K = _first_best_K(clean_pair)
    for m in range(2):                                                                 # logged on both members
        assert h.final("val_pair_clean", "K", m) == K
        assert h.final("val_pair_clean", "acc", m) == pytest.approx(clean_pair[K - 1])
        assert h.final("test_pair_clean", "acc", m) == pytest.approx(test_pair[K - 1])
        assert h.final("val_pair_all_clean", "acc", m) == pytest.approx(clean_pair[-1])
        assert h.final("test_pair_all", "acc", m) == pytest.approx(test_pair[-1])
    assert not h.has("test_pair_all_clean", "acc")


def test_the_paper_network_stacks_and_its_monitor_runs():
    """NestedNet on the ResNet-18 trunk (batch norm on batch statistics) trains as a stacked co-teaching
    pair through ``vmap``, one truncation for both, and the monitor reads its features."""
    gen = torch.Generator().manual_seed(0)
    images = data.Dataset("tiny", torch.randn(16, 3, 8, 8, generator=gen), torch.randint(0, 10, (16,), generator=gen),
                          torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen), 10)
    train, val = nested.holdout(images, 0.25, seed=0)
    make = lambda: nested.NestedNet(nested.resnet18_trunk(width=4), 32, 10, sigma=10.0, mask_seed=1)  # noqa: E731
    assert engine.stackable(make()) is None
    h = engine.run(make, train, [dict(seed=0, forget_rate=0.5), dict(seed=1, forget_rate=0.5)],
                   loss=coteaching.CoTeaching(0.5, start=0.5, ramp_epochs=0), optimizer="sgd", lr=0.01,
                   batch_size=4, steps=4, eval_every=4, progress=False, batched=True,
                   monitors=[nested.monitor(make(), val, pairs=True)])
    assert 1 <= h.final("val", "K", 0) <= 32 and h.final("test_pair", "acc", 0) == h.final("test_pair", "acc", 1)


def test_plain_dropout_control_masks_and_rescales_in_training_only():
    """dropout p (σ = 0): each feature zeroed with probability p, the rest scaled by 1/(1 − p) — the official
    F.dropout baseline; nothing in evaluation; nested dropout and plain dropout do not combine."""
    torch.manual_seed(0)
    model = nested.NestedMLP(10, 4, width=64, depth=2, sigma=0.0, dropout=0.6, mask_seed=2)
    x = torch.randn(500, 10)
    h = model.features(x)
    model.train()
    dropped = model.dropped(h)
    zero = (dropped == 0) & (h != 0)
    assert zero.sum().item() / (h != 0).sum().item() == pytest.approx(0.6, abs=0.02)
    torch.testing.assert_close(dropped[~zero & (h != 0)], h[~zero & (h != 0)] / 0.4)
    reference = model.dropped(h) @ model.classifier.weight.T                  # the generator moves on: a new mask
    assert not torch.equal(reference, model(x))
    model.eval()
    torch.testing.assert_close(model(x), h @ model.classifier.weight.T)
    _, params, _ = flat.stack([model, model])
    model.train()
    stacked = model.forward_stacked(params, x)                                  # one mask per member
    assert not torch.equal(stacked[0], stacked[1])
    with pytest.raises(ValueError):
        nested.NestedMLP(10, 4, width=8, sigma=4.0, dropout=0.5)


def test_sweep_readers_pick_members_and_read_them_at_their_best_step():
    h = history.History(knobs=[{"sigma": 0.0, "seed": 0}, {"sigma": 10.0, "seed": 1}, {"sigma": 10.0, "seed": 2}],
                        models=[None] * 3)
    for m, (vals, tests, Ks) in enumerate((([0.5, 0.7, 0.6], [0.4, 0.8, 0.9], [3, 4, 5]),
                                           ([0.9, 0.2, 0.9], [0.1, 0.2, 0.3], [6, 7, 8]),
                                           ([0.1, 0.2, 0.3], [0.5, 0.6, 0.7], [2, 4, 6]))):
        for step, (v, t, K) in enumerate(zip(vals, tests, Ks)):
            h.log(step, "val", "acc", v, m)
            h.log(step, "test_K", "acc", t, m)
            h.log(step, "val", "K", K, m)
    assert h.members(sigma=10.0) == [1, 2]
    assert h.members(sigma=10.0, seed=2) == [2]
    reading = (("val", "acc"), ("test_K", "acc"))
    assert nested.mean_at_best(h, reading, [0]) == pytest.approx(0.8)
    assert nested.mean_at_best(h, reading, [1, 2]) == pytest.approx((0.1 + 0.7) / 2)   # ties: the earliest step
    assert nested.K_at_best(h, "val", [0, 1, 2]) == [4, 6, 6]
    assert nested.within_pairs([4, 8, 3, 3, 10, 5]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        nested.mean_at_best(h, reading, [])
    with pytest.raises(ValueError):
        nested.within_pairs([1, 2, 3])
