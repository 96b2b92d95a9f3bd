"""Neural-collapse metrics (tdlab.methods.representations.neural_collapse) on exactly collapsed features, on random ones, against
a brute-force numpy computation (loops over examples and classes, as Zhu et al.'s validate_NC.py), and
the model's stacked features and the monitor inside a stacked run."""
import numpy as np
import scipy.linalg
import torch

from tdlab.core import data, engine
from tdlab.methods.representations import neural_collapse as nc


def simplex_etf(k, d, seed=0):
    """K unit vectors in R^d with pairwise cosines −1/(K−1): a random rotation of the centred basis."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, k)))              # d × K orthonormal columns
    m = np.sqrt(k / (k - 1)) * q @ (np.eye(k) - np.ones((k, k)) / k)
    return m.T                                                    # (K, d) rows


def collapsed(k=5, d=8, per_class=4, seed=0, offset=3.0):
    etf = simplex_etf(k, d, seed)
    labels = np.repeat(np.arange(k), per_class)
    features = 2.5 * etf[labels] + offset                         # every feature on its class mean, a common shift
    return features, labels, 0.7 * etf                             # classifier ∝ the centred means (self-dual)


def brute_force(features, labels, weight, k):
    """Zhu et al.'s computation, one example and one class at a time, in numpy/scipy."""
    n, d = features.shape
    mu_g = features.sum(0) / n
    mu = [features[labels == c].sum(0) / (labels == c).sum() for c in range(k)]
    sigma_w = np.zeros((d, d))
    for h, y in zip(features, labels):
        sigma_w += np.outer(h - mu[y], h - mu[y])
    sigma_w /= n
    sigma_b = sum(np.outer(m - mu_g, m - mu_g) for m in mu) / k
    nc1 = np.trace(sigma_w @ scipy.linalg.pinv(sigma_b)) / k
    sub = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    wwt = weight @ weight.T
    nc2 = np.linalg.norm(wwt / np.linalg.norm(wwt) - sub)
    h = np.stack([m - mu_g for m in mu], 1)                       # (d, K)
    wh = weight @ h
    nc3 = np.linalg.norm(wh / np.linalg.norm(wh) - sub)
    return nc1, nc2, nc3, h.T


def test_exact_collapse_gives_zero():
    features, labels, weight = collapsed()
    out = nc.metrics(features, labels, weight, 5)
    for key in ("nc1", "nc2_w", "nc2_h", "nc3", "equinorm_w", "equinorm_h", "equiangular_w", "equiangular_h"):
        assert abs(out[key]) < 1e-10, (key, out[key])
    assert nc.max_angle(weight) < 1e-12
    assert abs(nc.mean_cosine(weight) + 1 / 4) < 1e-12             # −1/(K−1)


def test_within_class_noise_shows_in_nc1_only():
    features, labels, weight = collapsed()
    noisy = features + 0.3 * np.random.default_rng(1).standard_normal(features.shape)
    out = nc.metrics(noisy, labels, weight, 5)
    assert out["nc1"] > 1e-3
    assert out["nc2_w"] < 1e-10                                   # the classifier is untouched


def test_random_features_are_far_from_collapse():
    rng = np.random.default_rng(0)
    k, d, n = 6, 20, 300
    labels = rng.integers(0, k, n)
    out = nc.metrics(rng.standard_normal((n, d)), labels, rng.standard_normal((k, d)), k)
    assert out["nc1"] > 1.0                                       # within-class spread ≫ between-class
    assert out["nc2_h"] > 0.3 and out["nc2_w"] > 0.2 and out["nc3"] > 0.5


def test_against_brute_force_on_a_tiny_imbalanced_case():
    rng = np.random.default_rng(3)
    k, d = 4, 6
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3])
    features = rng.standard_normal((len(labels), d)) + 2 * rng.standard_normal((k, d))[labels]
    weight = rng.standard_normal((k, d))
    nc1, nc2, nc3, centred = brute_force(features, labels, weight, k)
    out = nc.metrics(features, labels, weight, k)
    np.testing.assert_allclose([out["nc1"], out["nc2_w"], out["nc3"], out["nc2_h"]],
                               [nc1, nc2, nc3, nc.etf_distance(centred)], rtol=1e-10)
    gram = centred @ centred.T
    sub = (np.eye(k) - np.ones((k, k)) / k) / np.sqrt(k - 1)
    np.testing.assert_allclose(out["nc2_h"], np.linalg.norm(gram / np.linalg.norm(gram) - sub), rtol=1e-10)
    norms = np.linalg.norm(weight, axis=1)
    cos = (weight @ weight.T) / np.outer(norms, norms)
    np.testing.assert_allclose(out["equinorm_w"], norms.std() / norms.mean(), rtol=1e-10)
    np.testing.assert_allclose(out["equiangular_w"], cos[~np.eye(k, dtype=bool)].std(), rtol=1e-10)
    np.testing.assert_allclose(nc.mean_cosine(weight, [1, 3]), cos[1, 3], rtol=1e-10)


