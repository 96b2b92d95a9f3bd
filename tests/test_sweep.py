"""A batched sweep equals separate runs; bad specs and diverging members are handled."""
import numpy as np
import pytest
import torch

from tdlab.core import data, engine, models, sweep, train


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def mlp():
    return models.MLP(64, 10, width=24, depth=2)


def loss_curves(history, member):
    return np.concatenate([history.curve(split, "loss", member)[1] for split in ("train", "test")])


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "adam"])
def test_batched_equals_separate_runs(digits, optimizer):
    members = [{"seed": 0, "lr": 1e-2 if optimizer == "sgd" else 1e-3, "weight_decay": 0.0},
               {"seed": 1, "lr": 3e-3, "weight_decay": 1e-2},
               {"seed": 2, "lr": 5e-2 if optimizer == "sgd" else 2e-3, "weight_decay": 5e-2}]
    common = dict(optimizer=optimizer, steps=60, eval_every=20, batch_size=64, data_seed=5, progress=False)
    batched = sweep.sweep(mlp, digits, members, **common)
    separate = sweep.sequential(mlp, digits, members, **common)
    for m in range(len(members)):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=0)


def test_batched_elr_with_per_member_noise_and_lambda(digits):
    members = sweep.grid(noise_rate=[0.2, 0.5], lam=[0.0, 3.0])
    common = dict(loss="elr", beta=0.7, steps=40, eval_every=20, batch_size=64, data_seed=1,
                  noise="symmetric", progress=False)
    batched = sweep.sweep(mlp, digits, members, **common)
    separate = sweep.sequential(mlp, digits, members, **common)
    assert batched.num_members == 4
    for m in range(4):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=0)
        np.testing.assert_allclose(batched.curve("train_corrupted", "acc_true", m)[1],
                                   separate.curve("train_corrupted", "acc_true", m)[1], atol=1e-6)
    frame = batched.frame
    assert {"noise_rate", "lam"} <= set(frame.columns)
    # each member saw its own noise draw at its own rate
    realised = [batched.knobs[m]["noise_rate"] for m in range(4)]
    assert realised == [0.2, 0.2, 0.5, 0.5]


def test_batched_members_with_different_noise_kinds_equal_separate_runs(digits):
    members = [{"noise": "uniform", "noise_rate": 0.4}, {"noise": "pairflip", "noise_rate": 0.3},
               {"noise": "symmetric", "noise_rate": 0.0}]
    common = dict(steps=30, eval_every=15, batch_size=64, data_seed=2, noise_seed=4, progress=False)
    batched = sweep.sweep(mlp, digits, members, **common)
    separate = sweep.sequential(mlp, digits, members, **common)
    for m, member in enumerate(members):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=0)
        assert batched.knobs[m]["noise"] == member["noise"]
        # the labels the member trained on are the ones its knobs redraw (engine.training_data)
        redrawn = data.with_label_noise(digits, member["noise"], member["noise_rate"], 4)
        assert torch.equal(engine.training_data(digits, batched.knobs[m]).y_train, redrawn.y_train)
    flipped = data.with_label_noise(digits, "pairflip", 0.3, 4)
    moved = flipped.y_train[flipped.corrupted_mask]
    assert torch.equal(moved, (digits.y_train[flipped.corrupted_mask] + 1) % 10)     # y → y+1, the member's own kind


def test_diverging_member_is_frozen_and_others_unaffected(digits):
    members = [{"lr": 1e-2}, {"lr": 1e3}, {"lr": 3e-2}]
    linear = lambda: models.MLP(64, 10, depth=0)  # noqa: E731  (diverges geometrically under MSE)
    common = dict(loss="mse", optimizer="sgd", momentum=0.0, steps=40, eval_every=10, data_seed=0, progress=False)
    batched = sweep.sweep(linear, digits, members, **common)
    assert batched.diverged_at[1] is not None
    assert batched.diverged_at[0] is None and batched.diverged_at[2] is None
    separate = sweep.sequential(linear, digits, [members[0], members[2]], **common)
    for ours, theirs in ((0, 0), (2, 1)):
        np.testing.assert_allclose(loss_curves(batched, ours), loss_curves(separate, theirs), atol=1e-5)
    after = batched.curve("test", "acc", 1)[1][-1]
    assert np.isnan(after)


def test_grid_and_member_specs():
    assert sweep.grid(a=[1, 2], b=[3]) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    assert engine.member_list({"lr": [1, 2], "seed": [0, 1]}) == [{"lr": 1, "seed": 0}, {"lr": 2, "seed": 1}]
    with pytest.raises(ValueError, match="'seed' has 3 values"):
        engine.member_list({"lr": [1, 2], "seed": [0, 1, 2]})
    with pytest.raises(ValueError, match="'lr' must be a list"):
        engine.member_list({"lr": 1e-3, "seed": [0, 1]})


def test_unknown_knob_is_named(digits):
    with pytest.raises(ValueError, match="unknown sweep knob 'lam'"):
        sweep.sweep(mlp, digits, [{"lam": 1.0}], loss="ce", steps=2, progress=False)
    with pytest.raises(ValueError, match="unknown sweep knob 'dropout'"):
        sweep.sweep(mlp, digits, [{"dropout": 0.1}], steps=2, progress=False)
    with pytest.raises(ValueError, match="learning rate"):
        sweep.sweep(mlp, digits, [{"lr": -1.0}], steps=2, progress=False)


