"""PS-KD and label smoothing against naive formulas (values and gradients), the α_t ramp over the
loop's epochs, per-member coefficients, and the batched run against separate runs."""
import math

import numpy as np
import pytest
import torch

from tdlab.core import data, engine, losses, models, sweep


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def naive_soft_ce(z, soft):
    """−Σ_c ỹ_c log softmax(z)_c for one example, from exp and log."""
    total = sum(math.exp(v) for v in z)
    return -sum(t * (v - math.log(total)) for t, v in zip(soft, z))


def smoothed(y, classes, epsilon):
    return [(1 - epsilon) * (c == y) + epsilon / classes for c in range(classes)]


def finite_differences(function, logits, h=1e-6):
    numeric = torch.zeros_like(logits)
    for i in range(logits.shape[0]):
        for k in range(logits.shape[1]):
            up, down = logits.clone(), logits.clone()
            up[i, k] += h
            down[i, k] -= h
            numeric[i, k] = (function(up) - function(down)) / (2 * h)
    return numeric


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_naive_formula_torch_and_gradient(epsilon):
    gen = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(7, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 5, (7,), generator=gen)
    loss = losses.get_loss("label_smoothing", smoothing=epsilon)

    def naive(z):
        return sum(naive_soft_ce(row, smoothed(y, 5, epsilon)) for row, y in zip(z.tolist(), targets.tolist())) / 7

    value = loss(logits, targets)
    assert value.item() == pytest.approx(naive(logits.detach()), rel=1e-12)
    assert value.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, targets, label_smoothing=epsilon)
                                         .item(), rel=1e-12)
    (gradient,) = torch.autograd.grad(value, logits)
    torch.testing.assert_close(gradient, finite_differences(naive, logits.detach()), atol=1e-7, rtol=1e-5)


class NaivePSKD:
    """PS-KD example by example, as the official main.py: a buffer of previous softmax outputs, set to
    the one-hot label when an example is first seen, α_t = α_T (t + 1) / T."""

    def __init__(self, n, alpha_T, epsilon=0.0):
        self.previous, self.alpha_T, self.epsilon = [None] * n, alpha_T, epsilon

    def targets(self, targets, index, classes, epoch, epochs):
        alpha = self.alpha_T * (epoch + 1) / epochs
        out = []
        for y, i in zip(targets.tolist(), index.tolist()):
            label = smoothed(y, classes, self.epsilon)
            previous = label if self.previous[i] is None else self.previous[i]
            out.append([(1 - alpha) * a + alpha * b for a, b in zip(label, previous)])
        return out

    def __call__(self, logits, targets, index, epoch, epochs):
        soft = self.targets(targets, index, logits.shape[1], epoch, epochs)
        value = sum(naive_soft_ce(z, t) for z, t in zip(logits.tolist(), soft)) / len(soft)
        for z, i in zip(logits.tolist(), index.tolist()):
            total = sum(math.exp(v) for v in z)
            self.previous[i] = [math.exp(v) / total for v in z]
        return value, soft


