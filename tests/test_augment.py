"""mixup, CutMix and Cutout batch hooks, the soft-label loss, and the feature-noise data.

The hooks are checked against naive per-example loops that use the hook's own draw
(``hook.last``: λ, λ', π, box), the loss against λ·CE(y) + (1 − λ)·CE(y_π) computed
with a float64 formula, and the data model's proportions against their definition.
"""
import inspect
import math

import numpy as np
import pytest
import torch

from tdlab.core import augment, data, losses, models, sweep, train
from tdlab.core.engine import Batch


def _batch(shape=(6, 3, 5, 7), classes=4, seed=0, step=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (shape[0],), generator=gen)
    return Batch(x, y, torch.arange(shape[0]), step)


def _naive_ce(logits, label):
    z = logits.tolist()
    return -(z[label] - math.log(sum(math.exp(v) for v in z)))


# ----------------------------------------------------------------- mixup


def test_mixup_matches_a_per_example_loop():
    batch = _batch((6, 10), classes=4)
    hook = augment.mixup(alpha=2.0, num_classes=4, seed=3)
    out = hook(batch)
    lam, perm = hook.last["lam"], hook.last["perm"].tolist()
    assert 0.0 < lam < 1.0
    assert sorted(perm) == list(range(6))
    for i in range(6):
        j = perm[i]
        expected_x = [lam * a + (1 - lam) * b for a, b in zip(batch.x[i].tolist(), batch.x[j].tolist())]
        assert out.x[i].tolist() == pytest.approx(expected_x, abs=1e-12)
        expected_y = [0.0] * 4
        expected_y[int(batch.y[i])] += lam
        expected_y[int(batch.y[j])] += 1 - lam
        assert out.y[i].tolist() == pytest.approx(expected_y, abs=1e-12)
    assert torch.equal(out.index, batch.index) and out.step == batch.step


def test_one_lambda_and_one_permutation_per_batch_drawn_from_beta():
    hook = augment.mixup(alpha=0.5, num_classes=4, seed=0)
    lams = []
    for step in range(1, 2001):
        hook(_batch((4, 3), step=step))
        lams.append(hook.last["lam"])
    lams = np.array(lams)
    # Beta(0.5, 0.5): mean 1/2, variance 1/8; U-shaped, a third of the mass below 0.067 and above 0.933
    assert lams.mean() == pytest.approx(0.5, abs=0.03)
    assert lams.var() == pytest.approx(1 / 8, abs=0.01)
    assert (lams < 0.0670).mean() == pytest.approx(1 / 6, abs=0.03)


def test_alpha_zero_is_no_mixing():
    batch = _batch((5, 3))
    out = augment.mixup(alpha=0.0, num_classes=4)(batch)
    assert out is batch                     # ERM: the batch passes through untouched, integer labels and all


def test_mixup_label_map_changes_only_the_label_coefficient():
    batch = _batch((8, 3))
    plain = augment.mixup(alpha=1.0, num_classes=4, seed=5)
    mapped = augment.mixup(alpha=1.0, num_classes=4, seed=5, label_map=augment.label_power(3.0))
    a, b = plain(batch), mapped(batch)
    lam = plain.last["lam"]
    assert mapped.last["lam"] == lam and torch.equal(plain.last["perm"], mapped.last["perm"])
    torch.testing.assert_close(a.x, b.x)
    expected = lam**3 / (lam**3 + (1 - lam) ** 3)
    assert mapped.last["lam_label"] == pytest.approx(expected)
    onehot = torch.nn.functional.one_hot(batch.y, 4).double()
    perm = plain.last["perm"]
    torch.testing.assert_close(b.y, expected * onehot + (1 - expected) * onehot[perm])


def test_label_power_family():
    g = augment.label_power(3.0)
    assert g(0.5) == pytest.approx(0.5)
    assert g(0.7) > 0.7 and g(0.3) < 0.3
    assert g(0.2) + g(0.8) == pytest.approx(1.0)
    assert augment.label_power(1.0)(0.37) == pytest.approx(0.37)
    assert augment.label_power(0.0)(0.9) == 0.5
    with pytest.raises(ValueError, match="gamma"):
        augment.label_power(-1.0)


