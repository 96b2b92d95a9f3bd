"""tdlab.methods.lr_and_batch.sgd_noise against naive computations: the mean-field MLP, the α-trick hinge loss with its centring,
the monitor, a stacked run against separate runs, the temperature and the T_c / power-law readers."""
import math

import numpy as np
import pytest
import torch

from tdlab.core import engine
from tdlab.methods.lr_and_batch import sgd_noise
from tdlab.core.data import Dataset


def toy(n_train=48, n_test=32, dim=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_train + n_test, dim, generator=gen)
    y = torch.sign(x[:, 0] + 0.5 * x[:, 1] + 1e-6)
    return Dataset("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], None)


def naive_forward(model, x):
    h = x.flatten(1)
    c = math.sqrt(0.5)                                   # √E[relu(g)²] = 1/√2
    for layer in model.hidden:
        W = layer.weight
        h = torch.stack([torch.relu(W @ row / math.sqrt(W.shape[1])) / c for row in h])
    a = model.readout.weight[0]
    return torch.stack([a @ row / model.width for row in h]).unsqueeze(-1)


def test_activation_scale_and_temperature():
    assert sgd_noise.activation_scale("relu") == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    g = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    monte_carlo = torch.nn.functional.gelu(g).pow(2).mean().sqrt().item()
    assert sgd_noise.activation_scale("gelu") == pytest.approx(monte_carlo, rel=2e-3)
    # the official conversion: dt = temp * h * bs, temp = dt / (h * bs)
    assert sgd_noise.learning_rate(2.0**-7, 16, 128) == pytest.approx(2.0**-7 * 128 * 16)
    assert sgd_noise.temperature(sgd_noise.learning_rate(0.013, 8, 64), 8, 64) == pytest.approx(0.013)


def test_mean_field_mlp_matches_the_formula_and_stacks():
    torch.manual_seed(0)
    models = [sgd_noise.MeanFieldMLP(6, width=10, depth=2) for _ in range(3)]
    x = torch.randn(5, 6)
    for model in models:
        assert torch.allclose(model(x), naive_forward(model, x), atol=1e-5)
        assert model.readout.weight.std() > 0.5            # standard-normal weights, not PyTorch's default
    params = {name: torch.stack([dict(m.named_parameters())[name] for m in models])
              for name, _ in models[0].named_parameters()}
    stacked = models[0].forward_stacked(params, x)
    assert stacked.shape == (3, 5, 1)
    for e, model in enumerate(models):
        assert torch.allclose(stacked[e], model(x), atol=1e-5)


def test_alpha_hinge_against_a_loop():
    loss = sgd_noise.AlphaHinge()
    loss.alpha = torch.tensor([0.5, 100.0])               # per-member coefficients, as the loop sets them
    z0 = torch.randn(2, 7)
    loss.initial = {"train": z0, "test": z0}
    z = torch.randn(2, 4, 1)
    y = torch.tensor([1.0, -1.0, -1.0, 1.0])
    index = torch.tensor([3, 0, 6, 2])
    value = loss(z, y.expand(2, -1), index)
    for e, alpha in enumerate((0.5, 100.0)):
        terms = [max(0.0, float(1 - yi * alpha * (z[e, b, 0] - z0[e, i]))) / alpha for b, (yi, i) in enumerate(zip(y, index))]
        assert value[e].item() == pytest.approx(float(sum(terms)) / 4, rel=1e-5)
    uncentred = sgd_noise.AlphaHinge(alpha=2.0, center=False)
    expected = torch.relu(1 - y * 2.0 * z[0, :, 0]).mean() / 2.0
    assert uncentred(z[0], y).item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ValueError, match="alpha_trick"):
        sgd_noise.AlphaHinge()(z, y.expand(2, -1), index)


def run(data, members, steps=40, batched=None):
    return engine.run(lambda: sgd_noise.MeanFieldMLP(6, width=16, depth=2), data, members,
                      loss=sgd_noise.AlphaHinge(), optimizer="sgd", momentum=0.0, batch_size=8, steps=steps,
                      eval_every=20, monitors=[sgd_noise.alpha_trick], batched=batched, progress=False)


