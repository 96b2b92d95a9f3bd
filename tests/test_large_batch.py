"""Ghost batch norm against batch norm on each ghost batch; the large-batch helpers against their formulas."""
import numpy as np
import pytest
import torch
from torch import nn

from tdlab.core import data as datasets
from tdlab.methods.lr_and_batch import large_batch
from tdlab.core.models import GhostBatchNorm


def _pair(features, ghost, momentum=0.1):
    torch.manual_seed(0)
    gbn = GhostBatchNorm(features, ghost, momentum=momentum)
    with torch.no_grad():
        gbn.weight.copy_(torch.randn(features))
        gbn.bias.copy_(torch.randn(features))
    bn = nn.BatchNorm1d(features, momentum=momentum)
    bn.load_state_dict(gbn.state_dict())
    return gbn, bn


@pytest.mark.parametrize("batch, ghost, shape", [(64, 16, ()), (70, 16, ()), (48, 12, (5,))])
def test_ghost_batch_norm_is_batch_norm_on_each_ghost_batch(batch, ghost, shape):
    gbn, bn = _pair(6, ghost)
    x = (torch.randn(batch, 6, *shape) * 3 + 1).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    for _ in range(2):                                    # two steps: the running statistics carry over
        out = gbn(x)
        ref = torch.cat([bn(chunk) for chunk in torch.split(x_ref, ghost)])   # last chunk smaller when 70
        assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(gbn.running_mean, bn.running_mean, atol=1e-5)
    assert torch.allclose(gbn.running_var, bn.running_var, atol=1e-5)
    assert int(gbn.num_batches_tracked) == int(bn.num_batches_tracked)
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    (ref * weights).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)
    assert torch.allclose(gbn.weight.grad, bn.weight.grad, atol=1e-4)
    assert torch.allclose(gbn.bias.grad, bn.bias.grad, atol=1e-4)
    gbn.eval(), bn.eval()                                 # eval: the running statistics normalise
    probe = torch.randn(10, 6, *shape)
    assert torch.allclose(gbn(probe), bn(probe), atol=1e-5)


def test_ghost_batch_norm_without_ghosts_is_batch_norm():
    for ghost in (None, 64):                              # no ghost size, or a batch no larger than it
        gbn, bn = _pair(4, ghost)
        x = torch.randn(32, 4)
        assert torch.allclose(gbn(x), bn(x), atol=1e-6)
        assert torch.allclose(gbn.running_var, bn.running_var, atol=1e-6)


def test_ghost_batches_differ_from_the_whole_batch():
    gbn, bn = _pair(3, 8)
    x = torch.randn(32, 3) + torch.arange(32).unsqueeze(1) / 8     # the ghost batches have different means
    assert not torch.allclose(gbn(x), bn(x), atol=1e-2)


