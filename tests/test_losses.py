"""Each loss against a naive, independent implementation (values and gradients)."""
import math

import pytest
import torch

from tdlab.core import losses


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


# ----------------------------------------------------------------- losses for noisy labels (issue 16)

def naive_per_example(logits, targets, formula):
    """formula(list of C floats, label) for every example, in plain Python floats."""
    return torch.tensor([formula([float(v) for v in row], int(y)) for row, y in zip(logits, targets)],
                        dtype=torch.float64)


def gce_naive(z, y, q):
    p = math.exp(z[y]) / sum(math.exp(v) for v in z)
    return (1 - p ** q) / q


def zloss_naive(z, y, a, b):
    mu = sum(z) / len(z)
    sigma = math.sqrt(sum(v * v for v in z) / len(z) - mu * mu)
    zeta = (z[y] - mu) / (sigma + 1e-12)
    return math.log1p(math.exp(a * (b - zeta))) / a


def taylor_naive(z, y):
    f = [1 + v + v * v / 2 for v in z]
    return -math.log(f[y] / sum(f))


def ldr_naive(z, y, lam, margin):
    s = [math.log1p(math.exp(v)) for v in z]
    mean = sum(s) / len(s)
    s = [v / mean for v in s]
    d = [margin * (k != y) + s[k] - s[y] for k in range(len(z))]
    return lam * math.log(sum(math.exp(v / lam) for v in d) / len(d))


@pytest.mark.parametrize("name,kwargs,formula", [
    ("gce", {"q": 0.7}, lambda z, y: gce_naive(z, y, 0.7)),
    ("gce", {"q": 1.0}, lambda z, y: gce_naive(z, y, 1.0)),
    ("zloss", {"a": 1.0, "b": 0.0}, lambda z, y: zloss_naive(z, y, 1.0, 0.0)),
    ("zloss", {"a": 3.0, "b": 2.0}, lambda z, y: zloss_naive(z, y, 3.0, 2.0)),
    ("taylor", {}, taylor_naive),
    ("ldr_kl", {"lam": 10.0, "margin": 0.1}, lambda z, y: ldr_naive(z, y, 10.0, 0.1)),
    ("ldr_kl", {"lam": 0.5, "margin": 1.0}, lambda z, y: ldr_naive(z, y, 0.5, 1.0)),
])
def test_noisy_label_losses_match_naive_formulas_and_gradients(name, kwargs, formula):
    gen = torch.Generator().manual_seed(3)
    logits = (3 * torch.randn(7, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 5, (7,), generator=gen)
    loss = losses.get_loss(name, **kwargs)
    value = loss(logits, targets)
    expected = naive_per_example(logits.detach(), targets, formula).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)
    (gradient,) = torch.autograd.grad(value, logits)
    # central differences of the naive formula, coordinate by coordinate
    h, numeric = 1e-6, torch.zeros_like(gradient)
    for i in range(logits.shape[0]):
        for k in range(logits.shape[1]):
            up, down = logits.detach().clone(), logits.detach().clone()
            up[i, k] += h
            down[i, k] -= h
            numeric[i, k] = (naive_per_example(up, targets, formula).mean()
                             - naive_per_example(down, targets, formula).mean()) / (2 * h)
    torch.testing.assert_close(gradient, numeric, atol=1e-7, rtol=1e-5)


def test_zloss_is_shift_and_scale_invariant_and_cross_entropy_is_not():
    """The Z-loss chapter's invariances (sanity, not claims): the Z-loss is unchanged by z → γz + δ, so its
    gradient is orthogonal to the logits (d/dγ L(γz) = ⟨∇L, z⟩ = 0); cross-entropy ignores a shift but not a
    scale; the squared error against the one-hot label changes under both."""
    gen = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(50, 10, generator=gen, dtype=torch.float64), torch.randint(0, 10, (50,), generator=gen)
    zloss, ce, mse = losses.ZLoss(a=2.0, b=1.5), losses.CrossEntropy(), losses.MSE()
    for gamma, delta in ((1.0, 7.0), (5.0, 0.0), (0.2, -3.0), (100.0, -10.0), (0.01, 10.0)):
        moved = gamma * logits + delta
        assert zloss(moved, targets).item() == pytest.approx(zloss(logits, targets).item(), rel=1e-9)
    assert ce(logits + 7.0, targets).item() == pytest.approx(ce(logits, targets).item(), rel=1e-9)
    assert abs(ce(5 * logits, targets).item() - ce(logits, targets).item()) > 0.1
    assert abs(mse(logits + 3.0, targets).item() - mse(logits, targets).item()) > 0.1
    z = logits.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(zloss(z, targets), z)
    assert (gradient * logits).sum(-1).abs().max().item() < 1e-12


