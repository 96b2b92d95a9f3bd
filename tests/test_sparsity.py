"""tdlab.methods.sparse_training.sparsity: the cubic schedule, magnitude pruning, GraNet's neuroregeneration and the
step hook in the engine, against naive formulas and brute force on small cases."""
import itertools
import math

import pytest
import torch

from tdlab.core import data, engine, models
from tdlab.methods.sparse_training import sparsity


def tiny_data(n=96, features=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return data.Dataset("tiny", x[:64], y[:64], x[64:], y[64:], num_classes=classes)


def mlp():
    return models.MLP(6, 3, width=16, depth=2)


# ----------------------------------------------------------------- schedule


def test_cubic_schedule_matches_zhu_gupta_formula():
    s0, sf, i0, i_f = 0.2, 0.95, 3, 13
    for i in range(0, 20):
        if i < i0:
            expected = s0
        elif i >= i_f:
            expected = sf
        else:
            expected = sf + (s0 - sf) * (1 - (i - i0) / (i_f - i0)) ** 3
        assert sparsity.cubic_sparsity(i, sf, i0, i_f, s0) == pytest.approx(expected, abs=1e-12)
    # GraNet's own form with densities
    d_init, d_final = 1 - s0, 1 - sf
    for i in range(i0, i_f):
        decay = (1 - (i - i0) / (i_f - i0)) ** 3
        assert sparsity.cubic_sparsity(i, sf, i0, i_f, s0) == pytest.approx((1 - d_init) + (d_init - d_final) * (1 - decay))
    assert sparsity.cubic_sparsity(i_f, sf, i0, i_f, s0) == sf


def test_regrowth_fraction_is_the_official_cosine_decay():
    steps = 40
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, steps, 0.005)
    for t in range(1, steps + 1):
        sgd.step()
        cosine.step()
        assert sparsity.regrowth_fraction(t, steps, 0.5) == pytest.approx(sgd.param_groups[0]["lr"], abs=1e-9)


# ----------------------------------------------------------------- pruning and regrowth


def test_magnitude_prune_global_and_layer_against_sorting():
    torch.manual_seed(0)
    w = torch.randn(2, 30)
    parts = [slice(0, 10), slice(12, 30)]                 # 10..12 is a bias: never pruned
    mask = torch.ones(2, 30)
    new = sparsity.magnitude_prune(w, mask, parts, 0.75, "global")
    for m in range(2):
        prunable = torch.cat([w[m, p] for p in parts]).abs()
        keep = sparsity.kept_count(0.75, 28)
        threshold = prunable.sort(descending=True).values[keep - 1]
        kept = torch.cat([new[m, p] for p in parts])
        assert int(kept.sum()) == keep
        assert torch.equal(kept.bool(), prunable >= threshold)
        assert torch.all(new[m, 10:12] == 1)
    layer = sparsity.magnitude_prune(w, mask, parts, 0.5, "layer")
    for m, p in itertools.product(range(2), parts):
        size = p.stop - p.start
        assert int(layer[m, p].sum()) == sparsity.kept_count(0.5, size)
        top = w[m, p].abs().topk(sparsity.kept_count(0.5, size)).indices
        assert torch.all(layer[m, p][top] == 1)


def test_pruning_never_revives_an_inactive_weight():
    torch.manual_seed(1)
    w = torch.randn(1, 20)
    mask = (torch.rand(1, 20) > 0.5).float()
    w_big_but_dead = w.clone()
    w_big_but_dead[mask == 0] = 100.0                    # an inactive weight with a large value stays out
    new = sparsity.magnitude_prune(w_big_but_dead, mask, [slice(0, 20)], 0.7)
    assert torch.all(new[mask == 0] == 0)