def test_stacked_features_match_each_model_and_the_logits():
    torch.manual_seed(0)
    for head in ("relu", "linear"):
        nets = [nc.CollapseMLP(6, 3, width=5, depth=2, head_depth=1, head=head) for _ in range(3)]
        params = {name: torch.stack([dict(n.named_parameters())[name].detach() for n in nets])
                  for name, _ in nets[0].named_parameters()}
        x = torch.randn(9, 6)
        feats = nc.stacked_features(nets[0], params, x)
        logits = nets[0].forward_stacked(params, x)
        for m, net in enumerate(nets):
            with torch.no_grad():
                torch.testing.assert_close(feats[m], net.features(x), rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(logits[m], net(x), rtol=1e-5, atol=1e-6)
        w = params[nets[0].classifier_name]
        torch.testing.assert_close(logits, feats @ w.transpose(1, 2) + params[f"net.{len(nets[0].net) - 1}.bias"][:, None])


def test_monitor_in_a_stacked_run_matches_the_metrics_of_the_trained_models():
    full = data.load("digits")
    subset = nc.imbalanced(full, 8, imbalance=4.0, minority=[7, 8, 9], seed=0)
    assert torch.bincount(subset.y_train).tolist() == [8] * 7 + [2] * 3
    factory = nc.CollapseFactory(64, 10, width=16)
    history = engine.run(factory, subset, [{"weight_decay": 0.0}, {"weight_decay": 1e-2}], optimizer="sgd", lr=0.05,
                         batch_size=16, steps=20, eval_every=10, monitors=[nc.monitor(factory, [7, 8, 9])],
                         progress=False)
    for m, model in enumerate(history.models):
        model.eval()
        with torch.no_grad():
            expected = nc.metrics(model.features(subset.x_train), subset.y_train,
                                  dict(model.named_parameters())[model.classifier_name], 10, [7, 8, 9])
            expected["nc1_trunk"] = nc.nc1(model.net[:7](subset.x_train), subset.y_train, 10)   # Flatten + 2 blocks
        for key, value in expected.items():
            np.testing.assert_allclose(history.final("collapse", key, m), value, rtol=1e-4, atol=1e-6)
    tpt = nc.terminal_phase(history, 0, level=0.0)
    assert tpt["terminal phase starts at step"] == 0
    np.testing.assert_allclose(tpt["nc1 fall factor"], history.curve("collapse", "nc1", 0)[1][0] / history.final("collapse", "nc1", 0))


def test_the_trunk_is_the_heads_input():
    """``trunk(x)`` is the output of the last batch-norm block: the features themselves without a head, and
    with an identity linear head NC1 at the head's input equals NC1 at its output."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.arange(40) % 4
    bare = nc.CollapseMLP(6, 4, width=5, depth=2, head_depth=0)
    with torch.no_grad():
        torch.testing.assert_close(bare.trunk(x), bare.features(x))
        assert isinstance(bare.net[bare.trunk_end - 1], torch.nn.ReLU)
        linear = nc.CollapseMLP(6, 4, width=5, depth=2, head_depth=1, head="linear")
        head = linear.net[linear.trunk_end]
        head.weight.copy_(torch.eye(5)), head.bias.zero_()
        torch.testing.assert_close(linear.trunk(x), linear.features(x))
        np.testing.assert_allclose(nc.nc1(linear.trunk(x), y, 4), nc.nc1(linear.features(x), y, 4), rtol=1e-6)
        relu = nc.CollapseMLP(6, 4, width=5, depth=3, head_depth=2, head="relu")
        torch.testing.assert_close(relu.trunk(x), relu.net[:10](x))