def test_mixup_switches_off_after_the_given_step():
    hook = augment.mixup(alpha=1.0, num_classes=4, stop_after=3)
    for step in (1, 2, 3):
        out = hook(_batch((5, 3), step=step))
        assert out.y.is_floating_point() and out.y.shape == (5, 4)
    for step in (4, 10, 1000):
        batch = _batch((5, 3), step=step)
        out = hook(batch)
        assert out is batch                                         # plain ERM: untouched, integer labels
    assert augment.mixup(alpha=1.0, num_classes=4, stop_after=0)(_batch((5, 3), step=1)).y.dtype == torch.long


def test_late_mixup_starts_after_the_given_step_and_then_mixes_as_mixup_throughout():
    late, always = augment.mixup(alpha=1.0, num_classes=4, start_after=2, seed=3), augment.mixup(1.0, 4, seed=3)
    for step in (1, 2, 3, 4):
        batch = _batch((5, 3), step=step)
        out, reference = late(batch), always(batch)
        if step <= 2:
            assert out is batch                                     # plain ERM: untouched, integer labels
        else:
            torch.testing.assert_close(out.x, reference.x)          # same λ and π as mixup throughout
            torch.testing.assert_close(out.y, reference.y)
    assert "mixup_start_after" not in always.settings and late.settings["mixup_start_after"] == 2
    with pytest.raises(ValueError, match="start_after"):
        augment.mixup(start_after=-1)


def test_hook_restarts_its_stream_at_step_one():
    hook = augment.mixup(alpha=1.0, num_classes=4, seed=9)
    first = [hook(_batch((6, 2), step=s)).x for s in (1, 2, 3)]
    again = [hook(_batch((6, 2), step=s)).x for s in (1, 2, 3)]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)


def test_mixup_on_sweep_targets_with_a_member_axis():
    batch = _batch((6, 3))
    y_members = torch.stack([batch.y, (batch.y + 1) % 4])                 # (E=2, B)
    hook = augment.mixup(alpha=1.0, num_classes=4, seed=1)
    out = hook(Batch(batch.x, y_members, batch.index, 1))
    lam, perm = hook.last["lam"], hook.last["perm"]
    assert out.y.shape == (2, 6, 4)
    for member in range(2):
        onehot = torch.nn.functional.one_hot(y_members[member], 4).double()
        torch.testing.assert_close(out.y[member], lam * onehot + (1 - lam) * onehot[perm])


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="alpha"):
        augment.mixup(alpha=-1.0)
    with pytest.raises(ValueError, match="num_classes"):
        augment.mixup(num_classes=1)
    with pytest.raises(ValueError, match="stop_after"):
        augment.mixup(stop_after=-2)
    with pytest.raises(ValueError, match="prob"):
        augment.cutmix(prob=1.5)
    with pytest.raises(ValueError, match="image batches"):
        augment.cutmix()(_batch((4, 9)))


# ----------------------------------------------------------------- the loss


def test_soft_ce_with_mixed_label_equals_the_official_mixup_criterion():
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(9, 5, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, 5, (9,), generator=gen)
    perm = torch.randperm(9, generator=gen)
    lam = 0.3
    targets = augment.mix_targets(y, perm, lam, 5, dtype=torch.float64)
    ours = losses.get_loss("soft_ce")(logits, targets)
    naive = sum(lam * _naive_ce(logits[i], int(y[i])) + (1 - lam) * _naive_ce(logits[i], int(y[perm[i]]))
                for i in range(9)) / 9
    assert ours.item() == pytest.approx(naive, rel=1e-12)
    official = lam * losses.cross_entropy(logits, y) + (1 - lam) * losses.cross_entropy(logits, y[perm])
    assert ours.item() == pytest.approx(official.item(), rel=1e-12)