def test_regrowth_picks_the_largest_gradient_pruned_connections_brute_force():
    torch.manual_seed(2)
    w = torch.randn(1, 12)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]], dtype=torch.float)
    w = w * mask
    grad = torch.randn(1, 12)
    fraction = 0.34                                       # ⌈0.34 · 6⌉ = 3 removed, 3 regrown
    new, grown = sparsity.regenerate(w, grad, mask, [slice(0, 12)], fraction)
    remove = math.ceil(fraction * 6)
    # brute force: the smallest |w| among the active die; then, over every choice of `remove`
    # inactive positions, the regrown set has the largest total |g|
    active = [i for i in range(12) if mask[0, i]]
    dead = sorted(active, key=lambda i: abs(float(w[0, i])))[:remove]
    survivors = set(active) - set(dead)
    candidates = [i for i in range(12) if i not in survivors]
    best = max(itertools.combinations(candidates, remove), key=lambda c: sum(abs(float(grad[0, i])) for i in c))
    assert set(torch.nonzero(new[0]).flatten().tolist()) == survivors | set(best)
    assert int(new.sum()) == int(mask.sum())             # the same number of connections
    assert set(torch.nonzero(grown[0]).flatten().tolist()) == set(best) - set(active)


# ----------------------------------------------------------------- the hook in the engine


def run_with(hook, steps=40, members=None, optimizer="sgd", lr=0.1):
    members = members or [{"seed": 0}]
    return engine.run(mlp, tiny_data(), members, optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=1e-3,
                      batch_size=16, steps=steps, eval_every=10, step_hook=hook, progress=False)


class Recorder:
    """Wraps a Pruner and checks, after every step, what the issue asks for."""

    def __init__(self, pruner):
        self.pruner, self.rows = pruner, []
        self.settings = pruner.settings
        self.member_settings = pruner.member_settings

    def __call__(self, state):
        before = None if self.pruner.mask is None else self.pruner.mask.clone()
        self.pruner(state)
        flat, mask = state.flat, self.pruner.mask
        # masked weights are zero after the optimizer step, and so is their momentum
        assert torch.all(flat[mask == 0] == 0)
        assert torch.all(state.optimizer.momentum_buffer[mask == 0] == 0)
        self.rows.append((state.step, before, mask.clone(), flat.clone()))