def test_monitor_against_the_final_models_and_stacked_against_separate():
    data = toy()
    members = (sgd_noise.members([1.0], [2.0**-6, 2.0**-3], width=16, batch_size=8, seeds=[0])
               + sgd_noise.members([1000.0], [2.0**-6, 2.0**-3], width=16, batch_size=8, seeds=[1]))
    stacked = run(data, members)
    separate = run(data, members, batched=False)
    build = lambda: sgd_noise.MeanFieldMLP(6, width=16, depth=2)   # noqa: E731
    for m, knobs in enumerate(stacked.knobs):
        assert knobs["alpha"] == members[m]["alpha"]
        for split, metric in (("train", "hinge"), ("train", "unfit"), ("test", "err"), ("weights", "change")):
            assert stacked.final(split, metric, m) == pytest.approx(separate.final(split, metric, m), abs=1e-4)
        # the monitor's test error and weight change, recomputed from the trained and the initial network
        F = sgd_noise.centred_outputs(stacked, m, build, data.x_test)
        assert stacked.final("test", "err", m) == pytest.approx(float((data.y_test * F <= 0).float().mean()))
        torch.manual_seed(knobs["seed"])
        w0 = torch.cat([p.detach().flatten() for p in build().parameters()])
        w = torch.cat([p.detach().flatten() for p in stacked.models[m].parameters()])
        assert stacked.final("weights", "change", m) == pytest.approx(float((w - w0).norm() / w0.norm()), rel=1e-4)
        # at step 0 F = 0: every point is unfitted and counted as an error
        assert stacked.curve("train", "unfit", m)[1][0] == 1.0
        assert stacked.curve("weights", "change", m)[1][0] == 0.0


def test_training_stops_by_itself_once_every_point_is_fitted():
    data = toy()
    history = run(data, [{"alpha": 1e4, "lr": sgd_noise.learning_rate(2.0**-4, 8, 16)}], steps=400)
    assert sgd_noise.fitted_at(history) < 380
    assert sgd_noise.status(history, 0) == "fitted"
    steps, change = history.curve("weights", "change")
    after = change[steps >= sgd_noise.fitted_at(history)]
    assert np.ptp(after) == 0.0                      # zero hinge loss, zero gradient: the weights stay put


def test_parity_labels_and_standardisation():
    base = Dataset("digits-like", torch.rand(20, 1, 2, 2) * 16, torch.arange(20) % 10,
                   torch.rand(10, 1, 2, 2) * 16, torch.arange(10), 10)
    parity = sgd_noise.parity(base)
    assert parity.num_classes is None and parity.x_train.shape == (20, 4)
    assert torch.equal(parity.y_train, torch.where(base.y_train % 2 == 0, 1.0, -1.0))
    assert parity.x_train.mean().abs() < 1e-5 and parity.x_train.std() == pytest.approx(1.0, rel=1e-5)


def test_crossover_temperature_interpolates_in_log_t():
    temps = [2.0**-8, 2.0**-6, 2.0**-4, 2.0**-2]
    values = [0.001, 0.01, 0.05, 0.2]
    # the level 0.03 lies halfway between 0.01 (T = 2^-6) and 0.05 (T = 2^-4): T_c = 2^-5
    assert sgd_noise.crossover_temperature(temps, values, 0.03) == pytest.approx(2.0**-5)
    assert sgd_noise.crossover_temperature(temps[::-1], values[::-1], 0.03) == pytest.approx(2.0**-5)
    assert sgd_noise.crossover_temperature(temps, values, 1.0) == math.inf
    assert sgd_noise.crossover_temperature(temps, values, 0.0005) == 2.0**-8