def test_sqrt_lr_and_regime_steps():
    assert large_batch.sqrt_lr(0.1, 512, 32) == pytest.approx(0.4)
    assert large_batch.sqrt_lr(0.1, 32, 32) == pytest.approx(0.1)
    assert large_batch.regime_steps(10, 4000, 32, 32, False) == 1250
    assert large_batch.regime_steps(10, 4000, 512, 32, False) == 70          # ⌊4000/512⌋ = 7 per epoch
    assert large_batch.regime_steps(10, 4000, 512, 32, True) == 1250         # the small batch's updates
    marks = large_batch.step_schedule((0.5, 0.75))(100)
    assert [marks(s) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_log_fit_recovers_a_known_curve():
    t = np.arange(1, 200, 7)
    fit = large_batch.log_fit(t, 2.0 + 3.0 * np.log(t))
    assert fit.intercept == pytest.approx(2.0) and fit.slope == pytest.approx(3.0) and fit.r2 == pytest.approx(1.0)
    assert fit(np.e) == pytest.approx(5.0)
    power = large_batch.log_fit(t, np.sqrt(t))                               # √t is not a log: a worse fit
    assert power.r2 < 0.97
    x = np.array([0.0, 1, 2, 3])
    line = large_batch.linear_fit(x, np.array([1.0, 2, 2, 4]))
    slope, intercept = np.polyfit(x, [1.0, 2, 2, 4], 1)
    assert line.slope == pytest.approx(slope) and line.intercept == pytest.approx(intercept)


def test_power_fit_finds_the_exponent():
    t = np.arange(5, 600, 5, dtype=float)
    assert large_batch.power_fit(t, 1.0 + 2.0 * np.log(t)).beta == pytest.approx(0.0, abs=1e-9)
    root = large_batch.power_fit(t, 3.0 + 0.5 * np.sqrt(t))
    assert root.beta == pytest.approx(0.5, abs=1e-9) and root.r2 == pytest.approx(1.0)
    assert root(t) == pytest.approx(3.0 + 0.5 * np.sqrt(t))
    assert large_batch.power_fit(t, 0.1 * t).beta == pytest.approx(1.0, abs=1e-9)
    assert large_batch.box_cox(np.array([np.e]), 0.0) == pytest.approx([1.0])


def test_uncorrelated_distance():
    assert large_batch.uncorrelated_distance([0.0, 2.0, 2.0, 2.0, 2.0]) == pytest.approx([0, 2, 8 ** 0.5, 12 ** 0.5, 4])


def test_recipe_knobs_and_weight_distance():
    torch.manual_seed(0)
    x = torch.randn(96, 5)
    ds = datasets.Dataset(name="toy", x_train=x, y_train=(x[:, 0] > 0).long(), x_test=x[:16],
                          y_test=(x[:16, 0] > 0).long(), num_classes=2)
    recipe = large_batch.recipe(ds, 96, lambda g: large_batch.BatchNormMLP(5, 2, 8, 2, g), base_batch=8,
                                optimizer="sgd", lr=0.05, monitors=[large_batch.weight_distance(["net.1.weight"])],
                                evaluations=4)
    h = recipe(batch_size=32, ghost_batch=8, sqrt_scaling=True, regime_adaptation=True, epochs=1)
    assert h.knobs[0]["steps"] == 12 and h.knobs[0]["step_lr"] == pytest.approx(0.1)
    model = h.models[0]
    assert all(m.ghost_batch_size == 8 for m in model.modules() if isinstance(m, GhostBatchNorm))
    steps, distance = h.curve("train", "weight_distance")
    assert distance[0] == 0 and distance[-1] > 0
    _, step = h.curve("train", "weight_step")                                   # distance from the last evaluation
    assert step[0] == 0 and step[1] == pytest.approx(distance[1])
    assert distance[-1] <= step.sum() + 1e-6 and np.all(step[1:] > 0)           # the triangle inequality
    torch.manual_seed(0)
    start = large_batch.BatchNormMLP(5, 2, 8, 2, 8).net[1].weight.detach()      # the same initialisation (seed 0)
    assert distance[-1] == pytest.approx(float((model.net[1].weight.detach() - start).norm()), rel=1e-5)
    plain = recipe(batch_size=32, epochs=1)
    assert plain.knobs[0]["steps"] == 3 and plain.knobs[0]["step_lr"] == pytest.approx(0.05)
    assert all(m.ghost_batch_size is None for m in plain.models[0].modules() if isinstance(m, GhostBatchNorm))


def test_at_equal_loss_interpolates_the_first_crossing():
    steps, loss, acc = [0, 10, 20, 30], [2.0, 1.0, 0.5, 0.6], [0.1, 0.5, 0.7, 0.9]
    a, s = large_batch.at_equal_loss(steps, loss, acc, 0.75)         # halfway between the 2nd and 3rd evaluation
    assert a == pytest.approx(0.6) and s == pytest.approx(15.0)
    assert large_batch.at_equal_loss(steps, loss, acc, 0.6)[0] == pytest.approx(0.5 + 0.8 * 0.2)   # first crossing
    assert large_batch.at_equal_loss(steps, loss, acc, 3.0) == (0.1, 0.0)
    assert all(np.isnan(large_batch.at_equal_loss(steps, loss, acc, 0.1)))                 # never reached


def test_equal_loss_gap_compares_at_the_level_both_reach():
    small = ([0, 10, 20], [2.0, 1.0, 0.4], [0.1, 0.6, 0.8])
    large = ([0, 5], [2.0, 1.0], [0.1, 0.5])                          # stops at loss 1.0: the small batch had 0.6 there
    assert large_batch.equal_loss_accuracies(small, large) == pytest.approx((0.6, 0.5))
    assert large_batch.equal_loss_gap(small, large) == pytest.approx(0.1)
    assert large_batch.equal_loss_gap(large, small) == pytest.approx(-0.1)   # the level is the higher final loss
    assert large_batch.equal_loss_gap(small, small) == pytest.approx(0.0)


def test_window_and_stages():
    t, v = large_batch.window([0, 10, 20, 50, 60, 100], [0, 1, 2, 3, 4, 5], 100, 0.1, 0.5)
    assert list(t) == [10, 20, 50] and list(v) == [1, 2, 3]
    stages = large_batch.stages(32, 256, 5, 40)
    assert stages["small batch, long run"] == {"batch_size": 32, "epochs": 40}
    rows = large_batch.stage_table(4000, 0.03, stages, 32)
    assert rows["small batch"]["updates"] == 625 and rows["large batch"]["updates"] == 75
    assert rows["large batch, long run"]["updates"] == 600 and rows["large batch, long run"]["epochs"] == "40"
    assert rows["plain BN, long run"]["ghost batch"] == "—" and rows["large batch, long run"]["ghost batch"] == 32
    assert rows["+ regime adaptation"]["updates"] == 5000 and rows["+ regime adaptation"]["epochs"] == "320"
    assert rows["small batch, long run"]["updates"] == 5000
    assert float(rows["+ √ lr"]["learning rate"]) == pytest.approx(0.03 * 8 ** 0.5, rel=1e-5)


def test_distance_fits_on_a_log_curve():
    from tdlab.core.history import History

    h = History(knobs=[{"steps": 1000}])
    for t in range(0, 1001, 10):
        h.log(t, "train", "weight_distance", 1.0 + 2.0 * np.log(t) if t else 0.0)
        h.log(t, "train", "weight_step", 0.5 if t else 0.0)
    f = large_batch.distance_fits(h, 0, 0.02, 0.5)
    assert f.t[0] == 20 and f.t[-1] == 500
    assert f.power.beta == pytest.approx(0.0, abs=1e-9) and f.log.r2 == pytest.approx(1.0) and f.root.r2 < f.log.r2
    assert f.control.beta == pytest.approx(0.5, abs=0.01)          # equal uncorrelated steps: √t