def aldr_naive_step(z, y, lam_old, lam0, alpha, margin):
    """One example through the official ALDRLoss_V1: (loss, new λ)."""
    K = len(z)
    norm = sum(abs(v) for v in z) / K
    s = [v / norm for v in z]
    e = [math.exp(v / lam_old) for v in s]
    q = [v / sum(e) + 1e-5 for v in e]
    q = [v / sum(q) for v in q]
    kl = sum(v * math.log(K * v) for v in q)
    lam = lam0 - lam0 * kl / (alpha * math.log(K))
    d = [margin * (k != y) + s[k] - s[y] for k in range(K)]
    loss = lam * math.log(sum(math.exp(v / lam) for v in d) / K) - alpha * math.log(K) / (2 * lam0) * (lam - lam0) ** 2
    return loss, lam


def test_aldr_kl_matches_the_official_update_over_several_steps():
    gen = torch.Generator().manual_seed(1)
    lam0, alpha, margin, n, classes = 2.0, 2.0, 0.1, 12, 4
    loss = losses.ALDRKL(lam=lam0, alpha=alpha, margin=margin)
    loss.setup(n, classes)
    lambdas = [lam0] * n
    for _ in range(3):
        index = torch.randperm(n, generator=gen)[:6]
        logits = torch.randn(6, classes, generator=gen, dtype=torch.float64)
        targets = torch.randint(0, classes, (6,), generator=gen)
        value = loss(logits, targets, index)
        expected = []
        for row, y, i in zip(logits.tolist(), targets.tolist(), index.tolist()):
            out, lambdas[i] = aldr_naive_step(row, y, lambdas[i], lam0, alpha, margin)
            expected.append(out)
        assert value.item() == pytest.approx(sum(expected) / len(expected), rel=1e-5)
        torch.testing.assert_close(loss.lambdas[0].double(), torch.tensor(lambdas, dtype=torch.float64),
                                   rtol=1e-5, atol=1e-6)
    assert all(lam0 * (1 - 1 / alpha) <= v <= lam0 for v in lambdas)


def spherical_naive(z, y, eps):
    f = [v * v + eps for v in z]
    return -math.log(f[y] / sum(f))


@pytest.mark.parametrize("eps", [0.01, 1.0])
def test_spherical_softmax_matches_the_naive_formula_and_its_gradient(eps):
    gen = torch.Generator().manual_seed(5)
    logits = (3 * torch.randn(7, 5, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 5, (7,), generator=gen)
    loss = losses.SphericalSoftmax(epsilon=eps)
    value = loss(logits, targets)
    expected = naive_per_example(logits.detach(), targets, lambda z, y: spherical_naive(z, y, eps)).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-10, abs=1e-12)
    (gradient,) = torch.autograd.grad(value, logits)
    z, y = logits.detach(), targets                                    # d/dz_k: 2 z_k / S − [k = y] 2 z_y / (z_y² + ε)
    s = (z.pow(2) + eps).sum(-1, keepdim=True)
    expected_grad = 2 * z / s
    expected_grad[torch.arange(7), y] -= 2 * z[torch.arange(7), y] / (z[torch.arange(7), y].pow(2) + eps)
    assert torch.allclose(gradient, expected_grad / 7, atol=1e-12)
    assert loss.describe() == {"loss": "spherical", "epsilon": eps}
    # invariant to the sign of the logits, not to a shift; per-member ε: two members at once
    assert loss(-logits, targets).item() == pytest.approx(value.item(), rel=1e-12)
    assert abs(loss(logits + 1, targets).item() - value.item()) > 1e-3
    stacked = losses.SphericalSoftmax(epsilon=torch.tensor([0.01, 1.0], dtype=torch.float64))
    both = stacked(torch.stack([logits.detach(), logits.detach()]), torch.stack([targets, targets]))
    single = [losses.SphericalSoftmax(epsilon=e)(logits.detach(), targets).item() for e in (0.01, 1.0)]
    assert both.tolist() == pytest.approx(single, rel=1e-12)
    with pytest.raises(ValueError):
        losses.SphericalSoftmax(epsilon=0.0)


