"""Multi-sample dropout (tdlab.methods.regularization.multisample) against naive computations: the loss against a loop over
samples and examples, the model's M copies against the masks applied one example at a time, the
stacked path against the single one, the loop's runs against plain MLP runs and separate runs,
the recipe's knobs, the step clock on a fake clock, and the steps-to-a-loss interpolation."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdlab.core import data, flat, history, losses, models, sweep
from tdlab.methods.regularization import multisample


MLP16 = multisample.mlp(64, 10, width=16, depth=1)    # digits: 64 features, 10 classes


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def naive_ce(row, label):
    """−log softmax(z)_y of one example, from exp and log."""
    return -(row[label] - math.log(sum(math.exp(v) for v in row)))


# ----------------------------------------------------------------- the loss


@pytest.mark.parametrize("leading", [(), (3,)])
def test_loss_is_the_mean_of_the_per_sample_cross_entropies(leading):
    gen = torch.Generator().manual_seed(0)
    M, B, C = 4, 6, 5
    logits = 3 * torch.randn(*leading, M, B, C, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, C, (*leading, B), generator=gen)
    value = multisample.multisample_cross_entropy(logits, targets)
    assert value.shape == leading
    for e in range(leading[0] if leading else 1):
        z = logits[e] if leading else logits
        y = targets[e] if leading else targets
        naive = sum(naive_ce(z[k, i].tolist(), int(y[i])) for k in range(M) for i in range(B)) / (M * B)
        got = value[e] if leading else value
        assert got.item() == pytest.approx(naive, rel=1e-12)


def test_logit_averaging_is_the_cross_entropy_of_the_mean_logits_and_differs():
    gen = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(2, 4, 6, 5, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 5, (2, 6), generator=gen)
    averaged = multisample.multisample_cross_entropy(logits, targets, average="logits")
    for e in range(2):
        mean = logits[e].mean(0)
        naive = sum(naive_ce(mean[i].tolist(), int(targets[e, i])) for i in range(6)) / 6
        assert averaged[e].item() == pytest.approx(naive, rel=1e-12)
    # Jensen: the loss of the mean logits is at most the mean of the losses (cross-entropy is convex in z)
    assert (averaged <= multisample.multisample_cross_entropy(logits, targets) + 1e-12).all()
    assert not torch.allclose(averaged, multisample.multisample_cross_entropy(logits, targets))


def test_loss_without_a_sample_axis_is_cross_entropy_and_gradients_match_autograd_of_the_naive_sum():
    gen = torch.Generator().manual_seed(2)
    plain = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 5, (2, 6), generator=gen)
    torch.testing.assert_close(multisample.multisample_cross_entropy(plain, targets),
                               losses.cross_entropy(plain, targets))
    logits = torch.randn(2, 3, 6, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    grad, = torch.autograd.grad(multisample.multisample_cross_entropy(logits, targets).sum(), logits)
    reference = logits.detach().clone().requires_grad_()
    naive = sum(F.cross_entropy(reference[e, k], targets[e]) for e in range(2) for k in range(3)) / 3
    expected, = torch.autograd.grad(naive, reference)
    torch.testing.assert_close(grad, expected)
    with pytest.raises(ValueError, match="must be"):
        multisample.multisample_cross_entropy(torch.zeros(2, 2, 3, 6, 5), targets)
    with pytest.raises(ValueError, match="average"):
        multisample.MultiSampleCrossEntropy("median")


# ----------------------------------------------------------------- masks and the model


@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5])
def test_masks_are_inverted_dropout(rate):
    torch.manual_seed(0)
    masks = multisample.dropout_masks(2, 50, 8, 100, rate)
    assert masks.shape == (2, 50, 8, 100)
    kept = masks[masks != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - rate)))
    assert (masks == 0).float().mean().item() == pytest.approx(rate, abs=0.01)
    assert masks.mean().item() == pytest.approx(1.0, abs=0.02)
    # every one of the four 16-bit draws a 64-bit integer gives is uniform (a sign bit always 0 would not be)
    for position in range(4):
        assert (masks.flatten()[position::4] == 0).float().mean().item() == pytest.approx(rate, abs=0.01)


def test_rates_are_rounded_to_two_to_the_minus_16():
    torch.manual_seed(1)
    masks = multisample.dropout_masks(1, 100, 10, 1000, 0.1)
    assert masks.max().item() == pytest.approx(2**16 / (2**16 - round(0.1 * 2**16)), rel=1e-6)
    assert (masks == 0).float().mean().item() == pytest.approx(0.1, abs=0.003)
    with pytest.raises(ValueError):
        multisample.dropout_masks(1, 2, 2, 2, 1.0)


def naive_outputs(model, x, masks):
    """Sample k of example i: the output layer on (mask_k,i ⊙ trunk(x_i)), one example at a time."""
    head = model.net[-1]
    out = torch.zeros(masks.shape[1], x.shape[0], head.out_features, dtype=x.dtype)
    for i in range(x.shape[0]):
        h = model.net[:-1](x[i:i + 1])[0]
        for k in range(masks.shape[1]):
            out[k, i] = head.weight @ (masks[:, k, i] * h) + head.bias
    return out


def test_model_samples_m_masked_copies_through_one_head_and_is_an_mlp_in_eval_mode():
    torch.manual_seed(3)
    model = multisample.MultiSampleMLP(7, 4, width=9, depth=2, samples=3, dropout=0.5)
    torch.manual_seed(3)
    plain = models.MLP(7, 4, width=9, depth=2)                  # the same initialisation
    x = torch.randn(5, 7)
    torch.manual_seed(11)
    out = model(x)
    torch.manual_seed(11)
    masks = multisample.dropout_masks(1, 9, 3, 5, 0.5)[0]
    assert out.shape == (3, 5, 4)
    torch.testing.assert_close(out, naive_outputs(model, x, masks))
    assert not torch.allclose(out[0], out[1])                   # different masks, different samples
    model.eval()
    torch.testing.assert_close(model(x), plain(x))              # no dropout at test time: the plain MLP


def test_stacked_forward_equals_each_member_with_its_own_masks():
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        members.append(multisample.MultiSampleMLP(6, 4, width=8, depth=1, samples=2, dropout=0.3))
    _, params, _ = flat.stack(members)
    x = torch.randn(5, 6)
    torch.manual_seed(5)
    out = members[0].forward_stacked(params, x)
    torch.manual_seed(5)
    masks = multisample.dropout_masks(3, 8, 2, 5, 0.3)
    assert out.shape == (3, 2, 5, 4)
    for e, model in enumerate(members):
        torch.testing.assert_close(out[e], naive_outputs(model, x, masks[e]))
    members[0].eval()
    evaluated = members[0].forward_stacked(params, x)
    assert evaluated.shape == (3, 5, 4)
    for e, model in enumerate(members):
        torch.testing.assert_close(evaluated[e], model.eval()(x))


@pytest.mark.parametrize("samples", [1, 8])
def test_the_trunk_runs_once_whatever_m(samples, monkeypatch):
    """The paper's cost argument as a structural fact: at any M the layers before the dropout run once, on
    the B examples of a batch (the single, the wrapped and the stacked path), and the head once, on all
    M·B copies."""
    torch.manual_seed(0)
    model = multisample.MultiSampleMLP(6, 3, width=8, depth=2, samples=samples, dropout=0.5)
    linear = [i for i, layer in enumerate(model.net) if isinstance(layer, torch.nn.Linear)]
    calls = []
    for index in linear:
        model.net[index].register_forward_hook(
            lambda module, args, out, index=index: calls.append((index, args[0].numel() // args[0].shape[-1])))
    expected = [(linear[0], 5), (linear[1], 5), (linear[2], samples * 5)]
    x = torch.randn(5, 6)
    model(x)
    assert calls == expected
    calls.clear()
    multisample.MultiSample(model.net[:-1], model.net[-1], samples=samples, dropout=0.5)(x)
    assert calls == expected
    stacked = []
    real = multisample._linear
    monkeypatch.setattr(multisample, "_linear",
                        lambda params, index, h: stacked.append((index, h.shape[2])) or real(params, index, h))
    _, params, _ = flat.stack([model])
    model.forward_stacked(params, x)
    assert stacked == expected


def test_multiply_adds_count_the_trunk_once_and_the_masks_and_head_m_times():
    one = multisample.MultiSampleMLP(40, 10, width=128, depth=2, samples=1)
    eight = multisample.MultiSampleMLP(40, 10, width=128, depth=2, samples=8)
    assert multisample.multiply_adds(one) == 40 * 128 + 128 * 128 + 128 + 128 * 10
    assert multisample.multiply_adds(eight) == 40 * 128 + 128 * 128 + 8 * (128 + 128 * 10)
    x = torch.randn(1, 40)                          # the same count from the products a forward pass makes
    products = []
    for layer in eight.net:
        if isinstance(layer, torch.nn.Linear):
            layer.register_forward_hook(lambda module, args, out: products.append(
                args[0].numel() // args[0].shape[-1] * module.in_features * module.out_features))
    eight(x)
    assert sum(products) + 8 * 128 == multisample.multiply_adds(eight)


def test_generic_wrapper_equals_the_mlp_and_the_resnet_builds():
    torch.manual_seed(4)
    model = multisample.MultiSampleMLP(6, 3, width=8, depth=1, samples=4, dropout=0.4)
    wrapped = multisample.MultiSample(model.net[:-1], model.net[-1], samples=4, dropout=0.4)
    x = torch.randn(5, 6)
    torch.manual_seed(9)
    a = model(x)
    torch.manual_seed(9)
    torch.testing.assert_close(wrapped(x), a)
    net = multisample.resnet18(10, 3)(2, 0.5)
    assert isinstance(net.head, torch.nn.Linear) and net.head.in_features == 512
    assert net(torch.randn(3, 3, 32, 32)).shape == (2, 3, 10)
    assert net.eval()(torch.randn(3, 3, 32, 32)).shape == (3, 10)


# ----------------------------------------------------------------- in the training loop


def test_one_sample_without_dropout_trains_exactly_as_a_plain_mlp(digits):
    settings = dict(optimizer="adamw", lr=3e-3, steps=30, batch_size=64, eval_every=10, progress=False)
    members = [{"seed": 0}, {"seed": 1}]
    ours = multisample.recipe(digits, MLP16, samples=1, dropout=0.0, **settings).sweep(members)
    plain = sweep.sweep(lambda: models.MLP(64, 10, width=16, depth=1), digits, members, **settings)
    for m in range(2):
        for split in ("train", "test"):
            np.testing.assert_allclose(ours.curve(split, "loss", m)[1], plain.curve(split, "loss", m)[1], rtol=1e-5)


def test_m_copies_without_dropout_are_one_copy(digits):
    """With p = 0 the M copies are equal, so their mean loss is the one copy's loss."""
    recipe = multisample.recipe(digits, MLP16, dropout=0.0, optimizer="adamw", lr=3e-3,
                                steps=20, batch_size=64, eval_every=10, progress=False)
    one, four = recipe(samples=1), recipe(samples=4)
    np.testing.assert_allclose(four.curve("train", "loss")[1], one.curve("train", "loss")[1], rtol=1e-5)