def test_power_law_fits_each_seed():
    sizes = [100, 200, 400, 800]
    rows = [[3.0 * p**-0.5 for p in sizes], [2.0 * p**-0.7 for p in sizes], [1.0, 0.5, math.inf, 0.2]]
    fit = sgd_noise.power_law(sizes, rows)
    assert fit.slopes[0] == pytest.approx(-0.5) and fit.slopes[1] == pytest.approx(-0.7)
    assert fit.prefactors[0] == pytest.approx(3.0)
    keep = np.array([True, True, False, True])        # the infinite point is left out of that seed's fit
    expected = np.polyfit(np.log(np.array(sizes)[keep]), np.log(np.array([1.0, 0.5, 0.2])), 1)[0]
    assert fit.slopes[2] == pytest.approx(expected)
    assert fit.slope == pytest.approx(np.mean(fit.slopes))
    assert fit.spread == pytest.approx(np.std(fit.slopes, ddof=1))


def test_departure_and_optimum_temperature():
    reference = torch.tensor([1.0, -1.0, 1.0, 1.0])
    signs = torch.tensor([[1.0, -1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0], [-1.0, 1.0, -1.0, -1.0]])
    assert sgd_noise.departure(signs, reference).tolist() == [0.0, 0.5, 1.0]
    temps = [2.0**-8, 2.0**-6, 2.0**-4, 2.0**-2]
    errors = [0.10, 0.05, 0.02, math.nan]                          # the hottest run diverged
    assert sgd_noise.optimum_temperature(temps, errors, smooth=False) == 2.0**-4
    assert sgd_noise.optimum_temperature(temps, errors, usable=[True, True, False, True], smooth=False) == 2.0**-6
    assert math.isnan(sgd_noise.optimum_temperature(temps, errors, usable=[False] * 4))
    # smoothed: each usable error averaged with its usable neighbours — a lucky single run is not the optimum
    temps = [2.0**k for k in range(-10, -4)]
    errors = [0.05, 0.01, 0.05, 0.03, 0.02, 0.03]           # means: .03, .0367, .03, .0333, .0267, .025
    assert sgd_noise.optimum_temperature(temps, errors, smooth=False) == 2.0**-9
    assert sgd_noise.optimum_temperature(temps, errors) == 2.0**-5
    assert sgd_noise.optimum_temperature(temps[::-1], errors[::-1]) == 2.0**-5


def test_each_seed_draws_its_own_nested_subsets(monkeypatch):
    base = Dataset("digits-like", torch.arange(40.0).reshape(40, 1), torch.arange(40) % 10,
                   torch.zeros(5, 1), torch.arange(5), 10)
    monkeypatch.setattr(sgd_noise.datasets, "load", lambda name, **kw: base)
    make = sgd_noise.parity_subsets("digits-like", seed=3)
    small, large = make(train_size=8), make(train_size=16)
    assert torch.equal(large.x_train[:8], small.x_train)                          # nested in P
    assert torch.equal(make(train_size=8, subset_seed=3).x_train, small.x_train)  # the default is the seed given
    assert not torch.equal(make(train_size=8, subset_seed=4).x_train, small.x_train)
    members = sgd_noise.members([2.0], [2.0**-6], width=4, batch_size=2, seeds=[5, 6], own_subsets=True)
    assert [(m["seed"], m["subset_seed"]) for m in members] == [(5, 5), (6, 6)]
    assert "subset_seed" not in sgd_noise.members([2.0], [2.0**-6], width=4, batch_size=2, seeds=[5])[0]


def test_phase_frame_labels_powers_of_two_and_blanks():
    values = {(a, t): a * t for a in (1.0, 4.0) for t in (0.25, 0.5)}
    frame = sgd_noise.phase_frame(values, [1.0, 4.0], [0.25, 0.5], blank={(4.0, 0.5): True})
    assert list(frame.index) == ["$2^{0}$", "$2^{2}$"] and list(frame.columns) == ["$2^{-2}$", "$2^{-1}$"]
    assert frame.iloc[0, 1] == 0.5 and math.isnan(frame.iloc[1, 1])