def test_gmp_reaches_each_scheduled_sparsity_exactly():
    steps, every, end = 60, 5, 40
    pruner = sparsity.Pruner("gmp", final_sparsity=0.9, prune_start=0, prune_end=end, update_every=every)
    recorder = Recorder(pruner)
    run_with(recorder, steps=steps)
    total = sum(p.stop - p.start for p in pruner.parts)
    assert total == 6 * 16 + 16 * 16 + 16 * 3
    for step, _, mask, _ in recorder.rows:
        kept = sum(int(mask[0, p].sum()) for p in pruner.parts)
        if step % every == 0:
            target = sparsity.cubic_sparsity(step // every, 0.9, 0, end // every)
            assert kept == sparsity.kept_count(target, total)
    assert pruner.sparsity()[0] == pytest.approx(1 - sparsity.kept_count(0.9, total) / total)
    assert abs(pruner.sparsity()[0] - 0.9) < 1 / total


def test_granet_keeps_the_sparsity_regrows_at_zero_and_stacks_like_separate_runs():
    steps, every = 50, 5
    pruner = sparsity.Pruner(["granet", "gmp", "dense"], final_sparsity=[0.8, 0.8, 0.0], prune_start=0,
                             prune_end=20, update_every=every, regrowth=0.5)
    recorder = Recorder(pruner)
    stacked = run_with(recorder, steps=steps, members=[{"seed": 3}] * 3)
    assert [k["method"] for k in stacked.knobs] == ["granet", "gmp", "dense"]
    assert pruner.sparsity()[2] == 0.0
    grew = 0
    for step, before, mask, flat in recorder.rows:
        if before is None or step % every:
            continue
        grown = (mask[0] > 0) & (before[0] == 0)
        grew += int(grown.sum())
        assert torch.all(flat[0][grown] == 0)           # regrown weights start at zero
        if step > 20:                                     # after the schedule, regrowth keeps the count
            assert int(mask[0].sum()) == int(before[0].sum())
    assert grew > 0
    total = sum(p.stop - p.start for p in pruner.parts)
    assert pruner.sparsity()[0] == pytest.approx(1 - sparsity.kept_count(0.8, total) / total)
    # member 0 of the stacked run equals a separate GraNet run
    alone = run_with(sparsity.Pruner("granet", final_sparsity=0.8, prune_start=0, prune_end=20, update_every=every,
                                     regrowth=0.5), steps=steps, members=[{"seed": 3}])
    for a, b in zip(stacked.models[0].parameters(), alone.models[0].parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_step_hook_sees_the_step_gradient_and_the_adam_state_is_masked():
    seen = []

    def hook(state):
        seen.append((state.step, state.grad.clone(), state.layout))

    run_with(hook, steps=3, optimizer="adamw", lr=1e-3)
    assert [s for s, _, _ in seen] == [1, 2, 3]
    layout = seen[0][2]
    assert list(layout) == [name for name, _ in mlp().named_parameters()]
    assert seen[0][1].shape == (1, sum(p.numel() for p in mlp().parameters()))
    pruner = sparsity.Pruner("gmp", final_sparsity=0.5, prune_start=0, prune_end=0, update_every=1)

    def check(state):
        pruner(state)
        assert torch.all(state.optimizer.exp_avg[pruner.mask == 0] == 0)
        assert torch.all(state.flat[pruner.mask == 0] == 0)

    run_with(check, steps=4, optimizer="adamw", lr=1e-3)


def test_plasticity_reads_the_recovery():
    pruner = sparsity.Pruner(["dense", "gmp"], final_sparsity=[0.0, 0.9], prune_start=[0, 20], prune_end=[0, 20],
                             update_every=5)
    history = run_with(pruner, steps=40, members=[{"seed": 1}] * 2)
    out = sparsity.plasticity(history, member=1, control=0, at=20, after=10)
    assert out["before"] == history.at_step("test", "acc", 20, 0)
    assert out["pruned"] == history.at_step("test", "acc", 20, 1)
    assert out["recovery"] == pytest.approx(history.at_step("test", "acc", 30, 1) - out["pruned"])
    assert out["drop"] == pytest.approx(out["before"] - out["pruned"])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        sparsity.Pruner("rigl")
    with pytest.raises(ValueError):
        sparsity.Pruner("gmp", final_sparsity=1.0)
    with pytest.raises(ValueError):
        sparsity.Pruner(["gmp", "granet"], final_sparsity=[0.9, 0.9, 0.9])
    with pytest.raises(ValueError):
        engine.run(mlp, tiny_data(), [{"seed": 0}], optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
                   steps=2, step_hook=sparsity.Pruner("gmp"), progress=False)


def test_members_trained_one_at_a_time_each_get_their_own_pruner():
    pruner = sparsity.Pruner(["gmp", "granet"], final_sparsity=[0.5, 0.8], prune_start=0, prune_end=10,
                             update_every=5)
    history = engine.run(mlp, tiny_data(), [{"seed": 0}, {"seed": 0}], optimizer="sgd", lr=0.1, batch_size=16,
                         steps=20, eval_every=10, step_hook=pruner, batched=False, progress=False)
    assert [k["method"] for k in history.knobs] == ["gmp", "granet"]
    for member, target in enumerate((0.5, 0.8)):
        weights = [p for name, p in history.models[member].named_parameters() if name.endswith("weight")]
        zeros = sum(int((w == 0).sum()) for w in weights)
        total = sum(w.numel() for w in weights)
        pruned = total - sparsity.kept_count(target, total)
        # GMP's zeros are exactly the pruned weights; GraNet may also hold regrown weights still at zero
        assert zeros == pruned if member == 0 else zeros >= pruned