def test_adamw_betas_and_eps_match_torch(digits):
    members = [{"seed": 0, "lr": 1e-2}, {"seed": 1, "lr": 3e-3}]
    common = dict(steps=30, eval_every=10, batch_size=64, data_seed=2, progress=False)
    batched = sweep.sweep(mlp, digits, members, betas=(0.9, 0.98), eps=1e-12, **common)
    for m, member in enumerate(members):
        factory = lambda params, lr=member["lr"]: torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), eps=1e-12,
                                                                     weight_decay=0.0)
        single = train.train(mlp, digits, optimizer=factory, seed=member["seed"], **common)
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(single, 0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("activation,bias,depth", [("relu", True, 2), ("tanh", False, 1), ("square", True, 0)])
def test_mlp_forward_stacked_equals_each_model(activation, bias, depth):
    from tdlab.core import flat

    nets = [models.MLP(12, 5, width=7, depth=depth, activation=activation, bias=bias) for _ in range(3)]
    _, params, _ = flat.stack(nets)
    x = torch.randn(9, 3, 4)  # flattened to 12 features
    stacked = nets[0].forward_stacked(params, x)
    assert stacked.shape == (3, 9, 5)
    for member, net in enumerate(nets):
        torch.testing.assert_close(stacked[member], net(x), atol=1e-6, rtol=0)


def test_batched_cnn_equals_separate_runs(digits):
    """Models other than the MLP go through vmap(functional_call)."""
    cnn = lambda: models.CNN2d(1, 10, channels=4)  # noqa: E731
    members = [{"seed": 0, "lr": 3e-3}, {"seed": 1, "lr": 1e-3, "weight_decay": 1e-2}]
    common = dict(steps=20, eval_every=10, batch_size=32, data_seed=1, progress=False)
    batched = sweep.sweep(cnn, digits, members, **common)
    separate = sweep.sequential(cnn, digits, members, **common)
    for m in range(len(members)):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=0)


@pytest.mark.parametrize("inputs", ["one-hot", "pairs", "mixed"])
def test_quadratic_forward_stacked_equals_each_model(inputs):
    """The stacked lookup (and the one-hot product for inputs that are not exact one-hots) against each network."""
    from tdlab.core import engine, flat

    p = 7
    nets = [models.QuadraticModularNet(p, width=6) for _ in range(3)]
    assert engine.has_stacked_forward(nets[0])
    _, params, _ = flat.stack(nets)
    a, b = torch.randint(0, p, (2, 11))
    onehot = torch.cat([torch.nn.functional.one_hot(a, p), torch.nn.functional.one_hot(b, p)], -1).float()
    x = {"one-hot": onehot, "pairs": torch.stack([a, b], -1),
         "mixed": 0.7 * onehot + 0.3 * onehot.roll(1, 0)}[inputs]
    stacked = nets[0].forward_stacked(params, x)
    assert stacked.shape == (3, 11, p)
    for member, net in enumerate(nets):
        expected = net(x if inputs != "pairs" else onehot)
        torch.testing.assert_close(stacked[member], expected, atol=1e-6, rtol=1e-5)


def test_subclass_with_its_own_forward_is_vmapped():
    from tdlab.core import engine

    class Shifted(models.MLP):
        def forward(self, x):
            return super().forward(x) + 1

    assert engine.has_stacked_forward(models.MLP(4, 2)) and not engine.has_stacked_forward(Shifted(4, 2))
    assert not engine.has_stacked_forward(models.CNN1d(40, 10))


def test_batched_quadratic_net_equals_separate_runs():
    """Stacked QuadraticModularNets (index lookup, index_add backward) train as each one alone does."""
    from tdlab.core import data as datasets

    modular = datasets.load("modular", p=11, operation="add", train_fraction=0.5, seed=0)
    net = lambda: models.QuadraticModularNet(11, width=16)  # noqa: E731
    members = [{"seed": 0, "weight_decay": 0.0}, {"seed": 1, "weight_decay": 1.0}]
    common = dict(steps=25, eval_every=5, batch_size=None, loss="mse", lr=1e-2, progress=False)
    batched = sweep.sweep(net, modular, members, **common)
    separate = sweep.sequential(net, modular, members, **common)
    for m in range(len(members)):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("loss,members", [("aldr_kl", [{"lam": 1.0, "alpha": 2.0}, {"lam": 10.0, "alpha": 4.0}]),
                                          ("ldr_kl", [{"lam": 0.5}, {"lam": 10.0}]),
                                          ("zloss", [{"a": 1.0, "b": 0.0}, {"a": 4.0, "b": 2.0}])])
def test_batched_noisy_label_losses_with_per_member_coefficients(digits, loss, members):
    common = dict(loss=loss, noise_rate=0.4, noise="symmetric", steps=30, eval_every=15, batch_size=64, data_seed=1,
                  progress=False)
    batched = sweep.sweep(mlp, digits, members, **common)
    separate = sweep.sequential(mlp, digits, members, **common)
    for m in range(len(members)):
        np.testing.assert_allclose(loss_curves(batched, m), loss_curves(separate, m), atol=1e-5, rtol=1e-5)
        assert {k: batched.knobs[m][k] for k in members[m]} == members[m]