def test_stacked_run_equals_separate_runs_with_dropout(digits):
    """The loop's stacked path and one member at a time draw the same masks when there is one member
    (the same global generator, the same mask layout)."""
    recipe = multisample.recipe(digits, MLP16, samples=3, dropout=0.5, optimizer="adamw",
                                lr=3e-3, steps=20, batch_size=64, eval_every=10, progress=False)
    stacked = recipe.sweep([{"seed": 2}], batched=True)
    single = recipe.sweep([{"seed": 2}], batched=False)
    np.testing.assert_allclose(stacked.curve("train", "loss")[1], single.curve("train", "loss")[1], rtol=1e-5)


def test_recipe_knobs_are_recorded_and_shape_the_model(digits):
    recipe = multisample.recipe(digits, MLP16, samples=8, dropout=0.5, optimizer="adamw",
                                steps=5, batch_size=64, eval_every=5, progress=False)
    grid = recipe.sweep([{"samples": 1, "seed": 0}, {"samples": 4, "seed": 0}, {"samples": 4, "dropout": 0.2},
                         {"samples": 2, "average": "logits"}])
    assert [k["samples"] for k in grid.knobs] == [1, 4, 4, 2]
    assert [k["dropout"] for k in grid.knobs] == [0.5, 0.5, 0.2, 0.5]
    assert [k["average"] for k in grid.knobs] == ["loss", "loss", "loss", "logits"]
    assert [(m.samples, m.dropout) for m in grid.models] == [(1, 0.5), (4, 0.5), (4, 0.2), (2, 0.5)]
    assert recipe().knobs[0]["samples"] == 8
    assert recipe.sweep([{"samples": 2}]).models[0].samples == 2        # the factory follows every call
    with pytest.raises(ValueError, match="samples"):
        recipe(samples=0)


