"""The lazy-to-rich chapter's pieces (Kumar, Bordelon, Gershman & Pehlevan, ICLR 2024): the quadratic
teacher, the network and its closed-form NTK against per-example gradients, kernel regression against
a direct solve, the alignment and kernel change against naive formulas, the α-scaled centred loss
against the paper's own gradient-descent loop, and the monitor against independent computations."""
import math

import numpy as np
import pytest
import torch

from tdlab.core import data, engine, losses, models
from tdlab.methods.grokking import kernels


def per_example_gradients(model, x):
    """∇_θ f(x_μ) for each example, one backward pass at a time, flattened: (n, #parameters)."""
    rows = []
    for example in x:
        model.zero_grad()
        model(example.unsqueeze(0)).sum().backward()
        rows.append(torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()]))
    return torch.stack(rows)


def test_quadratic_teacher_draws_the_papers_task():
    d = data.quadratic_teacher(num_train=300, num_test=200, dim=20, seed=4, device="cpu")
    again = data.quadratic_teacher(num_train=300, num_test=200, dim=20, seed=4, device="cpu")
    assert d.x_train.shape == (300, 20) and d.x_test.shape == (200, 20) and d.num_classes is None
    torch.testing.assert_close(d.x_train, again.x_train)
    beta = d.info["beta"]
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        naive = torch.tensor([0.5 * sum(float(b) * float(v) for b, v in zip(beta, row)) ** 2 for row in x])
        torch.testing.assert_close(y, naive, rtol=1e-5, atol=1e-6)
    assert float((d.x_train ** 2).sum(1).mean()) == pytest.approx(1.0, abs=0.1)     # x ~ N(0, I/D): |x|² ≈ 1
    other = data.quadratic_teacher(num_train=300, num_test=200, dim=20, seed=5, device="cpu")
    assert not torch.allclose(other.y_train, d.y_train)


def test_network_forward_matches_the_formula_and_the_stacked_forward():
    torch.manual_seed(0)
    net = models.QuadraticFeatureNet(dim=6, width=9, eps=0.3)
    x = torch.randn(5, 6)
    naive = torch.tensor([[sum((w @ row + 0.15 * (w @ row) ** 2).item() for w in net.W) / 9] for row in x])
    torch.testing.assert_close(net(x), naive, rtol=1e-5, atol=1e-6)
    others = [models.QuadraticFeatureNet(6, 9, 0.3) for _ in range(3)]
    stacked = net.forward_stacked({"W": torch.stack([m.W for m in others])}, x)
    torch.testing.assert_close(stacked, torch.stack([m(x) for m in others]))


def test_closed_form_ntk_matches_per_example_gradients_and_torch_func():
    torch.manual_seed(1)
    net = models.QuadraticFeatureNet(dim=7, width=11, eps=0.5).double()
    x1, x2 = torch.randn(6, 7, dtype=torch.float64), torch.randn(4, 7, dtype=torch.float64)
    j1, j2 = per_example_gradients(net, x1), per_example_gradients(net, x2)
    brute = j1 @ j2.T
    torch.testing.assert_close(net.ntk(net.W.detach(), x1, x2), brute)
    torch.testing.assert_close(kernels.empirical_ntk(net, dict(net.named_parameters()), x1, x2), brute)
    # a stack of weights gives a stack of kernels
    stack = torch.stack([net.W.detach(), 2 * net.W.detach()])
    torch.testing.assert_close(net.ntk(stack, x1, x2)[0], brute)


def test_empirical_ntk_of_an_mlp_matches_per_example_gradients():
    torch.manual_seed(2)
    mlp = models.MLP(5, 1, width=8, depth=2, activation="tanh").double()
    x = torch.randn(7, 5, dtype=torch.float64)
    j = per_example_gradients(mlp, x)
    torch.testing.assert_close(kernels.empirical_ntk(mlp, dict(mlp.named_parameters()), x), j @ j.T)


def test_kernel_regression_matches_a_direct_solve():
    gen = np.random.default_rng(0)
    a = gen.normal(size=(8, 3))
    k = a @ a.T + 0.1 * np.eye(8)
    y = gen.normal(size=8)
    k_star = gen.normal(size=(5, 8))
    expected = k_star @ np.linalg.inv(k) @ y
    got = kernels.kernel_regression(torch.tensor(k), torch.tensor(y), torch.tensor(k_star))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)
    lam = 0.3 * np.trace(k) / 8
    ridge = kernels.kernel_regression(torch.tensor(k), torch.tensor(y), torch.tensor(k_star), ridge=0.3)
    np.testing.assert_allclose(ridge.numpy(), k_star @ np.linalg.inv(k + lam * np.eye(8)) @ y, rtol=1e-9)