def test_fitted_window_interior_optimum_and_error_departure():
    temps = [2.0**k for k in range(-10, -4)]
    errors = [0.05, 0.04, 0.02, 0.03, 0.04, 0.06]
    assert sgd_noise.fitted_window(temps, [False, True, True, True, True, False]) == (2.0**-9, 2.0**-6)
    assert all(math.isnan(v) for v in sgd_noise.fitted_window(temps, [False] * 6))
    # the smoothed minimum at 2^-8 has both neighbours usable: interior
    assert sgd_noise.interior_optimum(temps, errors, [True] * 6, smooth=False)
    # the same row cut at 2^-8 (the hotter runs unusable): the optimum is the window's edge
    assert not sgd_noise.interior_optimum(temps, errors, [True, True, True, False, False, False], smooth=False)
    # falling to the hottest usable run: the edge, and the grid's end is never interior
    assert not sgd_noise.interior_optimum(temps, [0.05, 0.04, 0.02, 0.01, 0.005, 0.001], [True] * 6)
    assert not sgd_noise.interior_optimum(temps, [0.0] * 6, [False] * 6)
    # the test error below T_c minus at T >= 4 T_c, by hand
    assert sgd_noise.error_departure(errors, temps, 2.0**-8) == pytest.approx(
        np.mean([0.05, 0.04]) - np.mean([0.04, 0.06]))
    assert math.isnan(sgd_noise.error_departure(errors, temps, 2.0**-5))


def test_lazy_arrays_against_the_history(monkeypatch):
    class Grid:                      # a stand-in History: two seeds × one P × two temperatures, two evaluations each
        knobs = [{"train_size": 8, "seed": s, "temperature": t} for s in (3, 4) for t in (0.1, 0.2)]
        records = [{"member": m, "step": step, "split": split, "metric": metric, "value": base * (m + 1) * step}
                   for step in (1, 2) for m in range(4)
                   for split, metric, base in (("weights", "change", 0.005), ("test", "err", 0.05), ("train", "unfit", 0.0))]

        def find(self, **k):
            return next(i for i, kn in enumerate(self.knobs) if all(kn[a] == b for a, b in k.items()))

    outputs = {0: torch.tensor([1.0, 1, -1]), 1: torch.tensor([1.0, -1, -1]), 2: torch.ones(3), 3: torch.ones(3)}
    monkeypatch.setattr(sgd_noise, "centred_outputs", lambda grid, m, build, x: outputs[m])
    out = sgd_noise.lazy_arrays(Grid(), [8], [3, 4], [0.1, 0.2], None, None)
    assert out["weights"].shape == (2, 1, 2) and out["weights"][1, 0, 1] == pytest.approx(0.04)   # the final step's
    assert out["errors"][0, 0, 1] == pytest.approx(0.2) and (out["unfit"] == 0).all()
    assert np.allclose(out["moved"][:, 0], [[0, 1 / 3], [0, 0]])


def test_the_figures_draw_every_curve_and_mark_the_unfitted_run():
    import matplotlib
    matplotlib.use("Agg")
    temps, sizes, seeds = [2.0**-8, 2.0**-6, 2.0**-4], [64, 128], [0, 1]
    rng = np.random.default_rng(0)
    arrays = {"weights": rng.uniform(0.01, 0.1, (2, 2, 3)), "errors": rng.uniform(0.1, 0.2, (2, 2, 3)),
              "moved": rng.uniform(0, 0.05, (2, 2, 3)), "unfit": np.zeros((2, 2, 3))}
    arrays["unfit"][1, 0, 2] = 0.01
    t_c = np.full((2, 2), 2.0**-6)
    fig = sgd_noise.lazy_figure(arrays, sizes, temps, t_c, sgd_noise.power_law(sizes, t_c), 0.03, 2.0**15, seeds, 540,
                                reordered=0.02)
    marks = [line for line in fig.axes[2].lines if line.get_marker() == "x"]
    assert len(marks) == 1 and np.allclose(marks[0].get_ydata(), [arrays["weights"][1, 0, 2]])
    assert any(line.get_marker() == "D" for line in fig.axes[0].lines)
    alphas = [2.0**-6, 1.0]
    error = {(a, t): 0.1 for a in alphas for t in temps}
    fig = sgd_noise.optimum_figure(error, {a: [True, True, False] for a in alphas}, alphas, temps,
                                   np.array([2.0**-8, 2.0**-6]), np.array([2.0**-6, 2.0**-6]), 0.33, 0.0, "t")
    assert len(fig.axes[0].lines) >= 4 and len(fig.axes[0].lines[0].get_xdata()) == 2   # the usable runs only