def test_lowest_lambda_is_the_band_aldr_kl_cannot_leave():
    # λ₀ = 10, ten classes: the most peaked normalized scores keep λ_i in [9.83, 10], far above the floor 5
    assert losses.lowest_lambda(10.0, classes=10) == pytest.approx(9.834, abs=0.002)
    assert losses.lowest_lambda(10.0, classes=26) < losses.lowest_lambda(10.0, classes=10)     # wider with more classes
    assert 1.5 <= losses.lowest_lambda(3.0, classes=10) < 1.6                # λ₀ = 3: close to the floor λ₀(1 − 1/α)
    # no training example goes lower: random logits from the same update stay at or above the band's edge
    gen = torch.Generator().manual_seed(3)
    loss = losses.ALDRKL(lam=10.0, alpha=2.0)
    loss.setup(64, 10)
    for _ in range(30):
        loss(5 * torch.randn(64, 10, generator=gen), torch.randint(0, 10, (64,), generator=gen), torch.arange(64))
    assert float(loss.lambdas.min()) >= losses.lowest_lambda(10.0, classes=10) - 1e-4
    assert float(loss.lambdas.max()) <= 10.0


@pytest.mark.parametrize("name,values", [("elr", {"lam": [0.0, 1.0, 3.0], "beta": [0.5, 0.7, 0.9]}),
                                         ("gce", {"q": [0.3, 0.7, 1.0]}), ("zloss", {"a": [0.5, 1.0, 4.0]}),
                                         ("ldr_kl", {"lam": [0.5, 2.0, 10.0]}),
                                         ("aldr_kl", {"lam": [1.0, 2.0, 10.0], "alpha": [1.5, 2.0, 4.0]}),
                                         ("label_smoothing", {"smoothing": [0.1, 0.0, 0.05]}),
                                         ("pskd", {"alpha_T": [0.0, 0.4, 0.8], "smoothing": [0.1, 0.0, 0.05],
                                                  "uniform_teacher": [0.0, 1.0, 0.5]})])
def test_per_member_coefficients_equal_separate_losses(name, values):
    gen = torch.Generator().manual_seed(7)
    batched = losses.get_loss(name, **{k: torch.tensor(v) for k, v in values.items()})
    batched.setup(10, 4, members=3)
    singles = [losses.get_loss(name, **{k: v[m] for k, v in values.items()}) for m in range(3)]
    for single in singles:
        single.setup(10, 4)
    for step in range(1, 7):                          # three epochs of two steps: PS-KD's targets move on
        for loss in (batched, *singles):
            loss.at_step(step, 6, 2)
        index = torch.randperm(10, generator=gen)[:5]
        logits = torch.randn(3, 5, 4, generator=gen)
        targets = torch.randint(0, 4, (3, 5), generator=gen)
        out = batched(logits, targets, index)
        for m in range(3):
            assert out[m].item() == pytest.approx(singles[m](logits[m], targets[m], index).item(), rel=1e-5)


def test_noisy_label_losses_bad_input():
    with pytest.raises(ValueError, match="alpha"):
        losses.ALDRKL(alpha=1.0)
    with pytest.raises(ValueError, match="q"):
        losses.GeneralizedCrossEntropy(q=0.0)
    with pytest.raises(RuntimeError, match="setup"):
        losses.ALDRKL()(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