def test_alignment_and_kernel_change_match_naive_formulas():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    k = a @ a.T
    y = torch.randn(6, generator=gen, dtype=torch.float64)
    yc = [v - sum(y.tolist()) / 6 for v in y.tolist()]
    column_means = [sum(k[i, j].item() for i in range(6)) / 6 for j in range(6)]
    kc = [[k[i, j].item() - column_means[j] for j in range(6)] for i in range(6)]
    top = sum(yc[i] * kc[i][j] * yc[j] for i in range(6) for j in range(6))
    norm = math.sqrt(sum(v * v for row in kc for v in row))
    assert kernels.alignment(k, y).item() == pytest.approx(top / (norm * sum(v * v for v in yc)), rel=1e-12)
    outer = torch.tensor(yc, dtype=torch.float64)
    assert kernels.alignment(torch.outer(outer, outer), y).item() == pytest.approx(1.0)       # K ∝ y_c y_cᵀ
    assert kernels.alignment(torch.stack([k, 3 * k]), y).tolist() == pytest.approx([top / (norm * sum(v * v for v in yc))] * 2)
    k0 = k + 0.5 * torch.eye(6, dtype=torch.float64)
    naive = math.sqrt(sum((k[i, j] - k0[i, j]).item() ** 2 for i in range(6) for j in range(6)))
    assert kernels.relative_change(k, k0).item() == pytest.approx(naive / math.sqrt((k0 ** 2).sum().item()))


def test_lazy_mse_centres_scales_and_masks():
    loss = losses.LazyMSE().set(alpha=torch.tensor([2.0, 0.5]), train_size=torch.tensor([3.0, 5.0]))
    z0 = torch.randn(2, 5, 1)
    y = torch.randn(5)
    index = torch.arange(5)
    first = loss(z0, y.expand(2, -1), index)                                           # f = α (z₀ − z₀) = 0
    torch.testing.assert_close(first, torch.stack([(y[:3] ** 2).mean(), (y ** 2).mean()]))
    z = z0 + torch.randn(2, 5, 1)
    value = loss(z, y.expand(2, -1), index)
    for m, (alpha, size) in enumerate(((2.0, 3), (0.5, 5))):
        naive = sum((alpha * (z[m, i, 0] - z0[m, i, 0]) - y[i]) ** 2 for i in range(size)) / size
        assert value[m].item() == pytest.approx(naive.item(), rel=1e-5)
    with pytest.raises(ValueError, match="full batch"):
        fresh = losses.LazyMSE()
        fresh(z[:, :3], y[:3].expand(2, -1), torch.arange(3))
        fresh(z[:, 3:], y[3:].expand(2, -1), torch.arange(3, 5))
    plain = losses.LazyMSE(alpha=3.0, center=False)
    assert plain(z[0], y).item() == pytest.approx(((3 * z[0, :, 0] - y) ** 2).mean().item(), rel=1e-6)


