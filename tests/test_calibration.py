"""ECE, reliability bins and NLL against naive loops (the PS-KD code's ``metric_ece_aurc_eaurc``)."""
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tdlab.methods.noisy_labels import calibration
from tdlab.core import data, engine, models
from tdlab.book import plots


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def naive_bins(probs, labels, bins):
    """Equal-width bins (lower, upper] of the top probability, example by example: (count, acc, conf) per bin."""
    out = []
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        chosen = [(max(p), p.index(max(p)) == y) for p, y in zip(probs, labels) if lower < max(p) <= upper]
        if chosen:
            out.append((len(chosen), sum(c for _, c in chosen) / len(chosen), sum(q for q, _ in chosen) / len(chosen)))
        else:
            out.append((0, 0.0, 0.0))
    return out


def naive_ece(probs, labels, bins):
    return sum(n * abs(acc - conf) for n, acc, conf in naive_bins(probs, labels, bins)) / len(labels)


def random_logits(members, n, classes, seed, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(members, n, classes, generator=gen, dtype=torch.float64),
            torch.randint(0, classes, (members, n), generator=gen))


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_and_bins_match_naive_loop(bins):
    logits, labels = random_logits(3, 200, 6, seed=bins)
    ece = calibration.expected_calibration_error(logits, labels, bins)
    bins_ = calibration.reliability(logits, labels, bins)
    assert ece.shape == (3,) and bins_.count.shape == (3, bins)
    for m in range(3):
        probs = torch.softmax(logits[m], -1).tolist()
        expected = naive_bins(probs, labels[m].tolist(), bins)
        assert ece[m].item() == pytest.approx(naive_ece(probs, labels[m].tolist(), bins), abs=1e-6)
        assert bins_.member(m).ece == pytest.approx(ece[m].item(), abs=1e-6)
        for b, (n, acc, conf) in enumerate(expected):
            assert bins_.count[m, b] == n
            if n:
                assert bins_.accuracy[m, b] == pytest.approx(acc) and bins_.confidence[m, b] == pytest.approx(conf)
            else:
                assert math.isnan(bins_.accuracy[m, b]) and math.isnan(bins_.confidence[m, b])