# ----------------------------------------------------------------- time and steps


def test_clock_leaves_out_the_evaluations(monkeypatch):
    # steps start at these times; the loop evaluated after steps 2 and 4 (eval_every=2)
    starts = iter([0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0])
    cpu = iter([0.0, 0.5, 5.0, 5.5, 10.0, 10.5, 15.0])          # the process's own share
    monkeypatch.setattr(multisample.time, "perf_counter", lambda: next(starts))
    monkeypatch.setattr(multisample.time, "process_time", lambda: next(cpu))
    clock = multisample.StepClock(eval_every=2)
    for step in range(1, 7):
        clock(multisample.Batch(None, None, None, step))
    assert clock.step_seconds() == 1.0                     # 1, 9 (eval), 1, 9 (eval), 1, last unknown
    assert clock.step_seconds(cpu=True) == 0.5
    np.testing.assert_allclose(clock.durations(cpu=True), [0.5, np.nan, 0.5, np.nan, 0.5, np.nan])
    np.testing.assert_allclose(clock.seconds_at([0, 1, 2, 6]), [0, 1, 2, 6])
    clock(multisample.Batch(None, None, None, 1))          # a new run starts afresh
    assert clock.starts == [30.0]


def test_clock_passes_batches_through_its_hook_and_pools_runs(monkeypatch):
    ticks = iter(range(100))
    monkeypatch.setattr(multisample.time, "perf_counter", lambda: float(next(ticks)))
    monkeypatch.setattr(multisample.time, "process_time", lambda: 0.0)
    seen = []
    clock = multisample.StepClock(eval_every=10, then=lambda batch: seen.append(batch.step) or batch)
    batch = multisample.Batch(torch.zeros(1), torch.zeros(1), torch.zeros(1), 1)
    assert clock(batch) is batch and seen == [1]
    clock(multisample.Batch(None, None, None, 2))
    other = multisample.StepClock(eval_every=10)
    for step in (1, 2, 3):                                  # one tick apart
        other(multisample.Batch(None, None, None, step))
    np.testing.assert_allclose(other.durations(), [1, 1, np.nan])
    np.testing.assert_allclose(clock.durations(), [1, np.nan])
    assert multisample.step_cost(clock, other, cpu=False) == 1.0
    assert multisample.step_cost(clock, other) == 0.0             # no CPU time passed on this fake clock


