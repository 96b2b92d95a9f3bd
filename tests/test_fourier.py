"""The quadratic modular-arithmetic network, the Fourier IPR of its neurons, pruning, and the phases."""
import math

import numpy as np
import pytest
import torch

from tdlab.core import data, models, sweep
from tdlab.methods.grokking import fourier, grokking


# ----------------------------------------------------------------- naive references (float64)


def naive_ipr(u, r=2):
    """IPR from an explicit DFT sum, in float64: Σ_j (|û_j| / ‖û‖)^{2r}, j = 0..⌊p/2⌋."""
    u = np.asarray(u, dtype=np.float64)
    p = len(u)
    amps = []
    for j in range(p // 2 + 1):
        re = sum(u[n] * math.cos(2 * math.pi * j * n / p) for n in range(p))
        im = -sum(u[n] * math.sin(2 * math.pi * j * n / p) for n in range(p))
        amps.append(math.hypot(re, im))
    norm = math.sqrt(sum(a * a for a in amps))
    return sum((a / norm) ** (2 * r) for a in amps)


def naive_forward(model, pairs):
    """f_j(a, b) = Σ_k W_jk (U_ka + V_kb)², one example and one output at a time."""
    U, V, W = (t.detach().double().numpy() for t in (model.U, model.V, model.W))
    out = np.zeros((len(pairs), W.shape[0]))
    for i, (a, b) in enumerate(pairs.tolist()):
        for j in range(W.shape[0]):
            out[i, j] = sum(W[j, k] * (U[k, a] + V[k, b]) ** 2 for k in range(U.shape[0]))
    return out


# ----------------------------------------------------------------- IPR


@pytest.mark.parametrize("p", [7, 12, 31])
def test_ipr_of_a_single_mode_is_one_and_matches_the_naive_formula(p):
    n = np.arange(p)
    for k in range(1, p // 2 + (p % 2)):
        u = 0.7 * np.cos(2 * np.pi * k * n / p + 0.3)
        ours = fourier.ipr(torch.tensor(u, dtype=torch.float64)).item()
        assert ours == pytest.approx(1.0, abs=1e-12)
        assert ours == pytest.approx(naive_ipr(u), abs=1e-12)


def test_ipr_of_two_equal_modes_is_one_half():
    p = 29
    n = np.arange(p)
    u = np.cos(2 * np.pi * 3 * n / p) + np.sin(2 * np.pi * 8 * n / p)
    assert fourier.ipr(torch.tensor(u)).item() == pytest.approx(0.5, abs=1e-12)
    assert naive_ipr(u) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("r", [1, 2, 3])
def test_ipr_of_random_vectors_matches_naive_float64(r):
    gen = torch.Generator().manual_seed(0)
    vectors = torch.randn(6, 23, generator=gen, dtype=torch.float64)
    ours = fourier.ipr(vectors, r=r)
    assert ours.shape == (6,)
    for row, value in zip(vectors, ours):
        assert value.item() == pytest.approx(naive_ipr(row.numpy(), r), rel=1e-10)
    # float32 agrees to float32 precision; random vectors are far from periodic
    assert torch.allclose(fourier.ipr(vectors.float(), r=r).double(), ours, rtol=1e-5)
    if r == 2:
        assert ours.max() < 0.5


def test_ipr_rejects_bad_input():
    with pytest.raises(ValueError, match="r"):
        fourier.ipr(torch.randn(5), r=0)
    with pytest.raises(ValueError, match="length"):
        fourier.ipr(torch.randn(3, 1))
    assert math.isnan(fourier.ipr(torch.zeros(9)).item())


def test_neuron_ipr_averages_u_v_and_the_columns_of_w():
    torch.manual_seed(0)
    model = models.QuadraticModularNet(p=11, width=5)
    p = 11
    with torch.no_grad():  # neuron 2 is a pure mode in U and V, random in W
        model.U[2] = torch.cos(2 * math.pi * 3 * torch.arange(p) / p)
        model.V[2] = torch.sin(2 * math.pi * 3 * torch.arange(p) / p)
    scores = fourier.neuron_ipr(model)
    for k in range(5):
        expected = np.mean([naive_ipr(model.U[k].detach().numpy()), naive_ipr(model.V[k].detach().numpy()),
                            naive_ipr(model.W[:, k].detach().numpy())])
        assert scores[k].item() == pytest.approx(expected, rel=1e-5)
    assert scores[2] > scores[[0, 1, 3, 4]].max()
    assert fourier.lowest_ipr(model, 5)[-1].item() == 2


def test_neuron_ipr_needs_the_quadratic_net():
    with pytest.raises(ValueError, match="QuadraticModularNet"):
        fourier.neuron_ipr(models.MLP(4, 3))


# ----------------------------------------------------------------- pruning


def test_prune_drops_exactly_the_chosen_neurons():
    torch.manual_seed(1)
    model = models.QuadraticModularNet(p=7, width=9)
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    chosen = [0, 4, 8]
    pruned = fourier.prune(model, chosen)
    for name, tensor in model.named_parameters():  # the original is untouched
        assert torch.equal(tensor, before[name])
    kept = [k for k in range(9) if k not in chosen]
    assert torch.all(pruned.U[chosen] == 0) and torch.all(pruned.V[chosen] == 0)
    assert torch.all(pruned.W[:, chosen] == 0)
    assert torch.equal(pruned.U[kept], model.U[kept]) and torch.equal(pruned.V[kept], model.V[kept])
    assert torch.equal(pruned.W[:, kept], model.W[:, kept])
    # its output is the sum over the kept neurons only
    d = data.modular_arithmetic(7, train_fraction=0.5)
    h = model.hidden(d.x_test)[:, kept]
    expected = (h * h) @ model.W[:, kept].T
    torch.testing.assert_close(pruned(d.x_test), expected)
    assert torch.all(torch.isnan(fourier.neuron_ipr(pruned)[chosen]))
    with pytest.raises(ValueError, match="neuron indices"):
        fourier.prune(model, [9])


def test_pruning_curve_removes_lowest_ipr_first():
    torch.manual_seed(2)
    p = 11
    model = models.QuadraticModularNet(p=p, width=6)
    with torch.no_grad():
        for k in (1, 3):  # two periodic neurons
            wave = torch.cos(2 * math.pi * (k + 1) * torch.arange(p) / p)
            model.U[k], model.V[k], model.W[:, k] = wave, wave, wave
    noisy = data.with_label_noise(data.modular_arithmetic(p, train_fraction=0.6), "uniform", 0.3, seed=0)
    curve = fourier.pruning_curve(model, noisy, [0, 2, 4, 6])
    assert list(curve.pruned) == [0, 2, 4, 6]
    assert {"test", "clean", "corrupted", "corrupted_true"} <= set(curve.columns)
    first = fourier.accuracies(model, noisy)
    assert curve.iloc[0]["test"] == pytest.approx(first["test"])
    four = fourier.lowest_ipr(model, 4)
    assert set(four.tolist()) == {0, 2, 4, 5}
    assert curve.iloc[2]["test"] == pytest.approx(fourier.accuracies(fourier.prune(model, four), noisy)["test"])
    norms = fourier.neuron_norm(model)
    naive = torch.stack([(model.U[k] ** 2).sum() + (model.V[k] ** 2).sum() + (model.W[:, k] ** 2).sum()
                         for k in range(6)]).sqrt()
    torch.testing.assert_close(norms, naive.detach())
    smallest = torch.argsort(norms)[:2]
    by_norm = fourier.pruning_curve(model, noisy, [0, 2], order="norm")
    assert by_norm.iloc[1]["test"] == pytest.approx(fourier.accuracies(fourier.prune(model, smallest), noisy)["test"])
    random = fourier.pruning_curve(model, noisy, [0, 6], order="random")
    assert random.iloc[0]["test"] == pytest.approx(first["test"])
    with pytest.raises(ValueError, match="order"):
        fourier.pruning_curve(model, noisy, [1], order="largest")


# ----------------------------------------------------------------- the network


@pytest.mark.parametrize("embedding", [False, True])
def test_forward_matches_a_naive_loop(embedding):
    torch.manual_seed(3)
    p = 7
    model = models.QuadraticModularNet(p=p, width=5, embedding=embedding).double()
    d = data.modular_arithmetic(p, train_fraction=0.5)
    ours = model(d.x_train.double()).detach().numpy()
    np.testing.assert_allclose(ours, naive_forward(model, d.pairs_train), rtol=1e-12, atol=1e-12)
    from_pairs = model(d.pairs_train).detach().numpy()   # pairs as input give the same numbers
    np.testing.assert_allclose(from_pairs, ours, rtol=1e-12, atol=1e-12)


def test_init_scale_and_bad_input():
    torch.manual_seed(0)
    model = models.QuadraticModularNet(p=97, width=500)
    sigma = 0.5 / 1000 ** (1 / 3)
    for tensor in (model.U, model.V, model.W):
        assert tensor.std().item() == pytest.approx(sigma, rel=0.03)
    assert model.U.shape == (500, 97) and model.W.shape == (97, 500)
    with pytest.raises(ValueError, match="2p = 194"):
        model(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="width"):
        models.QuadraticModularNet(p=5, width=0)


def test_embedding_gradients_equal_one_hot_gradients():
    d = data.modular_arithmetic(11, train_fraction=0.5)
    grads = []
    for embedding in (False, True):
        torch.manual_seed(4)
        model = models.QuadraticModularNet(p=11, width=8, embedding=embedding)
        loss = ((model(d.x_train) - 1.0) ** 2).mean()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_sweep_over_weight_decay_and_noise_equals_separate_runs():
    clean = data.modular_arithmetic(13, train_fraction=0.6, seed=1)
    members = [{"weight_decay": 0.0, "noise_rate": 0.3}, {"weight_decay": 2.0, "noise_rate": 0.5},
               {"weight_decay": 5.0, "noise_rate": 0.0, "seed": 3}]
    common = dict(loss="mse", optimizer="adamw", lr=1e-2, batch_size=None, steps=30, eval_every=10,
                  noise="uniform", noise_seed=2, progress=False)
    factory = lambda: models.QuadraticModularNet(13, 16)  # noqa: E731
    batched = sweep.sweep(factory, clean, members, **common)
    separate = sweep.sequential(factory, clean, members, **common)
    for m in range(len(members)):
        for split, metric in (("train", "loss"), ("test", "loss"), ("train", "acc"), ("test", "acc")):
            np.testing.assert_allclose(batched.curve(split, metric, m)[1], separate.curve(split, metric, m)[1],
                                       atol=1e-5, rtol=0)
    np.testing.assert_allclose(batched.curve("train_corrupted", "acc_true", 1)[1],
                               separate.curve("train_corrupted", "acc_true", 1)[1], atol=1e-6)
    # the unstacked models are the trained ones: their accuracy is the sweep's last measurement
    for m in range(len(members)):
        noisy = data.with_label_noise(clean, "uniform", members[m]["noise_rate"], 2)
        assert fourier.accuracies(batched.models[m], noisy)["test"] == pytest.approx(batched.final("test", "acc", m))


# ----------------------------------------------------------------- phases


@pytest.mark.parametrize("values, expected", [
    (dict(test=0.99, clean=1.0, corrupted=0.98, corrupted_true=0.01), "coexistence"),
    (dict(test=1.0, clean=1.0, corrupted=0.01, corrupted_true=0.97), "full inversion"),
    (dict(test=1.0, clean=1.0, corrupted=0.45, corrupted_true=0.5), "partial inversion"),
    (dict(test=0.03, clean=1.0, corrupted=1.0, corrupted_true=0.0), "memorization"),
    (dict(test=0.2, clean=0.95, corrupted=0.3, corrupted_true=0.1), "confusion"),
    (dict(test=0.01, clean=0.02, corrupted=0.01, corrupted_true=0.01), "forgetting"),
    (dict(test=0.99, clean=1.0), "generalization"),
    (dict(test=0.99, clean=1.0, corrupted=float("nan"), corrupted_true=float("nan")), "generalization"),
    (dict(test=0.1, clean=1.0), "memorization"),
])
def test_phase_classifier(values, expected):
    assert grokking.phase(**values) == expected
    assert expected in grokking.PHASES


def test_phase_thresholds_and_errors():
    values = dict(test=0.85, clean=1.0, corrupted=1.0, corrupted_true=0.0)
    assert grokking.phase(**values) == "coexistence"
    assert grokking.phase(**values, generalizes=0.9) == "memorization"
    assert grokking.phase(**{**values, "test": 0.79}) == "memorization"
    with pytest.raises(ValueError, match="test accuracy"):
        grokking.phase(test=1.5, clean=1.0)
    with pytest.raises(ValueError, match="generalizes"):
        grokking.phase(test=0.5, clean=1.0, generalizes=0.0)
    assert grokking.full_inversion_accuracy(0.35, 97) == pytest.approx(0.65 + 0.35 / 97)


def test_phase_of_a_history_and_the_table():
    from tdlab.core.history import History

    history = History(knobs=[{"weight_decay": 0.0, "noise_rate": 0.3}, {"weight_decay": 5.0, "noise_rate": 0.3}],
                      diverged_at=[None, None])
    finals = [(0.98, 1.0, 0.99, 0.0), (1.0, 1.0, 0.02, 0.95)]
    for member, (test, clean, corrupted, true) in enumerate(finals):
        for split, metric, value in (("test", "acc", test), ("train_clean", "acc", clean),
                                     ("train_corrupted", "acc", corrupted), ("train_corrupted", "acc_true", true)):
            history.log(0, split, metric, 0.0, member)
            history.log(100, split, metric, value, member)
    assert grokking.phase_of(history, 0) == "coexistence"
    assert grokking.phase_of(history, 1) == "full inversion"
    table = grokking.phase_table(history)
    assert list(table.phase) == ["coexistence", "full inversion"]
    ax = grokking.plot_phases(table)
    cells = ax.collections[0].get_array()                 # seaborn's one QuadMesh: 1 noise rate x 2 weight decays
    assert cells.size == 2 and list(np.ravel(cells)) == [0, 1]   # coloured coexistence, full inversion
    assert sorted(t.get_text() for t in ax.texts) == ["100", "98"]          # the test accuracies in %
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["coexistence", "full inversion"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "5"]
    with pytest.raises(ValueError, match="without a colour"):
        grokking.plot_phases(table.assign(phase="odd"))
    with pytest.raises(ValueError, match="did not vary"):
        grokking.phase_table(history, x="lr")