@pytest.mark.parametrize("alpha_T,epsilon", [(0.8, 0.0), (0.5, 0.1), (0.0, 0.0)])
def test_pskd_matches_naive_over_epochs_values_and_gradients(alpha_T, epsilon):
    gen = torch.Generator().manual_seed(1)
    n, classes, batch, epoch_length, steps = 10, 4, 4, 2, 8          # 4 epochs of 2 batches; 2 examples a step left out
    ours, naive = losses.PSKD(alpha_T=alpha_T, smoothing=epsilon), NaivePSKD(n, alpha_T, epsilon)
    ours.setup(n, classes)
    for step in range(1, steps + 1):
        ours.at_step(step, steps, epoch_length)
        epoch = (step - 1) // epoch_length
        assert ours.alpha_t == pytest.approx(alpha_T * (epoch + 1) / 4)
        index = torch.randperm(n, generator=gen)[:batch]
        logits = (2 * torch.randn(batch, classes, generator=gen, dtype=torch.float64)).requires_grad_()
        targets = torch.randint(0, classes, (batch,), generator=gen)
        expected, soft = naive(logits.detach(), targets, index, epoch, 4)
        value = ours(logits, targets, index)
        assert value.item() == pytest.approx(expected, rel=1e-6)
        # the gradient is that of the naive formula with the targets held fixed (they are detached)
        (gradient,) = torch.autograd.grad(value, logits)
        fixed = lambda z: sum(naive_soft_ce(r, t) for r, t in zip(z.tolist(), soft)) / batch  # noqa: E731
        torch.testing.assert_close(gradient, finite_differences(fixed, logits.detach()), atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(gradient, (torch.softmax(logits.detach(), -1)
                                              - torch.tensor(soft, dtype=torch.float64)) / batch, atol=1e-6, rtol=1e-4)
    seen = [i for i in range(n) if naive.previous[i] is not None]
    torch.testing.assert_close(ours.predictions[0, seen].double(),
                               torch.tensor([naive.previous[i] for i in seen], dtype=torch.float64), atol=1e-6, rtol=0)


def test_pskd_special_cases_are_cross_entropy_and_label_smoothing():
    gen = torch.Generator().manual_seed(2)
    logits, targets, index = torch.randn(6, 5, generator=gen), torch.randint(0, 5, (6,), generator=gen), torch.arange(6)
    for alpha_T, epsilon, reference in ((0.0, 0.0, losses.CrossEntropy()), (0.0, 0.2, losses.LabelSmoothing(0.2))):
        loss = losses.PSKD(alpha_T=alpha_T, smoothing=epsilon)
        loss.setup(6, 5)
        for step in (1, 5):                      # before and after the buffer fills: α = 0 ignores it
            loss.at_step(step, 10, 1)
            assert loss(logits, targets, index).item() == pytest.approx(reference(logits, targets).item(), rel=1e-6)
    # the first epoch trains on the labels: PS-KD's first call is cross-entropy whatever α_T
    first = losses.PSKD(alpha_T=0.8)
    first.setup(6, 5)
    first.at_step(1, 10, 1)
    assert first(logits, targets, index).item() == pytest.approx(losses.cross_entropy(logits, targets).item(),
                                                                 rel=1e-6)


def test_the_loop_tells_the_loss_its_epoch(digits):
    seen = []

    class Spy(losses.CrossEntropy):
        def at_step(self, step, steps, epoch_length):
            seen.append((step, steps, epoch_length))

    engine.run(lambda: models.MLP(64, 10, width=8, depth=1), digits, [{}], loss=Spy(), steps=25, batch_size=100,
               eval_every=25, progress=False)
    assert seen == [(s, 25, digits.num_train // 100) for s in range(1, 26)]
    assert engine.steps_per_epoch(1257, 64) == 19 and engine.steps_per_epoch(1257, None) == 1
    loss = losses.PSKD(alpha_T=0.6)
    loss.at_step(25, 25, 12)                     # ⌈25 / 12⌉ = 3 epochs; step 25 is in the third
    assert loss.alpha_t == pytest.approx(0.6)
    loss.at_step(12, 25, 12)
    assert loss.alpha_t == pytest.approx(0.2)


def test_batched_pskd_with_per_member_noise_and_alpha_equals_separate_runs(digits):
    members = [{"alpha_T": 0.0, "smoothing": 0.0, "noise_rate": 0.3}, {"alpha_T": 0.0, "smoothing": 0.1},
               {"alpha_T": 0.8, "noise_rate": 0.3}, {"alpha_T": 0.5, "noise_rate": 0.0, "seed": 1}]
    common = dict(loss="pskd", steps=60, eval_every=20, batch_size=128, data_seed=2, noise="symmetric",
                  noise_rate=0.0, progress=False)
    mlp = lambda: models.MLP(64, 10, width=24, depth=2)  # noqa: E731
    batched = sweep.sweep(mlp, digits, members, **common)
    separate = sweep.sequential(mlp, digits, members, **common)
    for m in range(len(members)):
        for split in ("train", "test"):
            np.testing.assert_allclose(batched.curve(split, "loss", m)[1], separate.curve(split, "loss", m)[1],
                                       atol=1e-5, rtol=0)
    assert [k["alpha_T"] for k in batched.knobs] == [0.0, 0.0, 0.8, 0.5]
    assert batched.knobs[1]["smoothing"] == 0.1 and batched.knobs[0]["loss"] == "pskd"


def test_bad_input():
    with pytest.raises(ValueError, match="alpha_T"):
        losses.PSKD(alpha_T=1.5)
    with pytest.raises(ValueError, match="smoothing"):
        losses.LabelSmoothing(-0.1)
    with pytest.raises(RuntimeError, match="setup"):
        losses.PSKD()(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    loss = losses.PSKD()
    loss.setup(4, 3)
    with pytest.raises(ValueError, match="index"):
        loss(torch.randn(2, 3), torch.tensor([0, 1]))


def test_uniform_teacher_is_label_smoothing_with_the_alpha_ramp():
    """uniform_teacher = 1: targets (1 − α_t)·e_y + α_t/C at every epoch — label smoothing on PS-KD's ramp
    (the control that isolates the self-teacher); per member, next to PS-KD itself."""
    gen = torch.Generator().manual_seed(3)
    n, classes, epoch_length, steps = 6, 5, 1, 4
    loss = losses.PSKD(alpha_T=0.8, uniform_teacher=torch.tensor([1.0, 0.0]))
    loss.setup(n, classes, members=2)
    index = torch.arange(n)
    for step in range(1, steps + 1):
        loss.at_step(step, steps, epoch_length)
        alpha = 0.8 * step / steps
        logits = torch.randn(2, n, classes, generator=gen, dtype=torch.float64)
        targets = torch.randint(0, classes, (n,), generator=gen)
        value = loss(logits, targets.expand(2, -1), index)
        ramp = losses.LabelSmoothing(alpha)(logits[0], targets)
        assert value[0].item() == pytest.approx(ramp.item(), rel=1e-6)
        if step == 1:                                  # PS-KD's first epoch: the labels alone
            assert value[1].item() == pytest.approx(losses.cross_entropy(logits[1], targets).item(), rel=1e-6)