def test_steps_to_loss_interpolates_between_evaluations():
    h = history.History()
    for step, value in [(0, 2.0), (10, 1.0), (20, 0.5), (30, 0.2)]:
        h.log(step, "train", "loss", value)
    assert multisample.steps_to_loss(h, 0.75) == pytest.approx(15.0)
    assert multisample.steps_to_loss(h, 1.0) == pytest.approx(10.0)
    assert multisample.steps_to_loss(h, 3.0) == 0.0
    assert math.isnan(multisample.steps_to_loss(h, 0.1))


def test_mean_steps_to_loss_averages_the_members_crossings():
    h = history.History(records=[], knobs=[{}, {}], diverged_at=[None, None], models=[None, None])
    for member, curve in enumerate(([(0, 2.0), (10, 1.0), (20, 0.5)], [(0, 2.0), (10, 1.5), (20, 0.5)])):
        for step, value in curve:
            h.log(step, "train", "loss", value, member)
    # member 0 reaches 1.0 at step 10; member 1 between 10 (1.5) and 20 (0.5): at 15
    assert multisample.mean_steps_to_loss(h, 1.0) == pytest.approx(12.5)
    assert multisample.mean_steps_to_loss(h, 1.0, members=[1]) == pytest.approx(15.0)
    assert math.isnan(multisample.mean_steps_to_loss(h, 0.1))


def test_clock_seconds_to_a_fractional_step_interpolates_the_training_time(monkeypatch):
    starts = iter([0.0, 1.0, 3.0, 10.0, 11.0])                 # steps took 1, 2, (eval), 1, (last)
    monkeypatch.setattr(multisample.time, "perf_counter", lambda: next(starts))
    monkeypatch.setattr(multisample.time, "process_time", lambda: 0.0)
    clock = multisample.StepClock(eval_every=3)
    for step in range(1, 6):
        clock(multisample.Batch(None, None, None, step))
    # the unknown intervals count at the median (1): elapsed 0, 1, 3, 4, 5, 6 by the end of steps 0..5
    np.testing.assert_allclose(clock.seconds_at(range(6)), [0, 1, 3, 4, 5, 6])
    assert clock.seconds_to(1.5) == pytest.approx(2.0)
    assert clock.seconds_to(2.25) == pytest.approx(3.25)
    assert clock.seconds_to(5) == pytest.approx(6.0)


def test_panel_summary_and_figure_read_one_run():
    h = history.History()
    for step, loss, acc in [(0, 2.0, 0.1), (10, 1.0, 0.8), (20, 0.5, 0.7)]:
        h.log(step, "train", "loss", loss)
        h.log(step, "test", "acc", acc)
    summary = multisample.panel_summary(h, 0.75)
    assert summary["step reaching training loss 0.75"] == pytest.approx(15.0)
    assert summary["final training loss"] == "0.500"
    assert summary["final test error"] == pytest.approx(0.3) and summary["best test error"] == pytest.approx(0.2)
    import matplotlib
    matplotlib.use("Agg")
    fig = multisample.panel_figure(h, 0.75)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()][:1] == ["training loss, no dropout"]   # only logged curves
    assert ax.get_yscale() == "log"
