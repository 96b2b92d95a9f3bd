"""Local complexity and PGD (tdlab.methods.grokking.local_complexity) against brute force on tiny networks, naive
single-model loops, the geometry of a hyperplane and a cross-polytope, and inside a stacked run."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdlab.core import data, models, sweep
from tdlab.methods.grokking import local_complexity as lc


def tiny_mlps(count=3, in_features=4, width=5, depth=2, activation="relu", seed=0):
    torch.manual_seed(seed)
    return [models.MLP(in_features, 3, width=width, depth=depth, activation=activation) for _ in range(count)]


def hooked_pre_activations(model, x):
    """Every nn.Linear output of one plain module, through forward hooks (the official code's way)."""
    seen = []
    handles = [m.register_forward_hook(lambda mod, inp, out: seen.append(out.detach()))
               for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_pre_activations_match_hooks_and_forward_for_every_member():
    nets = tiny_mlps(activation="gelu")
    params = lc.stack_parameters(nets)
    x = torch.randn(7, 4)
    stacked = lc.pre_activations(nets[0], params, x)
    assert [tuple(h.shape) for h in stacked] == [(3, 7, 5), (3, 7, 5), (3, 7, 3)]
    for member, net in enumerate(nets):
        for mine, hooked in zip(stacked, hooked_pre_activations(net, x)):
            torch.testing.assert_close(mine[member], hooked, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stacked[-1][member], net(x).detach(), rtol=1e-5, atol=1e-6)
    # one batch per member gives the same numbers as the shared batch
    per_member = lc.pre_activations(nets[0], params, x.expand(3, -1, -1), per_member=True)
    torch.testing.assert_close(per_member[-1], stacked[-1])
    with pytest.raises(ValueError, match="per-member"):
        lc.pre_activations(nets[0], params, torch.randn(2, 7, 4), per_member=True)


def test_frame_directions_are_orthonormal_and_seeded():
    u = lc.frame_directions(10, 4, seed=3)
    torch.testing.assert_close(u @ u.t(), torch.eye(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(u, lc.frame_directions(10, 4, seed=3))
    assert not torch.allclose(u, lc.frame_directions(10, 4, seed=4))
    with pytest.raises(ValueError):
        lc.frame_directions(3, 4)


def test_cross_polytope_vertices_sit_at_radius_r_in_opposite_pairs():
    x = torch.randn(5, 1, 2, 3)                                 # images: flattened to d = 6
    u = lc.frame_directions(6, 3, seed=0)
    v = lc.cross_polytope(x, 0.25, u)
    assert v.shape == (5, 6, 6)
    centre = x.reshape(5, 1, 6)
    torch.testing.assert_close((v - centre).norm(dim=-1), torch.full((5, 6), 0.25), atol=1e-6, rtol=0)
    torch.testing.assert_close(v[:, :3] + v[:, 3:], 2 * centre.expand(-1, 3, -1), atol=1e-6, rtol=0)
    torch.testing.assert_close(v[2, 1] - x[2].flatten(), 0.25 * u[1], atol=1e-6, rtol=0)


def brute_force_lc(net, anchor, radius, directions, include_output=True):
    """For one plain module and one anchor: each vertex x ± r·u_j built by hand and pushed through the
    module on its own; a neuron counts when its pre-activation's sign differs between two vertices."""
    signs_per_vertex = []
    for u in directions:
        for sign in (+1, -1):
            vertex = anchor.flatten() + sign * radius * u / u.norm()
            layers = hooked_pre_activations(net, vertex.unsqueeze(0))
            signs_per_vertex.append([np.sign(h[0].numpy()) for h in layers])
    layers = len(signs_per_vertex[0]) - (0 if include_output else 1)
    counts = []
    for layer in range(layers):
        width = len(signs_per_vertex[0][layer])
        counts.append(sum(any(a[layer][k] != b[layer][k] for a, b in itertools.combinations(signs_per_vertex, 2))
                          for k in range(width)))
    return counts


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_local_complexity_matches_brute_force_sign_counting(activation):
    nets = tiny_mlps(count=2, in_features=3, width=6, depth=2, activation=activation, seed=1)
    params = lc.stack_parameters(nets)
    anchors = torch.randn(6, 3)
    directions = lc.frame_directions(3, 3, seed=2)
    for radius in (0.05, 0.5, 2.0):
        counts = lc.local_complexity(nets[0], params, anchors, radius, directions, chunk=4)
        hidden = lc.local_complexity(nets[0], params, anchors, radius, directions, include_output=False)
        assert counts.shape == (2, 6, 3) and hidden.shape == (2, 6, 2)
        for member, net in enumerate(nets):
            for n in range(6):
                expected = brute_force_lc(net, anchors[n], radius, directions)
                assert counts[member, n].tolist() == expected
                assert hidden[member, n].tolist() == expected[:-1]
    assert counts.sum() > 0


def test_first_layer_lc_is_the_hyperplanes_that_cut_the_cross_polytope():
    """For the first (affine) layer the count has a closed form: the values w·v + b over the vertices
    x ± r u_j are w·x + b ± r (w·u_j), so the sign changes iff |w·x + b| < r·max_j |w·u_j|."""
    nets = tiny_mlps(count=1, in_features=5, width=40, depth=1, seed=4)
    params = lc.stack_parameters(nets)
    anchors = torch.randn(30, 5)
    directions = lc.frame_directions(5, 4, seed=5)
    counts = lc.local_complexity(nets[0], params, anchors, 0.3, directions)[0, :, 0]
    w, b = nets[0].net[1].weight.detach(), nets[0].net[1].bias.detach()
    reach = 0.3 * (w @ directions.t()).abs().max(dim=1).values                 # (width,)
    expected = ((anchors @ w.t() + b).abs() < reach).sum(-1)
    assert counts.tolist() == expected.tolist()
    assert 0 < counts.sum() < 30 * 40                                        # the case is not trivial


def test_lc_grows_with_the_radius():
    nets = tiny_mlps(count=2, in_features=8, width=32, depth=2, seed=6)
    params = lc.stack_parameters(nets)
    anchors = torch.randn(20, 8)
    directions = lc.frame_directions(8, 6, seed=0)
    totals = [lc.local_complexity(nets[0], params, anchors, r, directions).sum().item() for r in (0.01, 0.1, 1.0, 10.0)]
    assert totals == sorted(totals) and totals[0] < totals[-1]


def naive_pgd(net, x, y, eps, step_size, steps, low, high):
    """The official attack's loop on one plain module, example by example in one batch."""
    original = x.clone()
    adv = x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(net(adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step_size * grad.sign()
        adv = torch.clamp(original + torch.clamp(adv - original, -eps, eps), low, high).detach()
    return adv


def test_pgd_matches_a_naive_loop_per_member_stays_in_the_ball_and_raises_the_loss():
    nets = tiny_mlps(count=3, in_features=6, width=16, depth=2, activation="gelu", seed=7)
    params = lc.stack_parameters(nets)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(25, 6, generator=gen)
    y = torch.randint(0, 3, (25,), generator=gen)
    eps, alpha = 0.1, 0.03
    adv = lc.pgd(nets[0], params, x, y, eps, alpha, steps=8, low=0.0, high=1.0)
    assert adv.shape == (3, 25, 6)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    for member, net in enumerate(nets):
        naive = naive_pgd(net, x, y, eps, alpha, 8, 0.0, 1.0)
        torch.testing.assert_close(adv[member], naive, atol=1e-5, rtol=0)
        with torch.no_grad():
            assert F.cross_entropy(net(adv[member]), y) > F.cross_entropy(net(x), y)
    robust = lc.robust_accuracy(nets[0], params, x, y, eps, alpha, 8, 0.0, 1.0)
    clean = lc.accuracy_on(nets[0], params, x, y)
    assert (robust <= clean + 1e-6).all()
    unchanged = lc.pgd(nets[0], params, x, y, 0.0, alpha, steps=3, low=0.0, high=1.0)
    torch.testing.assert_close(unchanged, x.expand(3, -1, -1))


def test_log_steps_are_log_spaced_on_the_evaluation_grid():
    steps = lc.log_steps(5000, 20, every=10)
    assert steps[0] == 0 and steps[-1] == 5000
    assert all(s % 10 == 0 for s in steps) and steps == sorted(set(steps))
    ratios = np.diff(np.log10(np.asarray(steps[2:], float)))
    assert ratios.max() < 4 * ratios.min()                  # roughly even on a log axis once off the grid floor


def test_random_anchors_are_uniform_in_the_data_range():
    x = torch.rand(100, 1, 4, 4) * 0.5 + 0.25
    points = lc.random_anchors(x, 200, seed=1)
    assert points.shape == (200, 1, 4, 4)
    assert points.min() >= x.min() and points.max() <= x.max()
    torch.testing.assert_close(points, lc.random_anchors(x, 200, seed=1))
    assert abs(points.mean().item() - (x.min() + x.max()).item() / 2) < 0.02


def test_monitors_in_a_stacked_run_equal_the_functions_on_the_trained_models():
    dataset = data.load("teacher", num_train=64, num_test=32, dim=6)
    labels = (dataset.y_train > 0).long(), (dataset.y_test > 0).long()
    dataset = dataset.replace(y_train=labels[0], y_test=labels[1], num_classes=2)
    template = models.MLP(6, 2, width=12, depth=2, activation="gelu")
    anchors = {"train": dataset.x_train[:10], "test": dataset.x_test[:10]}
    measured_at = [0, 20, 40]
    history = sweep.sweep(lambda: models.MLP(6, 2, width=12, depth=2, activation="gelu"), dataset,
                          [{"seed": 0, "lr": 1e-2}, {"seed": 1, "lr": 3e-2}], optimizer="adam", steps=40,
                          batch_size=16, eval_every=10,
                          monitors=[lc.lc_monitor(template, anchors, radius=0.2, vertices=6, seed=3,
                                                  steps=measured_at, per_layer=True),
                                    lc.robust_monitor(template, dataset.x_test, dataset.y_test, 0.1, 0.02, 5,
                                                      steps=measured_at)])
    assert sorted(history.curve("lc_train", "lc", 0)[0].tolist()) == measured_at
    assert history.curve("test", "acc", 0)[0].tolist() == [0, 10, 20, 30, 40]
    params = lc.stack_parameters(history.models)
    directions = lc.frame_directions(6, 3, seed=3)
    for name, points in anchors.items():
        counts = lc.local_complexity(template, params, points, 0.2, directions).float()
        for member in range(2):
            assert history.final(f"lc_{name}", "lc", member) == pytest.approx(counts[member].sum(-1).mean().item())
            assert history.final(f"lc_{name}", "lc1", member) == pytest.approx(counts[member, :, 1].mean().item())
    robust = lc.robust_accuracy(template, params, dataset.x_test, dataset.y_test, 0.1, 0.02, 5)
    for member in range(2):
        assert history.final("test_pgd", "acc", member) == pytest.approx(robust[member].item())


def test_lc_monitor_refuses_an_odd_frame_and_a_non_mlp():
    with pytest.raises(ValueError, match="even number"):
        lc.lc_monitor(models.MLP(4, 2), {"train": torch.zeros(2, 4)}, 0.1, vertices=5)
    with pytest.raises(ValueError, match="MLP-shaped"):
        lc.pre_activations(models.CNN1d(8, 2), {"w": torch.zeros(1, 2)}, torch.zeros(2, 8))


def test_scaled_init_recipe_makes_the_init_scale_a_knob():
    """recipes.scaled_init: members at init scales 1 and 8 start from the same draw times α (lr ≈ 0
    leaves the initial parameters in place), and the History records the scale."""
    from tdlab.core import recipes

    dataset = data.load("teacher", num_train=32, num_test=16, dim=5)
    dataset = dataset.replace(y_train=(dataset.y_train > 0).long(), y_test=(dataset.y_test > 0).long(), num_classes=2)
    recipe = recipes.scaled_init(dataset, lambda: models.MLP(5, 2, width=8, depth=2), init_scale=2.0,
                                 optimizer="sgd", momentum=0.0, lr=1e-12, steps=1, batch_size=8, eval_every=1, seed=3)
    history = recipe.sweep([{"init_scale": 1.0}, {"init_scale": 8.0}, {}])
    assert [k["init_scale"] for k in history.knobs] == [1.0, 8.0, 2.0]
    torch.manual_seed(3)
    reference = models.MLP(5, 2, width=8, depth=2)
    for member, scale in enumerate((1.0, 8.0, 2.0)):
        for (name, p), (_, q) in zip(history.models[member].named_parameters(), reference.named_parameters()):
            torch.testing.assert_close(p.detach(), scale * q.detach(), rtol=1e-5, atol=1e-6)


def test_lc_phases_reads_a_double_descent_and_its_absence():
    steps = [0, 10, 20, 40, 80, 160, 320, 640, 1280]
    double = [20, 14, 11, 12, 14, 15, 13, 10, 8]                 # descent, ascent, late descent
    out = lc.lc_phases(steps, double, fitted_step=160)
    assert (out["first_min"], out["first_min_step"], out["peak"], out["peak_step"]) == (11, 20, 15, 160)
    assert (out["descent"], out["ascent"], out["late_descent"]) == (9, 4, 7)
    rising = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    out = lc.lc_phases(steps, rising, fitted_step=160)
    assert out["descent"] == 0 and out["late_descent"] == 0 and out["ascent"] == 8
    falling = [9, 8, 7, 6, 5, 4, 3, 2, 1]
    out = lc.lc_phases(steps, falling, fitted_step=80)
    assert out["ascent"] == 0 and out["late_descent"] == 4 and out["descent"] == 4
    with pytest.raises(ValueError):
        lc.lc_phases([0, 1], [1, 2], 1)


def test_halfway_step_finds_the_middle_of_a_late_change():
    steps = [0, 10, 100, 200, 400, 800, 1600]
    robust = [0.1, 0.3, 0.3, 0.35, 0.5, 0.7, 0.75]              # from 0.3 at step 100 to 0.75: middle 0.525
    assert lc.halfway_step(steps, robust, after=100) == 800
    lc_curve = [20, 20, 20, 19, 15, 11, 10]                      # from 20 to 10: middle 15
    assert lc.halfway_step(steps, lc_curve, after=50) == 400
    assert np.isnan(lc.halfway_step(steps, [1] * 7, after=0))


def test_lc_phases_of_a_run_that_never_fits_are_nan():
    out = lc.lc_phases([0, 10, 20, 40], [5, 4, 6, 3], fitted_step=float("nan"))
    assert all(np.isnan(v) for v in out.values())


def test_tail_moves_are_the_largest_later_fall_and_rise_of_the_last_points():
    curve = [30, 20, 10, 12, 11, 13, 9, 10]
    assert lc.tail_moves(curve, 4) == {"fall": 4.0, "rise": 2.0}      # last 4: 11, 13, 9, 10
    assert lc.tail_moves([1, 1, 1], 3) == {"fall": 0.0, "rise": 0.0}


def test_change_after_reads_the_move_from_a_step_to_the_end():
    steps, values = [0, 10, 100, 1000], [5.0, 7.0, 4.0, 1.0]
    assert lc.change_after(steps, values, 10) == -6.0
    assert lc.change_after(steps, values, 50) == -3.0                # the first measurement at or after 50
    assert np.isnan(lc.change_after(steps, values, float("nan")))
    assert np.isnan(lc.change_after(steps, values, 2000))



def test_largest_fall_is_the_deepest_later_drop_before_a_step_and_its_share():
    # LC rises 22 → 23, falls to 21.5, rises again; after step 40 a deeper fall that must not count
    steps, values = [0, 10, 20, 40, 80, 160], [22.0, 23.0, 22.0, 21.5, 24.0, 10.0]
    out = lc.largest_fall(steps, values, 80)
    assert out["fall"] == pytest.approx(1.5) and out["share"] == pytest.approx(1.5 / 23.0)   # from 23, not from 22
    assert lc.largest_fall(steps, values, 160)["share"] == pytest.approx(14.0 / 24.0)
    rising = lc.largest_fall([0, 1, 2], [1.0, 2.0, 3.0], 2)
    assert rising == {"fall": 0.0, "share": 0.0}
    assert np.isnan(lc.largest_fall(steps, values, float("nan"))["share"])
    # the same curve ×2 (LC at another radius): the same share, twice the fall
    doubled = lc.largest_fall(steps, [2 * v for v in values], 80)
    assert doubled["share"] == pytest.approx(out["share"]) and doubled["fall"] == pytest.approx(2 * out["fall"])



def test_window_change_averages_both_ends():
    steps = list(range(0, 100, 10))                                   # 10 measurements
    values = [0.0, 0.1, 0.2, 0.2, 0.3, 0.5, 0.6, 0.6, 0.7, 0.8]
    assert lc.window_change(steps, values, 25, points=2) == pytest.approx(0.75 - 0.25)   # from step 30 on
    assert lc.window_change(steps, values, 0, points=1) == pytest.approx(lc.change_after(steps, values, 0))
    assert np.isnan(lc.window_change(steps, values, 85, points=2))  # one measurement left
    assert np.isnan(lc.window_change(steps, values, float("nan")))


def test_log_ratio_change_is_zero_under_proportional_thinning_and_reads_a_migration():
    steps = [0, 10, 100, 1000]
    far = np.array([20.0, 18.0, 10.0, 5.0])
    assert lc.log_ratio_change(steps, 2 * far, far, 10) == pytest.approx(0.0)            # the same share everywhere
    near = np.array([40.0, 36.0, 20.0, 5.0])                                            # near falls 4× more by the end
    assert lc.log_ratio_change(steps, near, far, 10) == pytest.approx(np.log(5 / 5) - np.log(36 / 18))
    assert lc.log_ratio_change(steps, near, far, 50) == pytest.approx(np.log(1.0) - np.log(2.0))  # from step 100
    assert np.isnan(lc.log_ratio_change(steps, near, far, float("nan")))
    assert np.isnan(lc.log_ratio_change(steps, near, far, 2000))
    assert np.isnan(lc.log_ratio_change(steps, near, np.array([20.0, 0.0, 10.0, 5.0]), 10))
    with pytest.raises(ValueError):
        lc.log_ratio_change(steps, near[:3], far, 10)


def test_anchor_sets_and_monitors_bundle_the_three_kinds_and_both_measurements():
    x_train, x_test = torch.rand(20, 1, 2, 2), torch.rand(15, 1, 2, 2)
    anchors = lc.anchor_sets(x_train, x_test, 5, seed=1)
    assert list(anchors) == ["train", "test", "random"] and all(a.shape == (5, 1, 2, 2) for a in anchors.values())
    torch.testing.assert_close(anchors["train"], x_train[:5])
    torch.testing.assert_close(anchors["random"], lc.random_anchors(x_train, 5, seed=1))
    assert len(lc.monitors(models.MLP(4, 2, width=4, depth=1), anchors, 0.1, 4, 0, [0, 10], x_test, torch.zeros(15),
                           0.05)) == 2


def test_boundary_points_sit_where_the_predicted_class_changes():
    nets = tiny_mlps(count=3, activation="gelu", seed=3)
    params = lc.stack_parameters(nets)
    torch.manual_seed(1)
    a, b = 3 * torch.randn(40, 4), 3 * torch.randn(40, 4)
    points, valid = lc.boundary_points(nets[0], params, a, b, iterations=30)
    assert points.shape == (3, 40, 4) and valid.shape == (3, 40)
    assert valid.any() and not valid.all()          # some pairs are predicted alike by some member
    for member, net in enumerate(nets):
        with torch.no_grad():
            ends_differ = net(a).argmax(-1) != net(b).argmax(-1)
        assert torch.equal(valid[member], ends_differ)
        step = 1e-3 * (b - a)
        with torch.no_grad():
            before = net(points[member] - step).argmax(-1)
            after = net(points[member] + step).argmax(-1)
            home = net(a).argmax(-1)
        keep = valid[member]
        assert torch.all(before[keep] == home[keep])          # on a's side just before the point
        assert torch.all(after[keep] != home[keep])           # another class just after it
        # on the segment from a to b
        t = ((points[member] - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1)
        torch.testing.assert_close(points[member], a + t.unsqueeze(-1) * (b - a), rtol=1e-4, atol=1e-4)


def test_local_complexity_per_member_matches_shared_anchors_and_each_member_alone():
    nets = tiny_mlps(count=3, activation="relu", seed=5)
    params = lc.stack_parameters(nets)
    directions = lc.frame_directions(4, 3, seed=2)
    anchors = torch.randn(6, 4)
    shared = lc.local_complexity(nets[0], params, anchors, 0.7, directions)
    per = lc.local_complexity_per_member(nets[0], params, anchors.expand(3, -1, -1), 0.7, directions)
    assert torch.equal(shared, per)
    own = torch.randn(3, 6, 4)                                   # a different set per member
    per = lc.local_complexity_per_member(nets[0], params, own, 0.7, directions)
    for member in range(3):
        alone = lc.local_complexity(nets[0], {k: v[member:member + 1] for k, v in params.items()}, own[member], 0.7,
                                    directions)
        assert torch.equal(per[member], alone[0])


def test_boundary_monitor_averages_lc_over_the_pairs_each_member_splits():
    from types import SimpleNamespace
    nets = tiny_mlps(count=2, activation="gelu", seed=7)
    params = lc.stack_parameters(nets)
    torch.manual_seed(2)
    a, b = 3 * torch.randn(30, 4), 3 * torch.randn(30, 4)
    monitor = lc.boundary_monitor(nets[0], a, b, radius=0.5, vertices=6, seed=4, steps=[0, 10])
    ev = SimpleNamespace(step=10, stacked_parameters=lambda: params)
    value = monitor(ev)[("lc_boundary", "lc")]
    points, valid = lc.boundary_points(nets[0], params, a, b, 16)
    counts = lc.local_complexity_per_member(nets[0], params, points, 0.5, lc.frame_directions(4, 3, seed=4)).sum(-1)
    for member in range(2):
        torch.testing.assert_close(value[member], counts[member][valid[member]].float().mean())
    assert monitor(SimpleNamespace(step=5, stacked_parameters=lambda: params)) == {}