def test_ece_of_one_model_and_known_cases():
    logits, labels = random_logits(1, 100, 4, seed=0)
    single = calibration.expected_calibration_error(logits[0], labels[0])
    assert single.shape == () and single.item() == pytest.approx(
        calibration.expected_calibration_error(logits, labels)[0].item())
    # always right and fully confident: calibrated; uniform over C classes, right 1/C of the time: calibrated
    confident = torch.tensor([[50.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    assert calibration.expected_calibration_error(confident, torch.tensor([0, 1])).item() == pytest.approx(0, abs=1e-6)
    assert calibration.expected_calibration_error(confident, torch.tensor([1, 0])).item() == pytest.approx(1, abs=1e-6)
    # a bin edge belongs to the bin below it, as in the PS-KD code: confidence exactly 1/2 is in (0.4, 0.5]
    half = torch.log(torch.tensor([[0.5, 0.25, 0.25]], dtype=torch.float64))
    assert calibration.reliability(half, torch.tensor([0]), 10).count[4] == 1


def test_nll_and_confidence():
    logits, labels = random_logits(2, 50, 5, seed=3)
    for m in range(2):
        naive = -sum(torch.log_softmax(z, -1)[y].item() for z, y in zip(logits[m], labels[m])) / 50
        assert calibration.nll(logits, labels)[m].item() == pytest.approx(naive, rel=1e-9)
        assert calibration.mean_confidence(logits)[m].item() == pytest.approx(
            torch.softmax(logits[m], -1).max(-1).values.mean().item())


def test_monitor_logs_ece_of_the_test_logits(digits):
    history = engine.run(lambda: models.MLP(64, 10, width=16, depth=1), digits, [{"seed": 0}, {"seed": 1}],
                         steps=20, eval_every=10, batch_size=64, monitors=[calibration.monitor()], progress=False)
    for m in range(2):
        z = history.models[m](digits.x_test).detach()
        assert history.final("test", "ece", m) == pytest.approx(
            calibration.expected_calibration_error(z, digits.y_test).item(), abs=1e-4)
        assert 0 < history.final("test", "confidence", m) <= 1
    with pytest.raises(ValueError, match="bins"):
        calibration.monitor(bins=0)


def test_reliability_diagrams_draw_one_panel_per_run():
    logits, labels = random_logits(2, 300, 10, seed=5)
    bins = calibration.reliability(logits, labels)
    fig = plots.reliability_diagrams({"a": bins.member(0), "b": bins.member(1)}, title="t")
    assert len(fig.axes) == 4
    assert fig.axes[0].get_title().startswith("a\nECE")
    np.testing.assert_allclose(sum(p.get_height() for p in fig.axes[2].patches), 100.0)
    plt.close(fig)


def test_reliability_diagrams_wrap_four_runs_into_two_legible_rows():
    logits, labels = random_logits(4, 300, 10, seed=6)
    bins = calibration.reliability(logits, labels)
    fig = plots.reliability_diagrams({name: bins.member(i) for i, name in enumerate("abcd")}, title="t")
    assert tuple(fig.get_size_inches()) == pytest.approx((6.6, 8.8))        # two runs a row, two rows
    fig.canvas.draw()                                       # the layout engine places the panels
    tops = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title()[0] for ax in tops] == list("abcd")
    (_, top), (_, bottom) = tops[2].get_position().get_points(), tops[0].get_position().get_points()
    assert top[1] < bottom[1]                               # c sits below a
    np.testing.assert_allclose(sum(p.get_height() for p in fig.axes[6].patches), 100.0)   # c's histogram
    assert plots.illegible_text(fig) == []
    plt.close(fig)
    three = plots.reliability_diagrams({name: bins.member(i) for i, name in enumerate("abc")})
    assert three.get_size_inches()[0] == pytest.approx(9.9) and len(three.axes) == 6   # up to three: one row
    plt.close(three)


def test_calibration_curves_and_explorer_show_ece_in_percent(digits):
    history = engine.run(lambda: models.MLP(64, 10, width=16, depth=1), digits, [{"lr": 1e-3}, {"lr": 3e-3}],
                         steps=20, eval_every=10, batch_size=64, monitors=[calibration.monitor()], progress=False)
    ax = plots.calibration_curves(history.member(0))
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"test accuracy", "test mean confidence max p", "test ECE"}
    np.testing.assert_allclose(lines["test ECE"].get_ydata(), history.curve("test", "ece", 0)[1] * 100)
    plt.close(ax.figure)
    page = plots.explorer(history, ["lr"], curves=[("test", "acc"), ("test", "ece")],
                          colors={("test", "ece"): "#123456"})._repr_html_()
    assert "#123456" in page and '"y":[0,100]' in page


def test_label_mass_matches_the_targets_formula_and_the_monitor(digits):
    from tdlab.core import losses
    gen = torch.Generator().manual_seed(3)
    loss = losses.PSKD(alpha_T=torch.tensor([0.0, 0.0, 0.8, 0.8]), smoothing=torch.tensor([0.0, 0.1, 0.0, 0.0]),
                       uniform_teacher=torch.tensor([0.0, 0.0, 0.0, 1.0]))
    n, classes = 6, 5
    loss.setup(n, classes, members=4)
    loss.at_step(5, 10, 2)                                         # epoch 2 of 5: α_t = 0.6·α_T
    targets = torch.randint(0, classes, (n,), generator=gen)
    loss(torch.randn(4, n, classes, generator=gen), targets.expand(4, n), torch.arange(n))
    mass = calibration.label_mass(loss, targets)
    previous = loss.predictions[2, torch.arange(n), targets]
    torch.testing.assert_close(mass[0], torch.ones(n))                         # cross-entropy
    torch.testing.assert_close(mass[1], torch.full((n,), 0.9 + 0.1 / classes))  # label smoothing
    torch.testing.assert_close(mass[2], (1 - 0.48) + 0.48 * previous)          # PS-KD
    torch.testing.assert_close(mass[3], torch.full((n,), 1 - 0.48 * (1 - 1 / classes)))   # uniform teacher
    history = engine.run(lambda: models.MLP(64, 10, width=16, depth=1), digits,
                         [{"seed": 0, "alpha_T": 0.0}, {"seed": 0, "alpha_T": 0.8, "uniform_teacher": 1.0}],
                         steps=30, eval_every=10, batch_size=64, loss="pskd", monitors=[calibration.label_mass_monitor()],
                         progress=False)
    assert history.final("train", "label_mass", 0) == pytest.approx(1.0)
    epoch = len(digits.y_train) // 64                               # 30 steps: the last of two epochs, α_t = α_T
    assert -(-30 // epoch) == 2 and 30 > epoch
    assert history.final("train", "label_mass", 1) == pytest.approx(1 - 0.8 * (1 - 1 / 10))


def test_label_mass_counts_an_example_not_yet_trained_on_with_its_label():
    from tdlab.core import losses
    gen = torch.Generator().manual_seed(4)
    n, classes = 6, 5
    loss = losses.PSKD(alpha_T=torch.tensor([0.8, 0.8]), smoothing=torch.tensor([0.0, 0.1]))
    loss.setup(n, classes, members=2)
    loss.at_step(1, 10, 5)                                         # the first epoch: α_t = α_T / 2
    targets = torch.randint(0, classes, (n,), generator=gen)
    half = torch.arange(3)                                         # trained on: the first three examples only
    loss(torch.randn(2, 3, classes, generator=gen), targets[half].expand(2, 3), half)
    mass = calibration.label_mass(loss, targets)
    previous = loss.predictions[:, half, targets[half]]
    for member, epsilon in enumerate((0.0, 0.1)):
        label = 1 - epsilon + epsilon / classes
        torch.testing.assert_close(mass[member, :3], (1 - 0.4) * label + 0.4 * previous[member])
        torch.testing.assert_close(mass[member, 3:], torch.full((3,), label))   # its label as P_i, as the loss


def test_uniform_alpha_inverts_the_uniform_teachers_mass():
    for classes in (10, 100):
        for alpha in (0.0, 0.15, 0.4, 0.8):
            mass = 1 - alpha * (1 - 1 / classes)
            assert calibration.uniform_alpha(mass, classes) == pytest.approx(alpha)
    with pytest.raises(ValueError):
        calibration.uniform_alpha(1.2, 10)