def test_soft_ce_on_integer_targets_is_cross_entropy_and_batches_over_members():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 7, 4, generator=gen)
    y = torch.randint(0, 4, (3, 7), generator=gen)
    loss = losses.get_loss("soft_ce")
    torch.testing.assert_close(loss(logits, y), losses.cross_entropy(logits, y))
    soft = torch.nn.functional.one_hot(y, 4).float()
    torch.testing.assert_close(loss(logits, soft), losses.cross_entropy(logits, y))
    assert loss(logits, soft).shape == (3,)
    with pytest.raises(ValueError, match="classes"):
        loss(logits, soft[..., :3])


def test_mixup_trains_in_a_loop_and_in_a_batched_sweep_alike():
    clean = data.digits().subset(200)
    clean = clean.replace(x_train=clean.x_train.flatten(1), x_test=clean.x_test.flatten(1))
    make = lambda: models.MLP(64, 10, width=32, depth=1)  # noqa: E731
    settings = dict(loss="soft_ce", lr=3e-3, batch_size=50, steps=30, eval_every=10, progress=False)
    single = train.train(make, clean, batch_hook=augment.mixup(1.0, 10, seed=2, stop_after=20), **settings)
    batched = sweep.sweep(make, clean, [{"seed": 0}], batch_hook=augment.mixup(1.0, 10, seed=2, stop_after=20),
                          **settings)
    np.testing.assert_allclose(single.curve("test", "loss")[1], batched.curve("test", "loss")[1], rtol=1e-4)


# ----------------------------------------------------------------- CutMix and Cutout


def test_cutmix_box_area_matches_the_recomputed_lambda_and_pastes_the_partner():
    for seed in range(20):
        batch = _batch((5, 2, 9, 12), seed=seed)
        hook = augment.cutmix(beta=1.0, num_classes=4, seed=seed)
        out = hook(batch)
        top, bottom, left, right = hook.last["box"]
        lam, perm = hook.last["lam"], hook.last["perm"].tolist()
        assert 0 <= top <= bottom <= 9 and 0 <= left <= right <= 12
        assert lam == pytest.approx(1 - (bottom - top) * (right - left) / (9 * 12))
        for i in range(5):
            for r in range(9):
                for c in range(12):
                    source = perm[i] if (top <= r < bottom and left <= c < right) else i
                    assert torch.equal(out.x[i, :, r, c], batch.x[source, :, r, c])
        onehot = torch.nn.functional.one_hot(batch.y, 4).double()
        torch.testing.assert_close(out.y, lam * onehot + (1 - lam) * onehot[hook.last["perm"]])


def test_rand_bbox_is_clipped_at_the_border():
    # r = sqrt(1 − 0.75) = 0.5: a 4×4 box; centred at the corner only a 2×2 quarter is left
    assert augment.rand_bbox(8, 8, 0.75, 0, 0) == (0, 2, 0, 2)
    assert augment.rand_bbox(8, 8, 0.75, 4, 4) == (2, 6, 2, 6)
    assert augment.rand_bbox(8, 8, 1.0, 3, 3) == (3, 3, 3, 3)


def test_cutmix_probability_and_switch_off():
    hook = augment.cutmix(beta=1.0, num_classes=4, prob=0.5, seed=0)
    mixed = sum(hook(_batch((3, 1, 6, 6), step=s)).y.is_floating_point() for s in range(1, 401))
    assert 160 <= mixed <= 240
    off = augment.cutmix(beta=1.0, num_classes=4, stop_after=2)
    assert off(_batch((3, 1, 6, 6), step=2)).y.is_floating_point()
    batch = _batch((3, 1, 6, 6), step=3)
    assert off(batch) is batch


def test_cutout_zeroes_one_clipped_square_per_image():
    batch = _batch((16, 2, 8, 8))
    out = augment.cutout(4, seed=1)(batch)
    for i in range(16):
        zero = (out.x[i] == 0).all(0)
        rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert zero.sum() == len(rows) * len(cols)                    # a rectangle (the clipped square)
        torch.testing.assert_close(out.x[i][:, ~zero], batch.x[i][:, ~zero])
    assert torch.equal(out.y, batch.y)


# ----------------------------------------------------------------- the feature-noise data model