def test_departure_leaves_out_unfitted_runs_and_names_its_arms():
    temps = [2.0**k for k in range(-10, -4)]
    errors = np.array([[0.05, 0.04, 0.02, 0.03, 0.04, 0.06], [0.07, 0.02, 0.02, 0.03, 0.02, 0.10]])
    unfit = np.zeros_like(errors)
    unfit[1, 5] = 0.01                                    # one run not fitted: left out of its seed mean
    fitted = sgd_noise.fitted_errors(errors, unfit)
    assert math.isnan(fitted[1, 5]) and np.isfinite(np.delete(fitted.ravel(), 11)).all()
    assert sgd_noise.departure_arms(temps, 2.0**-8) == ([2.0**-10, 2.0**-9], [2.0**-6, 2.0**-5])
    mean = np.nanmean(fitted, 0)
    assert mean[5] == pytest.approx(0.06)
    by_hand = np.mean([0.06, 0.03]) - np.mean([0.03, 0.06])
    assert sgd_noise.error_departure(mean, temps, 2.0**-8) == pytest.approx(by_hand)
    # an arm whose only run is NaN is empty: NaN
    assert math.isnan(sgd_noise.error_departure([0.1, 0.1, 0.1, 0.1, np.nan, np.nan], temps, 2.0**-7))


def test_paper_rows_carry_the_build_and_the_table():
    args = dict(
        eta_hot="2^7", change_alpha=1500.0, change_temp=400.0, eta_ratio=512.0, lazy="α = 2^15", small="2^-6",
        cold="2^-12", hot="2^-3", k=0.61, k_edge=0.5, window="α = 2^-6 … 2^0", interior=2, rows=4, k_range="K",
        edge_range="E", interior_range="I", k_minus_edge="+0.11 (D)", slope_t=0.9, slope_p=0.3, largest=1024,
        reordered=0.021, reorder_range="R", pair=0.022, pair_range="Q", departures=[0.01, -0.002], sizes=[128, 1024],
        departure_counts=["5 of 10", "10 of 10"], departure_range="DR", departure_verdict="V", tc_slope=-0.27,
        tc_spread=0.05, networks=5, level=0.03)
    rows = sgd_noise.paper_rows(**args)
    assert len(rows) == 6 and rows.index[-1] == "T_c ∝ P^(−a)"
    text = " ".join(rows["this build"])
    for piece in ("×1500", "×400", "k = 0.61", "slope 0.50", "+0.11 (D)", "+1.00, -0.20 points at P = 128, 1024",
                  "positive on 5 of 10, 10 of 10 seeds", "2.1%", "2.2%", "slope -0.27 ± 0.05", "3% weight change",
                  "a factor 8 in P", "not seen to track P", "T_c itself", "not measured here"):
        assert piece in text, piece
    ranged = sgd_noise.paper_rows(**args, departure_ranges=["ten seeds A", "ten seeds B"])
    assert "+1.00 (ten seeds A), -0.20 (ten seeds B) points at P = 128, 1024" in " ".join(ranged["this build"])


def test_the_phase_diagram_has_its_own_activation():
    cpu, paper = sgd_noise.GRIDS["cpu"], sgd_noise.GRIDS["paper"]
    assert cpu.phase_activation == "relu" and paper.phase_activation == "gelu"
    assert cpu.phase_recipe(0).model().activation == "relu" and cpu.recipe(0).model().activation == "relu"
    assert paper.phase_recipe(0).model().activation == "gelu" and paper.recipe(0).model().activation == "relu"


