"""The weight compander (Cakaj et al. 2023) against naive computations."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from tdlab.methods.regularization import compander
from tdlab.core import data, engine, models


def test_compand_slope_and_inverse():
    v = torch.linspace(-3, 3, 101, dtype=torch.float64, requires_grad=True)
    w = compander.compand(v, 0.8, 0.5)
    assert torch.allclose(w, 0.8 * torch.atan(v / 0.5))
    assert float(w.detach().abs().max()) < 0.8 * math.pi / 2
    (grad,) = torch.autograd.grad(w.sum(), v)
    assert torch.allclose(compander.compand_slope(v, 0.8, 0.5), grad)
    assert math.isclose(float(compander.compand_slope(torch.tensor(0.0), 0.8, 0.5)), 0.8 / 0.5, rel_tol=1e-6)
    assert torch.allclose(compander.expand(w.detach(), 0.8, 0.5), v.detach(), atol=1e-9)
    with pytest.raises(ValueError):
        compander.expand(torch.tensor([0.8 * math.pi / 2]), 0.8, 0.5)


def test_initial_weights_are_the_usual_ones():
    torch.manual_seed(3)
    plain = nn.Linear(7, 5)
    torch.manual_seed(3)
    layer = compander.CompandedLinear(7, 5, a=0.6, b=0.9)
    assert torch.allclose(layer.weight, plain.weight, atol=1e-6) and torch.equal(layer.bias, plain.bias)


def test_backward_adds_the_weight_decay_of_the_companded_weights():
    torch.manual_seed(0)
    layer = compander.CompandedLinear(4, 3, a=0.7, b=0.5, decay=0.1)
    x, y = torch.randn(6, 4), torch.randint(0, 3, (6,))
    loss = nn.functional.cross_entropy(layer(x), y)
    (got,) = torch.autograd.grad(loss, layer.v)
    # naive: the loss of the plain formula plus (λ/2)·‖Ψ(v)‖², differentiated by autograd
    v = layer.v.detach().clone().requires_grad_(True)
    w = 0.7 * torch.atan(v / 0.5)
    naive = nn.functional.cross_entropy(x @ w.t() + layer.bias.detach(), y) + 0.05 * (w ** 2).sum()
    (want,) = torch.autograd.grad(naive, v)
    assert torch.allclose(got, want, atol=1e-6)


def test_stacked_forward_equals_each_member_and_vmap():
    torch.manual_seed(1)
    nets = [compander.CompandedMLP(5, 3, width=8, depth=2, a=1.0, b=0.6, decay=0.01) for _ in range(3)]
    x = torch.randn(4, 5)
    params = {name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets]).requires_grad_(True)
              for name, _ in nets[0].named_parameters()}
    stacked = nets[0].forward_stacked(params, x)
    call = torch.vmap(lambda p, x: torch.func.functional_call(nets[0], p, (x,)), in_dims=(0, None))
    assert torch.allclose(stacked, call(params, x), atol=1e-6)
    (stacked_grad,) = torch.autograd.grad(stacked.pow(2).sum(), params["layers.0.v"])
    for e, net in enumerate(nets):
        assert torch.allclose(stacked[e], net(x), atol=1e-6)
        (own,) = torch.autograd.grad(net(x).pow(2).sum(), net.layers[0].v)      # includes the decay term
        assert torch.allclose(stacked_grad[e], own, atol=1e-6)


def test_engine_stacked_run_equals_separate_runs_and_monitor_matches_brute_force():
    d = data.load("digits").subset(200)
    make = lambda: compander.CompandedMLP(64, 10, width=16, depth=1, a=1.0, b=0.6, decay=1e-3)  # noqa: E731
    monitor = compander.weight_monitor(1.0, 0.6, near_zero=0.05)
    kw = dict(optimizer="sgd", lr=0.1, batch_size=32, steps=30, eval_every=10, progress=False, monitors=[monitor])
    together = engine.run(make, d, [{"seed": 0}, {"seed": 1}], batched=True, **kw)
    alone = engine.run(make, d, [{"seed": 1}], batched=False, **kw)
    assert math.isclose(together.final("test", "loss", 1), alone.final("test", "loss"), rel_tol=1e-4)
    net = alone.models[0]
    w = torch.cat([layer.weight.detach().flatten() for layer in net.layers])
    assert math.isclose(alone.final("weights", "max_abs"), float(w.abs().max()), rel_tol=1e-5)
    assert math.isclose(alone.final("weights", "near_zero"), float((w.abs() < 0.05).float().mean()), rel_tol=1e-5)
    ranked = np.sort(w.abs().numpy())                   # the 99.9% quantile, linear interpolation by hand
    position = 0.999 * (len(ranked) - 1)
    low = int(np.floor(position))
    quantile = ranked[low] + (position - low) * (ranked[low + 1] - ranked[low])
    assert math.isclose(alone.final("weights", "top_abs"), float(quantile), rel_tol=1e-5)
    plain = engine.run(lambda: models.MLP(64, 10, width=16, depth=1), d, [{"seed": 0}], **kw)   # plain weights too
    p = torch.cat([plain.models[0].net[i].weight.detach().flatten() for i in (1, 3)])
    assert math.isclose(plain.final("weights", "max_abs"), float(p.abs().max()), rel_tol=1e-5)


def test_compand_model_equals_the_companded_layers():
    torch.manual_seed(2)
    ours = compander.CompandedMLP(6, 3, width=5, depth=1, a=0.9, b=0.7, decay=0.05)
    plain = models.MLP(6, 3, width=5, depth=1)
    with torch.no_grad():
        for layer, index in zip(ours.layers, (1, 3)):
            plain.net[index].weight.copy_(layer.weight)
            plain.net[index].bias.copy_(layer.bias)
    compander.compand_model(plain, a=0.9, b=0.7, decay=0.05)
    x = torch.randn(4, 6)
    assert torch.allclose(plain(x), ours(x), atol=1e-6)
    (g_plain,) = torch.autograd.grad(plain(x).sum(), plain.net[1].parametrizations.weight.original)
    (g_ours,) = torch.autograd.grad(ours(x).sum(), ours.layers[0].v)
    assert torch.allclose(g_plain, g_ours, atol=1e-5)


def test_variants_train_as_separate_calls_and_are_found_by_their_knobs():
    d = data.load("digits").subset(200)
    setup = dict(data=d, width=16, depth=1, a=1.0, b=0.6, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32,
                 steps=20, eval_every=10, progress=False)
    variants = {"plain": (None, 0.0, 1.0), "compander + wd": ((1.0, 0.6), 1e-3, 1.0), "plain fast": (None, 0.0, 2.0)}
    members = [{"seed": s, "noise_rate": 0.0} for s in (0, 1)]
    grid = compander.train_variants(setup, variants, members, data_seed=0, names=("plain", "compander + wd"))
    assert grid.num_members == 4                                             # "plain fast" left out
    assert compander.variant_members(grid, variants["plain"], 0.0) == [0, 1]
    assert compander.variant_members(grid, variants["compander + wd"], 0.0) == [2, 3]
    assert compander.variant_members(grid, variants["plain fast"], 0.0) == []
    assert compander.variant_members(grid, variants["plain"], 0.4) == []
    alone = compander.train(**{**setup, "lr": 0.05}, members=members[1:], companded=True, weight_decay=1e-3,
                            data_seed=0)                                     # the same run, by itself
    np.testing.assert_allclose(compander.final_weights(grid, 3), compander.final_weights(alone, 0),
                               rtol=1e-4, atol=1e-5)
    net = alone.models[0]                                                    # Ψ(v) of every layer, by hand
    by_hand = torch.cat([compander.compand(layer.v.detach(), 1.0, 0.6).flatten() for layer in net.layers])
    np.testing.assert_allclose(compander.final_weights(alone, 0), by_hand.numpy(), rtol=1e-6)
    plain = grid.models[0]
    assert compander.final_weights(grid, 0).size == sum(m.weight.numel() for m in plain.modules()
                                                        if isinstance(m, nn.Linear))