def test_feature_noise_data_proportions_and_structure():
    d = data.feature_noise(num_train=4000, num_test=6000, num_classes=3, patches=5, dim=32,
                           rare_fraction=0.1, noise_std=0.7, seed=0)
    assert d.x_train.shape == (4000, 5, 32) and d.num_classes == 3
    rare_train, rare_test = d.info["rare_train"], d.info["rare_test"]
    assert rare_train.dtype == torch.bool and rare_test.shape == (6000,)
    for mask in (rare_train, rare_test):
        assert mask.float().mean().item() == pytest.approx(0.1, abs=0.015)
    feats = d.info["features"]                                         # rows u_1..u_C, v_1..v_C
    torch.testing.assert_close(feats @ feats.T, torch.eye(6), atol=1e-5, rtol=0)
    # patch 1 is u_y (common) or v_y (rare); patch 2 is 0.3·u_{y'} with y' ≠ y; noise ⟂ features
    for x, y, rare in zip(d.x_train[:300], d.y_train[:300], rare_train[:300]):
        expected = feats[3 + y] if rare else feats[y]
        torch.testing.assert_close(x[0], expected, atol=1e-5, rtol=0)
        coefficients = feats @ x[1]
        assert coefficients[y].abs() < 1e-5 and coefficients[:3].max() == pytest.approx(0.3, abs=1e-5)
        assert (feats @ x[2:].T).abs().max() < 1e-4
    noise_std = d.x_train[:, 2:].std().item()
    assert noise_std == pytest.approx(0.7 * math.sqrt(26 / 32), rel=0.03)   # σ² on d − 2C directions
    classes = torch.bincount(d.y_train, minlength=3).float() / 4000
    assert torch.allclose(classes, torch.full((3,), 1 / 3), atol=0.03)


def test_feature_noise_is_seeded():
    a, b = data.feature_noise(seed=4), data.feature_noise(seed=4)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.info["rare_test"], b.info["rare_test"])
    assert not torch.equal(a.x_train, data.feature_noise(seed=5).x_train)
    with pytest.raises(ValueError, match="rare_fraction"):
        data.feature_noise(rare_fraction=1.5)


def test_compose_applies_hooks_in_order():
    batch = _batch((4, 1, 6, 6))
    a, b = augment.mixup(1.0, 4, seed=1), augment.cutout(2, seed=2)
    out = augment.compose(b, None, a)(batch)
    a2, b2 = augment.mixup(1.0, 4, seed=1), augment.cutout(2, seed=2)
    torch.testing.assert_close(out.x, a2(b2(batch)).x)


def test_occlusion_map_matches_a_per_pixel_loop():
    torch.manual_seed(0)
    model = models.CNN2d(1, 10, channels=4, image_size=8)
    x = torch.rand(3, 1, 8, 8)
    y = torch.tensor([1, 4, 7])
    ours = augment.occlusion_map(model, x, y, size=3)
    assert ours.shape == (3, 8, 8)
    with torch.no_grad():
        for n in range(3):
            base = torch.softmax(model(x[n:n + 1]), -1)[0, y[n]]
            for i in (0, 4, 7):
                for j in (0, 5, 7):
                    xo = x[n:n + 1].clone()
                    xo[..., i:min(i + 3, 8), j:min(j + 3, 8)] = 0
                    expected = base - torch.softmax(model(xo), -1)[0, y[n]]
                    assert ours[n, i, j].item() == pytest.approx(expected.item(), abs=1e-6)


class _Linear(torch.nn.Module):
    """A linear classifier on 1×2×2 images with fixed weights, its logits divided by a temperature."""

    def __init__(self, temperature=1.0):
        super().__init__()
        self.w = torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
        self.temperature = temperature

    def forward(self, x):
        return x.flatten(1) @ self.w.T / self.temperature