def test_optimum_figure_draws_edge_optima_open():
    import matplotlib
    matplotlib.use("Agg")
    temps, alphas = [2.0**-8, 2.0**-6, 2.0**-4], [2.0**-6, 1.0]
    error = {(a, t): 0.1 for a in alphas for t in temps}
    fig = sgd_noise.optimum_figure(error, {a: [True, True, False] for a in alphas}, alphas, temps,
                                   np.array([2.0**-8, 2.0**-6]), np.array([2.0**-6, 2.0**-6]), 0.33, 0.0, "t",
                                   interior=[True, False])
    lines = fig.axes[1].lines
    filled = [ln for ln in lines if ln.get_marker() == "o" and ln.get_markerfacecolor() != "white"]
    hollow = [ln for ln in lines if ln.get_marker() == "o" and ln.get_markerfacecolor() == "white"]
    assert len(filled) == 1 and np.allclose(filled[0].get_xdata(), [2.0**-6])
    assert len(hollow) == 1 and np.allclose(hollow[0].get_xdata(), [1.0])


def test_window_permutation_against_every_permutation():
    import itertools
    temps, alphas = [2.0**k for k in range(-6, -1)], [0.25, 1.0]
    errors = [[0.05, 0.03, 0.04, 0.02, np.nan], [0.09, 0.06, 0.01, 0.08, 0.07]]
    usable = [[False, True, True, True, False], [True, True, True, False, False]]

    def slope(rows):                       # T_opt of every row (the same smoothing), then the log–log slope
        t_opt = [sgd_noise.optimum_temperature(temps, e, u) for e, u in zip(rows, usable)]
        return np.polyfit(np.log2(alphas), np.log2(t_opt), 1)[0]

    def permuted(row, where, order):
        out = list(row)
        for i, j in zip(where, order):
            out[i] = row[j]
        return out

    where = [[i for i, u in enumerate(row) if u] for row in usable]
    exact = [slope([permuted(errors[0], where[0], a), permuted(errors[1], where[1], b)])   # all 3! × 3! equally likely
             for a in itertools.permutations(where[0]) for b in itertools.permutations(where[1])]
    values, counts = np.unique(np.round(exact, 9), return_counts=True)
    draws = np.round(sgd_noise.window_permutation(alphas, temps, errors, usable, seed=0, shuffles=4000), 9)
    assert set(draws) <= set(values)
    assert np.allclose([np.mean(draws == v) for v in values], counts / counts.sum(), atol=0.03)
    assert np.median(draws) == pytest.approx(np.median(np.repeat(values, counts)), abs=0.3)
    again = sgd_noise.window_permutation(alphas, temps, errors, usable, seed=0, shuffles=50)
    assert np.array_equal(again, sgd_noise.window_permutation(alphas, temps, errors, usable, seed=0, shuffles=50))
    # a row with one usable run keeps its T_opt in every draw; the window is each row's own
    one = [[False, False, True, False, False], usable[1]]
    draws = sgd_noise.window_permutation(alphas, temps, errors, one, seed=1, shuffles=200)
    row1 = {sgd_noise.optimum_temperature(temps, permuted(errors[1], where[1], b), usable[1])
            for b in itertools.permutations(where[1])}
    assert set(np.round(draws, 9)) <= {round(float(np.log2(t / temps[2]) / 2), 9) for t in row1}
    assert sgd_noise.slope_through(alphas, [2.0**-8, 2.0**-7]) == pytest.approx(0.5)
    assert math.isnan(sgd_noise.slope_through(alphas, [2.0**-8, math.nan]))


def test_falls_with_size_and_signs_of_chosen_members():
    values = np.array([[5.0, 3.0, 2.0], [4.0, 3.0, 1.0], [1.0, 4.0, 0.5]])      # [P, T]
    assert sgd_noise.falls_with_size(values).tolist() == [True, False, True]


