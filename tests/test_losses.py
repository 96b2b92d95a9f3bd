"""Each loss against a naive, independent implementation (values and gradients)."""
import math

import pytest
import torch

from tdlab import losses


def naive_cross_entropy(logits, targets):
    total = 0.0
    for z, y in zip(logits.tolist(), targets.tolist()):
        total += -(z[y] - math.log(sum(math.exp(v) for v in z)))
    return total / len(targets)


def test_cross_entropy_matches_naive_formula_and_torch():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(17, 7, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, 7, (17,), generator=gen)
    ours = losses.cross_entropy(logits, targets)
    assert ours.item() == pytest.approx(naive_cross_entropy(logits, targets), rel=1e-12)
    assert ours.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, targets).item(), rel=1e-12)


def test_cross_entropy_gradient_is_softmax_minus_onehot():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 4, (5,), generator=gen)
    losses.cross_entropy(logits, targets).backward()
    expected = (torch.softmax(logits.detach(), -1) - torch.nn.functional.one_hot(targets, 4)) / 5
    torch.testing.assert_close(logits.grad, expected)


def test_cross_entropy_batched_over_members():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 8, 5, generator=gen)
    targets = torch.randint(0, 5, (3, 8), generator=gen)
    batched = losses.cross_entropy(logits, targets)
    assert batched.shape == (3,)
    for m in range(3):
        assert batched[m].item() == pytest.approx(losses.cross_entropy(logits[m], targets[m]).item(), rel=1e-6)


def test_mse_onehot_matches_naive():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, 4, (6,), generator=gen)
    naive = sum(sum((logits[i, c].item() - (c == targets[i].item())) ** 2 for c in range(4)) / 4
                for i in range(6)) / 6
    assert losses.mse_onehot(logits, targets).item() == pytest.approx(naive, rel=1e-12)


class NaiveELR:
    """ELR written example by example from the paper's Eq. (6) and the official code."""

    def __init__(self, n, c, lam, beta):
        self.t = [[0.0] * c for _ in range(n)]
        self.lam, self.beta = lam, beta

    def __call__(self, logits, targets, index):
        total_ce, total_reg = 0, 0
        for z, y, i in zip(logits, targets.tolist(), index.tolist()):
            p = torch.softmax(z, -1).clamp(1e-4, 1 - 1e-4)
            p_hat = (p / p.sum()).detach().tolist()
            self.t[i] = [self.beta * a + (1 - self.beta) * b for a, b in zip(self.t[i], p_hat)]
            total_ce = total_ce - torch.log_softmax(z, -1)[y]
            total_reg = total_reg + torch.log(1 - (torch.tensor(self.t[i], dtype=z.dtype) * p).sum())
        return total_ce / len(targets) + self.lam * total_reg / len(targets)


@pytest.mark.parametrize("lam,beta", [(3.0, 0.7), (1.0, 0.9), (0.0, 0.5)])
def test_elr_matches_naive_over_several_steps(lam, beta):
    gen = torch.Generator().manual_seed(4)
    n, c = 12, 5
    ours = losses.ELR(lam=lam, beta=beta)
    ours.setup(n, c)
    naive = NaiveELR(n, c, lam, beta)
    for step in range(4):  # the buffer carries over: revisit examples
        index = torch.randperm(n, generator=gen)[:6]
        logits = torch.randn(6, c, generator=gen, dtype=torch.float64) * 2
        targets = torch.randint(0, c, (6,), generator=gen)
        z1 = logits.clone().requires_grad_(True)
        z2 = logits.clone().requires_grad_(True)
        ours.targets = ours.targets.double()
        a = ours(z1, targets, index)
        b = naive(z2, targets, index)
        assert a.item() == pytest.approx(b.item(), rel=1e-10, abs=1e-12)
        a.backward()
        b.backward()
        torch.testing.assert_close(z1.grad, z2.grad)


def test_elr_per_member_coefficients_equal_separate_losses():
    gen = torch.Generator().manual_seed(5)
    lams, betas = [0.0, 1.0, 3.0], [0.5, 0.7, 0.9]
    batched = losses.ELR(lam=torch.tensor(lams), beta=torch.tensor(betas))
    batched.setup(10, 4, members=3)
    singles = [losses.ELR(lam=l, beta=b) for l, b in zip(lams, betas)]
    for s in singles:
        s.setup(10, 4)
    for _ in range(3):
        index = torch.randperm(10, generator=gen)[:5]
        logits = torch.randn(3, 5, 4, generator=gen)
        targets = torch.randint(0, 4, (3, 5), generator=gen)
        out = batched(logits, targets, index)
        for m in range(3):
            assert out[m].item() == pytest.approx(singles[m](logits[m], targets[m], index).item(), rel=1e-6)


def test_elr_bad_input():
    with pytest.raises(ValueError, match="beta"):
        losses.ELR(beta=1.0)
    with pytest.raises(ValueError, match="lam"):
        losses.ELR(lam=-1)
    loss = losses.ELR()
    with pytest.raises(RuntimeError, match="setup"):
        loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.arange(2))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("hinge")
    with pytest.raises(ValueError, match="no hyper-parameter"):
        losses.get_loss("ce", lam=1)


@pytest.mark.parametrize("shape", [(3, 10), (4000, 10), (16, 128, 10), (2, 600, 3), (700, 100), (2, 1)])
def test_class_major_softmax_equals_torch(shape):
    """The fast CPU path (class-major copy) gives torch's values and gradients, to within one
    float32 rounding (1e-6 relative: log-softmax values reach about −40 here, where one unit in
    the last place is 4e-6, and the two paths may round the last bit differently)."""
    logits = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 5).requires_grad_()
    upstream = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    for ours, reference in [(losses.log_softmax, lambda z: torch.log_softmax(z, -1)),
                            (losses.softmax, lambda z: torch.softmax(z, -1))]:
        value, expected = ours(logits), reference(logits)
        assert value.shape == expected.shape
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
        grad, = torch.autograd.grad(value, logits, upstream)
        expected_grad, = torch.autograd.grad(expected, logits, upstream)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)