def test_occlusion_margin_map_on_a_tiny_linear_model():
    x = torch.tensor([[[[1.0, 0.5], [0.25, 1.0]]]])        # logits (3, 0.5, 0.75): margin of class 0 = 2.25
    y = torch.tensor([0])
    ours = augment.occlusion_map(_Linear(), x, y, size=1, fill=0.0, score="margin")
    # pixel (0,0) zeroed: logits (2, .5, .75) → 1.25; (0,1): (3, 0, .75) → 2.25; (1,0): (3, .5, 0) → 2.5;
    # (1,1): (1, .5, .75) → 0.25
    torch.testing.assert_close(ours, torch.tensor([[[1.0, 0.0], [-0.25, 2.0]]]))
    prob = augment.occlusion_map(_Linear(), x, y, size=1, fill=0.0)          # the default is unchanged
    assert prob[0, 1, 1].item() == pytest.approx(
        (torch.softmax(torch.tensor([3.0, 0.5, 0.75]), 0)[0] - torch.softmax(torch.tensor([1.0, 0.5, 0.75]), 0)[0]).item())
    with pytest.raises(ValueError):
        augment.occlusion_map(_Linear(), x, y, size=1, score="logit")


def test_relative_share_of_the_margin_map_ignores_temperature():
    torch.manual_seed(0)
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 2])
    mask = torch.ones(5, 2, 2, dtype=torch.bool)
    shares = {t: augment.occluded_share(augment.occlusion_map(_Linear(t), x, y, size=1, score="margin"), mask, 0.25,
                                        relative=True) for t in (0.2, 1.0, 5.0)}
    assert shares[0.2] == shares[1.0] == shares[5.0]
    cold, hot = (augment.occlusion_map(_Linear(t), x, y, size=1, score="margin") for t in (0.5, 1.0))
    torch.testing.assert_close(cold, 2 * hot)


# ----------------------------------------------------------------- one hook per member


def _mixing_recipe(model):
    from tdlab.core import recipes
    clean = data.digits().subset(200)
    if model == "mlp":
        clean = clean.replace(x_train=clean.x_train.flatten(1), x_test=clean.x_test.flatten(1))
        make = lambda: models.MLP(64, 10, width=32, depth=1)  # noqa: E731
    else:
        make = lambda: models.CNN2d(1, 10, channels=4, image_size=8)  # noqa: E731

    @recipes.per_member
    def mixing(mixup_alpha=1.0, mixup_stop_after=40):
        return {"batch_hook": augment.mixup(mixup_alpha, 10, stop_after=mixup_stop_after, seed=3)}

    return recipes.Recipe(clean, make, dict(loss="soft_ce", lr=3e-3, batch_size=50, steps=40, eval_every=10,
                                            progress=False, seed=0), (mixing,))


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_per_member_hooks_train_each_member_as_it_would_alone(model):
    """ERM, mixup, early-stopped mixup and mixup at another seed in one engine call: every member's
    curve is the curve of its own run (the MLP's stacked products, the CNN's vmap), and each
    member's knobs name its own hook."""
    recipe = _mixing_recipe(model)
    members = [{"mixup_alpha": 0.0}, {}, {"mixup_stop_after": 20}, {"seed": 1}]
    together = recipe.sweep(members)
    assert len(together.knobs) == 4
    for m, member in enumerate(members):
        alone = recipe.sweep([member])
        for split in ("test", "train"):
            np.testing.assert_allclose(together.curve(split, "loss", m)[1], alone.curve(split, "loss")[1],
                                       rtol=2e-4, atol=1e-6)
        assert together.knobs[m]["mixup_alpha"] == alone.knobs[0]["mixup_alpha"]
        assert together.knobs[m]["mixup_stop_after"] == alone.knobs[0]["mixup_stop_after"]
        assert together.knobs[m]["seed"] == alone.knobs[0]["seed"]