def toy_grid():
    return sgd_noise.Grids("toy-digits", 6, 8, 1, 4, phase_size=16, phase_steps=200, alphas=[2.0, 8.0, 2.0**15],
                           phase_temperatures=[2.0**-6, 2.0**-4, 2.0**-2], sizes=[16, 32],
                           temperatures=[2.0**-8, 2.0**-6, 2.0**-4], lazy_seeds=2, steps_per_point=4.0, min_steps=40,
                           rich_alphas=[2.0, 8.0])


def test_null_runs_train_the_twins_and_read_them(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(90, 6, generator=gen)
    digits = (x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long()                      # parity: the sign of x₁
    base = Dataset("toy-digits", x[:60], digits[:60], x[60:], digits[60:], 4)
    monkeypatch.setattr(sgd_noise.datasets, "load", lambda name, **kw: base)
    grid, seeds, below = toy_grid(), [100, 101], [2.0**-8, 2.0**-6]
    recipe = grid.recipe(3, progress=False)
    labels = []

    def timed(label, train, *args, **kwargs):
        labels.append(label)
        return train(*args, **kwargs)

    cold = np.array([[0.10, 0.20], [0.30, np.nan]])
    out = sgd_noise.null_runs(recipe, grid, 3, seeds, below, cold, 0.001, timed=timed)
    twin, sweep, again = (out["histories"][k] for k in ("twin", "twin_sweep", "again"))
    assert labels == ["null run"] * 4                        # the phase twins, the sweep's two sizes, the second order
    # the phase twins: networks 1003 and 1004 at the smallest rich α (the build's training set and batches)
    assert sorted({(k["alpha"], k["seed"]) for k in twin.knobs}) == [(2.0, 1003), (2.0, 1004)]
    assert all("subset_seed" not in k or k["subset_seed"] == 3 for k in twin.knobs)
    # the lazy twins: other initialisations on each network's own training set
    at_small = [k for k in sweep.knobs if k["train_size"] == 16]
    assert sorted({(k["seed"], k["subset_seed"]) for k in at_small}) == [(2000, 100), (2001, 100), (2010, 101), (2011, 101)]
    assert sorted({k["temperature"] for k in at_small}) == pytest.approx(sorted(grid.temperatures))
    assert sorted({(k["seed"], k["subset_seed"]) for k in sweep.knobs if k["train_size"] == 32}) == [(2000, 100), (2010, 101)]
    # the second batch order: the networks themselves on their own sets, data_seed 3 + 5000
    assert sorted({(k["seed"], k["subset_seed"]) for k in again.knobs}) == [(100, 100), (101, 101)]
    assert {k["data_seed"] for k in again.knobs} == {5003}

    def value(h, split, metric, **want):                    # by scanning the knobs, not History.find
        m = [i for i, k in enumerate(h.knobs) if all(k[a] == pytest.approx(b) for a, b in want.items())]
        assert len(m) == 1
        return h.final(split, metric, m[0])

    tc = [[sgd_noise.crossover_temperature(grid.temperatures, [value(sweep, "weights", "change", train_size=16, seed=w,
                                                                     temperature=t) for t in grid.temperatures], 0.001)
           for w in (1000 + 10 * s, 1001 + 10 * s)] for s in seeds]
    assert np.array_equal(out["twin_tc"], np.array(tc))
    t_opt, edge = [], []
    for w in (1003, 1004):
        err = [value(twin, "test", "err", seed=w, temperature=t) for t in grid.phase_temperatures]
        ok = [sgd_noise.status(twin, [i for i, k in enumerate(twin.knobs) if k["seed"] == w and
                                      k["temperature"] == pytest.approx(t)][0]) == "fitted" for t in grid.phase_temperatures]
        t_opt.append(sgd_noise.optimum_temperature(grid.phase_temperatures, err, ok))
        edge.append(max([t for t, u in zip(grid.phase_temperatures, ok) if u], default=math.nan))
    def slope(v):
        return np.polyfit(np.log2(grid.rich_alphas), np.log2(v), 1)[0] if np.isfinite(v).all() else math.nan

    assert out["twin_k"] == pytest.approx(slope(t_opt), nan_ok=True)
    assert out["twin_edge"] == pytest.approx(slope(edge), nan_ok=True)
    redrawn = np.array([[value(again, "test", "err", seed=s, temperature=t)
                         if value(again, "train", "unfit", seed=s, temperature=t) == 0 else np.nan for t in below]
                        for s in seeds])
    assert np.isfinite(redrawn).any()                     # some runs of the toy fit: the null is a number
    by_hand = np.nanmean([np.nanmean(cold[:, j]) for j in range(2)]) - np.nanmean(
        [np.nanmean(redrawn[:, j]) for j in range(2)])
    assert out["paired_null"] == pytest.approx(by_hand, nan_ok=True)
    assert out["redrawn_error"] == pytest.approx(np.nanmean([np.nanmean(redrawn[:, j]) for j in range(2)]), nan_ok=True)
    # predicted_signs of chosen members: the same as every member's, picked out
    build = recipe.model
    every = sgd_noise.predicted_signs(again, build, base.x_test.float())
    assert torch.equal(sgd_noise.predicted_signs(again, build, base.x_test.float(), [2, 0]), every[[2, 0]])


def test_the_figures_share_one_legend_for_p_and_colour_the_fitted_cells():
    import matplotlib
    matplotlib.use("Agg")
    temps, sizes, seeds = [2.0**-8, 2.0**-6, 2.0**-4], [64, 128], [7, 8]
    rng = np.random.default_rng(1)
    arrays = {"weights": rng.uniform(0.01, 0.1, (2, 2, 3)), "errors": rng.uniform(0.1, 0.2, (2, 2, 3)),
              "moved": rng.uniform(0, 0.05, (2, 2, 3)), "unfit": np.zeros((2, 2, 3))}
    t_c = np.full((2, 2), 2.0**-6)
    fig = sgd_noise.lazy_figure(arrays, sizes, temps, t_c, sgd_noise.power_law(sizes, t_c), 0.03, 2.0**15, seeds, 540,
                                reordered=0.02)
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["P = 64", "P = 128"]
    top_left = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any(t.startswith("P = 64") or t == "P = 128" for t in top_left) and "one test image" in top_left
    assert fig.axes[1].get_legend() is None                      # nothing of its own to name: no run left out
    assert [t.get_text() for t in fig.axes[3].get_legend().get_texts()][:2] == ["network 7", "network 8"]
    assert "networks" in fig.axes[0].get_title() and "seed" not in fig.axes[0].get_title()
    assert "build seed" not in fig.legends[0].get_title().get_text()
    named = sgd_noise.lazy_figure(arrays, sizes, temps, t_c, sgd_noise.power_law(sizes, t_c), 0.03, 2.0**15, seeds,
                                  540, build_seed=3)
    assert "build seed 3 (TDLAB_SEED): networks 7 … 8" in named.legends[0].get_title().get_text()
    alphas = [0.25, 1.0]
    error = {(0.25, temps[0]): 0.03, (0.25, temps[1]): 0.05, (0.25, temps[2]): 0.55,
             (1.0, temps[0]): 0.08, (1.0, temps[1]): 0.04, (1.0, temps[2]): math.nan}
    state = {(0.25, temps[0]): "fitted", (0.25, temps[1]): "fitted", (0.25, temps[2]): "not fitted",
             (1.0, temps[0]): "not fitted", (1.0, temps[1]): "fitted", (1.0, temps[2]): "diverged"}
    fig = sgd_noise.phase_figure(error, {k: 0.01 for k in error}, state, alphas, temps, "t")
    mesh = fig.axes[0].collections[0]
    assert mesh.get_clim() == pytest.approx((3.0, 5.0))          # the fitted cells' range, not the 55 % run's
    assert int(np.ma.count_masked(mesh.get_array())) == 3        # not fitted twice and diverged once: grey