def paper_loop(d, width, eps, alpha, size, steps, lr_multiplier=1.0, seed=0):
    """The authors' loop written out: f = α (z_W − z_W₀), mean squared error on the first ``size``
    examples, plain gradient descent with η = c N / α² — independent of the engine and the loss class."""
    torch.manual_seed(seed)
    W0 = models.QuadraticFeatureNet(d.x_train.shape[1], width, eps).W.detach().clone().to(d.x_train.dtype)
    W = W0.clone().requires_grad_()
    x, y = d.x_train[:size], d.y_train[:size]

    def z(w, inputs):
        h = inputs @ w.T
        return (h + eps / 2 * h * h).mean(-1)

    for _ in range(steps):
        loss = ((alpha * (z(W, x) - z(W0, x)) - y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, W)
        with torch.no_grad():
            W -= lr_multiplier * width / alpha**2 * grad
    with torch.no_grad():
        return (((alpha * (z(W, d.x_test) - z(W0, d.x_test)) - d.y_test) ** 2).mean().item(),
                ((alpha * (z(W, x) - z(W0, x)) - y) ** 2).mean().item())


def test_a_stacked_run_over_alpha_and_train_size_is_the_papers_loop():
    d = data.quadratic_teacher(num_train=40, num_test=30, dim=8, seed=0, device="cpu")
    d = d.replace(**{k: getattr(d, k).double() for k in ("x_train", "y_train", "x_test", "y_test")})   # float64:
    width, eps = 16, 0.5                  # the stacked form (through w̄ and M) rounds differently from the loop
    members = [{"alpha": a, "train_size": p, "lr": 2.0 * width / a**2, "seed": s}
               for a, p, s in ((0.5, 40, 0), (4.0, 40, 1), (2.0, 15, 0))]
    history = engine.run(lambda: models.QuadraticFeatureNet(8, width, eps).double(), d, members, loss=losses.LazyMSE(),
                         optimizer="sgd", momentum=0.0, batch_size=None, steps=30, eval_every=30,
                         monitors=[kernels.lazy_rich(models.QuadraticFeatureNet(8, width, eps), kernel_points=20)],
                         progress=False)
    assert history.num_members == 3
    for m, member in enumerate(members):
        test, train = paper_loop(d, width, eps, member["alpha"], member["train_size"], 30, 2.0, member["seed"])
        assert history.final("test", "mse", m) == pytest.approx(test, rel=1e-9)
        assert history.final("train", "mse", m) == pytest.approx(train, rel=1e-9)


def test_the_monitor_measures_the_lazy_plateau_alignment_and_kernel_change():
    d = data.quadratic_teacher(num_train=30, num_test=25, dim=6, seed=1, device="cpu")
    net = lambda: models.QuadraticFeatureNet(6, 12, 0.4)  # noqa: E731
    history = engine.run(net, d, [{"alpha": 1.0, "train_size": 20, "lr": 12.0, "seed": 3}], loss=losses.LazyMSE(),
                         optimizer="sgd", momentum=0.0, batch_size=None, steps=20, eval_every=10,
                         monitors=[kernels.lazy_rich(net(), kernel_points=10)], progress=False)
    torch.manual_seed(3)
    start = models.QuadraticFeatureNet(6, 12, 0.4).double()
    x, y = d.x_train[:20].double(), d.y_train[:20].double()
    jx, jt = per_example_gradients(start, x), per_example_gradients(start, d.x_test.double())
    plateau = ((jt @ jx.T @ torch.linalg.solve(jx @ jx.T, y) - d.y_test.double()) ** 2).mean().item()
    steps, levels = history.curve("test", "kernel_mse")
    assert levels.tolist() == pytest.approx([plateau] * len(steps), rel=1e-3)
    assert history.curve("test", "alignment")[1][0] == pytest.approx(
        kernels.alignment(jt[:10] @ jt[:10].T, d.y_test[:10].double()).item(), rel=1e-4)
    assert history.curve("test", "kernel_change")[1][0] == pytest.approx(0.0, abs=1e-7)
    trained = history.models[0].double()
    jk, j0 = per_example_gradients(trained, d.x_test[:10].double()), jt[:10]
    assert history.final("test", "kernel_change") == pytest.approx(
        kernels.relative_change(jk @ jk.T, j0 @ j0.T).item(), rel=1e-3)
    assert history.curve("train", "mse")[1][0] == pytest.approx((y ** 2).mean().item(), rel=1e-5)


def test_lazy_rich_times_reads_the_curves():
    from tdlab.methods.grokking import grokking
    from tdlab.core import history as histories

    h = histories.History()
    for step, train, test in ((0, 1.0, 2.0), (10, 0.5, 1.9), (20, 0.08, 1.1), (30, 0.01, 0.6), (40, 0.0, 0.2)):
        h.log(step, "train", "mse", train)
        h.log(step, "test", "mse", test)
        h.log(step, "test", "kernel_mse", 1.0)
    times = grokking.lazy_rich_times(h, train_drop=0.1, test_drop=0.25)
    assert times["fit step"] == 20 and times["generalization step"] == 40 and times["delay"] == 20
    assert times["test / plateau when fit"] == pytest.approx(1.1)
    assert times["final test / plateau"] == pytest.approx(0.2) and times["best test / plateau"] == pytest.approx(0.2)
    assert times["best test / initial"] == pytest.approx(0.1)
    never = grokking.lazy_rich_times(h, test_drop=0.05)
    assert never["generalization step"] == math.inf and never["delay"] == math.inf


def test_lazy_rich_times_interpolates_the_crossings():
    from tdlab.methods.grokking import grokking
    from tdlab.core import history as histories

    h = histories.History()
    for step, train, test in ((0, 1.0, 2.0), (10, 0.4, 1.9), (100, 0.04, 1.0), (1000, 0.004, 0.1)):
        h.log(step, "train", "mse", train)
        h.log(step, "test", "mse", test)
        h.log(step, "test", "kernel_mse", 1.0)
    grid = grokking.lazy_rich_times(h, train_drop=0.1, test_drop=0.25)
    assert grid["fit step"] == 100 and grid["generalization step"] == 1000
    fine = grokking.lazy_rich_times(h, train_drop=0.1, test_drop=0.25, interpolate=True)
    # train: 0.4 → 0.04 over 10 → 100 is a power law, 0.1 at 10^1.602; test: 1.0 → 0.1, 0.5 at 10^2.301
    assert fine["fit step"] == pytest.approx(10 ** (1 + math.log10(4)), rel=1e-9)
    assert fine["generalization step"] == pytest.approx(10 ** (2 + math.log10(2)), rel=1e-9)
    assert fine["test / plateau when fit"] == pytest.approx(1.9 * (1.0 / 1.9) ** math.log10(4), rel=1e-9)
    first = grokking.lazy_rich_times(h, train_drop=0.7, test_drop=0.25, interpolate=True)
    assert first["fit step"] == pytest.approx(5.0)      # from step 0: linear in the step
    never = grokking.lazy_rich_times(h, test_drop=0.01, interpolate=True)
    assert never["generalization step"] == math.inf