def test_per_member_hooks_stack_inputs_and_make_every_target_soft_when_one_is():
    batch = _batch((6, 5), classes=4)
    batch.y = batch.y.expand(3, -1)
    hook = augment.per_member([None, augment.mixup(1.0, 4, seed=0), augment.mixup(1.0, 4, seed=0, stop_after=0)])
    out = hook(batch)
    assert out.per_member and out.x.shape == (3, 6, 5) and out.y.shape == (3, 6, 4)
    assert torch.equal(out.x[0], batch.x) and torch.equal(out.x[2], batch.x)
    torch.testing.assert_close(out.y[0], torch.nn.functional.one_hot(batch.y[0], 4).to(out.y.dtype))
    alone = augment.mixup(1.0, 4, seed=0)(_batch((6, 5), classes=4))
    torch.testing.assert_close(out.x[1], alone.x)
    # no member changes its batch: the batch comes back as it was
    plain = augment.per_member([None, augment.mixup(0.0, 4)])
    two = _batch((6, 5), classes=4)
    two.y = two.y.expand(2, -1)
    assert plain(two) is two
    with pytest.raises(ValueError, match="2 hooks for a batch of 3"):
        augment.per_member([None, None])(batch)


def test_occlusion_maps_equal_one_map_per_score():
    """occlusion_maps reads every score from one pass over the occluded images: each map equals
    occlusion_map's for that score exactly (same inputs, same forwards)."""
    torch.manual_seed(0)
    model = models.CNN2d(1, 10, channels=4, image_size=8)
    x, y = torch.rand(5, 1, 8, 8), torch.tensor([1, 4, 7, 0, 9])
    both = augment.occlusion_maps(model, x, y, size=2, fill=0.5, scores=("margin", "prob"))
    for score in ("margin", "prob"):
        assert torch.equal(both[score], augment.occlusion_map(model, x, y, size=2, fill=0.5, score=score))
    with pytest.raises(ValueError):
        augment.occlusion_maps(model, x, y, scores=("prob", "logit"))


# ----------------------------------------------------------------- the CutMix paper's comparison (recipes)


def test_cutmix_comparison_makes_each_method_hook_as_augment_does():
    from tdlab.core import recipes
    derive = recipes.cutmix_comparison(4, 2, seed=5, cutmix_prob=0.5, cutmix_beta=2.0, mixup_alpha=8.0)
    assert getattr(derive, "per_member", False)
    defaults = {k: p.default for k, p in inspect.signature(derive).parameters.items()}
    assert defaults == {"method": "CutMix", "cutmix_prob": 0.5, "cutmix_beta": 2.0, "mixup_alpha": 8.0}
    expected = {"CutMix": augment.cutmix(2.0, 4, prob=0.5, seed=5), "mixup": augment.mixup(8.0, 4, seed=5),
                "Cutout": augment.cutout(2, seed=5)}
    for method, hook in expected.items():
        made = derive(method=method)["batch_hook"]
        for step in (1, 2, 3):                           # the same stream of draws, step after step
            ours, theirs = made(_batch((6, 1, 8, 8), step=step)), hook(_batch((6, 1, 8, 8), step=step))
            assert torch.equal(ours.x, theirs.x) and torch.equal(ours.y, theirs.y)
        assert made.settings == hook.settings
    baseline = derive(cutmix_prob=0.0)["batch_hook"]      # probability 0: the batch as it came
    batch = _batch((6, 1, 8, 8))
    assert baseline(batch).x is batch.x
    cropped = recipes.cutmix_comparison(4, 2, seed=5, crop=True)(method="Cutout")["batch_hook"]
    want = augment.compose(augment.crop_flip(padding=4, seed=5), augment.cutout(2, seed=5))
    assert torch.equal(cropped(_batch((6, 1, 8, 8))).x, want(_batch((6, 1, 8, 8))).x)
    assert cropped.settings["crop_padding"] == 4
    with pytest.raises(ValueError, match="method"):
        derive(method="AugMix")


def test_cutmix_cifar100_is_the_official_cifar_optimizer():
    from tdlab.core import recipes
    recipe = recipes.cutmix_cifar100(lambda: torch.nn.Linear(2, 2), epochs=300)
    epoch = 50_000 // 64
    assert recipe.settings == dict(optimizer="sgd", lr=0.25, momentum=0.9, nesterov=True, weight_decay=1e-4,
                                   batch_size=64, steps=300 * epoch, eval_every=epoch, schedule_name="step")
    assert recipe.steps == 300 * 781 and recipes.cutmix_cifar100(lambda: None, epochs=600).steps == 600 * 781
