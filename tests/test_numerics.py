"""StableMax, the Softmax-Collapse metric, the collapse gaps and ⊥Grad, against independent computations."""
import math

import pytest
import torch

from tdlab.core import data, losses, models, optim, sweep, train
from tdlab.methods.grokking import numerics


# ----------------------------------------------------------------- StableMax cross-entropy


def naive_s(x):
    return x + 1 if x >= 0 else 1 / (1 - x)


def naive_s_prime(x):
    return 1.0 if x >= 0 else 1 / (1 - x) ** 2


def naive_stablemax_ce(logits, targets):
    """−mean log( s(z_y) / Σ_j s(z_j) ), example by example in Python floats (float64)."""
    total = 0.0
    for z, y in zip(logits.tolist(), targets.tolist()):
        total += -math.log(naive_s(z[y]) / sum(naive_s(v) for v in z))
    return total / len(targets)


def naive_stablemax_grad(logits, targets):
    """d/dz_k of the mean loss: s'(z_k)/Σ s − [k = y] s'(z_y)/s(z_y), over B examples."""
    rows = []
    for z, y in zip(logits.tolist(), targets.tolist()):
        total = sum(naive_s(v) for v in z)
        rows.append([naive_s_prime(v) / total - (k == y) * naive_s_prime(z[y]) / naive_s(z[y])
                     for k, v in enumerate(z)])
    return torch.tensor(rows, dtype=torch.float64) / len(rows)


def test_stablemax_element_map():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 4.0], dtype=torch.float64)
    expected = torch.tensor([naive_s(v) for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(losses.stablemax_s(x), expected)


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_stablemax_ce_value_matches_naive_float64(scale):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(13, 7, generator=gen, dtype=torch.float64) * scale
    targets = torch.randint(0, 7, (13,), generator=gen)
    ours = losses.stablemax_cross_entropy(logits, targets)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(naive_stablemax_ce(logits, targets), rel=1e-12)
    assert losses.get_loss("stablemax")(logits, targets).item() == pytest.approx(ours.item(), rel=1e-15)


def test_stablemax_ce_gradient_matches_naive_float64():
    gen = torch.Generator().manual_seed(1)
    logits = (torch.randn(9, 5, generator=gen, dtype=torch.float64) * 4).requires_grad_(True)
    targets = torch.randint(0, 5, (9,), generator=gen)
    losses.stablemax_cross_entropy(logits, targets).backward()
    torch.testing.assert_close(logits.grad, naive_stablemax_grad(logits.detach(), targets), rtol=1e-10, atol=1e-12)


def test_stablemax_ce_from_float32_logits_is_float64_and_grads_flow_back():
    logits = torch.tensor([[3.0, -1.0, 0.5]], requires_grad=True)
    loss = losses.StableMaxCrossEntropy()(logits, torch.tensor([0]))
    assert loss.dtype == torch.float64
    loss.backward()
    assert logits.grad.dtype == torch.float32
    expected = naive_stablemax_grad(logits.detach().double(), torch.tensor([0])).float()
    torch.testing.assert_close(logits.grad, expected)


def test_stablemax_ce_batched_over_members():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 8, 5, generator=gen) * 5
    targets = torch.randint(0, 5, (3, 8), generator=gen)
    batched = losses.StableMaxCrossEntropy()(logits, targets)
    assert batched.shape == (3,)
    for m in range(3):
        assert batched[m].item() == pytest.approx(naive_stablemax_ce(logits[m].double(), targets[m]), rel=1e-12)


def test_stablemax_does_not_collapse_where_float32_softmax_does():
    logits = torch.tensor([[60.0, 0.0, -5.0]])
    target = torch.tensor([0])
    assert numerics.cross_entropy_in(logits, target, "float32").item() == 0.0        # softmax: exactly 0
    stable = losses.stablemax_cross_entropy(logits, target).item()
    assert stable == pytest.approx(naive_stablemax_ce(logits.double(), target), rel=1e-12)
    assert stable > 1e-3                                                              # still a gradient


def test_stablemax_rejects_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        losses.StableMaxCrossEntropy(precision="float8")


# ----------------------------------------------------------------- softmax in a precision, SC metric


def test_cross_entropy_in_each_precision():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 4, generator=gen) * 2
    targets = torch.randint(0, 4, (6,), generator=gen)
    exact = torch.nn.functional.cross_entropy(logits.double(), targets).item()
    for name, tol in (("float64", 1e-7), ("float32", 1e-6), ("float16", 3e-3), ("bfloat16", 3e-2)):
        value = losses.SoftmaxCrossEntropy(name)(logits, targets)
        assert value.item() == pytest.approx(exact, rel=tol), name
    assert numerics.cross_entropy_in(logits, targets, "float16").dtype == torch.float16
    assert numerics.cross_entropy_in(logits, targets, "float64").dtype == torch.float32  # as the official code
    probs = numerics.softmax_in(logits, "bfloat16")
    assert probs.dtype == torch.bfloat16
    torch.testing.assert_close(probs.double(), torch.softmax(logits.double(), -1), rtol=2e-2, atol=2e-3)


def test_softmax_collapse_on_hand_made_logits():
    # gaps 20 and 35 (top-1 − top-2) round away in float32 (gap > 16.6); 10 and 0 do not
    logits = torch.tensor([[0.0, -20.0], [0.0, -10.0], [5.0, -30.0], [0.0, 0.0]])
    assert numerics.softmax_collapse(logits, "float32") == 0.5
    assert numerics.softmax_collapse(logits, "float64") == 0.0                 # gap of 36.7 needed
    assert numerics.softmax_collapse(logits, "float16") == 0.75                # gap of 7.6 suffices
    targets = torch.tensor([0, 0, 0, 0])
    assert numerics.zero_loss_fraction(logits, targets, "float32") == 0.5
    assert numerics.zero_loss_fraction(logits, torch.tensor([1, 0, 1, 0]), "float32") == 0.0
    sums = numerics.softmax_sums(logits, "float32")
    assert sums.dtype == torch.float32 and sums[0].item() == 1.0 and sums[1].item() > 1.0


def test_logit_gaps():
    logits = torch.tensor([[1.0, 4.0, 2.0], [0.0, -3.0, -9.0], [7.0, 7.0, 0.0]])
    torch.testing.assert_close(numerics.logit_gap(logits), torch.tensor([2.0, 3.0, 0.0]))
    assert numerics.max_logit_gap(logits) == 3.0


@pytest.mark.parametrize("precision", list(numerics.PRECISIONS))
def test_collapse_gap_by_direct_evaluation(precision):
    dtype = numerics.PRECISIONS[precision]
    gap = numerics.collapse_gap(precision)
    one = torch.ones((), dtype=dtype)
    above = torch.exp(-torch.tensor(gap * 1.01, dtype=dtype))
    below = torch.exp(-torch.tensor(gap * 0.99, dtype=dtype))
    assert (one + above).item() == 1.0
    assert (one + below).item() > 1.0
    # where the machine epsilon says it should be: e^(−gap) ≈ ε/2
    eps = torch.finfo(dtype).eps
    assert gap == pytest.approx(math.log(2 / eps), rel=0.01)
    # and a two-class softmax with that gap collapses in that precision (just above it), not below
    assert numerics.softmax_collapse(torch.tensor([[gap * 1.01, 0.0]], dtype=torch.float64), precision) == 1.0
    assert numerics.softmax_collapse(torch.tensor([[gap * 0.99, 0.0]], dtype=torch.float64), precision) == 0.0


def test_collapse_gaps_are_ordered_and_names_checked():
    gaps = numerics.collapse_gaps()
    assert gaps["bfloat16"] < gaps["float16"] < gaps["float32"] < gaps["float64"]
    with pytest.raises(ValueError, match="precision"):
        numerics.collapse_gap("float8")


# ----------------------------------------------------------------- ⊥Grad


def naive_orthogonal(w, g):
    """The ⊥Grad projection in Python floats: g − (w·g / w·w) w, rescaled to ‖g‖."""
    dot = sum(a * b for a, b in zip(w, g))
    ww = sum(a * a for a in w)
    orth = [b - dot / ww * a for a, b in zip(w, g)]
    scale = math.sqrt(sum(b * b for b in g)) / math.sqrt(sum(v * v for v in orth))
    return [v * scale for v in orth]


def test_orthogonal_gradient_matches_naive_and_is_orthogonal_and_norm_preserving():
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    g = torch.randn(5, 3, generator=gen, dtype=torch.float64) + 0.7 * w
    ours = optim.orthogonal_gradient(w, g)
    assert ours.shape == g.shape
    torch.testing.assert_close(ours.flatten(), torch.tensor(naive_orthogonal(w.flatten().tolist(),
                                                                              g.flatten().tolist()),
                                                             dtype=torch.float64))
    assert abs(torch.dot(ours.flatten(), w.flatten()).item()) < 1e-12
    assert ours.norm().item() == pytest.approx(g.norm().item(), rel=1e-12)


def test_orthograd_sgd_update_is_orthogonal_to_the_weights_with_the_gradient_norm():
    torch.manual_seed(5)
    model = torch.nn.Linear(6, 4, bias=False)
    x, y = torch.randn(16, 6), torch.randint(0, 4, (16,))
    before = model.weight.detach().clone()
    opt = optim.OrthoGrad(model.parameters(), torch.optim.SGD, lr=0.1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grad_norm = model.weight.grad.norm().item()
    opt.step()
    update = (model.weight.detach() - before).flatten()
    assert abs(torch.dot(update, before.flatten()).item()) < 1e-6 * update.norm().item() * before.norm().item()
    assert update.norm().item() == pytest.approx(0.1 * grad_norm, rel=1e-5)


def test_orthograd_adamw_equals_adamw_on_projected_gradients_with_the_settings_given():
    torch.manual_seed(6)
    a, b = torch.nn.Linear(5, 3, bias=False), torch.nn.Linear(5, 3, bias=False)
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(10, 5), torch.randint(0, 3, (10,))
    settings = dict(lr=0.01, betas=(0.9, 0.99), eps=1e-25, weight_decay=0.0)
    wrapped = optim.orthograd_adamw(**settings)(a.parameters())
    plain = torch.optim.AdamW(b.parameters(), **settings)
    for _ in range(5):
        for model, opt in ((a, wrapped), (b, plain)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
        optim.orthogonalize_(b.parameters())
        wrapped.step()
        plain.step()
    torch.testing.assert_close(a.weight, b.weight)
    group = wrapped.base.param_groups[0]
    assert group["betas"] == (0.9, 0.99) and group["eps"] == 1e-25      # not AdamW's defaults
    wrapped.load_state_dict(wrapped.state_dict())                       # the official pitfall
    assert wrapped.param_groups[0] is wrapped.base.param_groups[0]
    assert wrapped.base.param_groups[0]["betas"] == (0.9, 0.99)


def test_orthograd_factory_in_the_training_loop_and_schedule_reaches_inner_optimizer():
    d = data.modular_arithmetic(7, "add", 0.6, seed=0)
    factory = optim.orthograd_adamw(lr=0.01, betas=(0.9, 0.99), eps=1e-25)
    seen = []
    history = train.train(lambda: models.MLP(14, 7, width=16, bias=False), d, optimizer=factory,
                          batch_size=None, steps=4, eval_every=2, schedule_name="cosine", progress=False,
                          callback=lambda h: seen.append(h))
    assert not history.diverged and len(seen) == 3
    history = train.train(lambda: models.MLP(14, 7, width=16, bias=False), d,
                          loss=losses.StableMaxCrossEntropy(), optimizer=factory, monitors=[numerics.collapse()],
                          batch_size=None, steps=4, eval_every=2, progress=False)
    steps, sc = history.curve("train", "sc")
    assert steps.tolist() == [0, 2, 4] and all(0 <= v <= 1 for v in sc)
    assert history.knobs[0]["loss"] == "stablemax" and history.knobs[0]["precision"] == "float64"
    assert history.knobs[0]["optimizer"] == "orthograd_adamw"


@pytest.mark.parametrize("loss", ["softmax_ce", "stablemax"])
def test_collapse_monitor_equals_measuring_the_trained_model(loss):
    """The monitor reads the loop's logits; measuring the trained model afterwards must agree."""
    d = data.modular_arithmetic(11, "add", 0.8, seed=0)
    common = dict(batch_size=None, steps=60, eval_every=20, lr=0.05, progress=False)
    members = [{"seed": 0}, {"seed": 1, "lr": 0.02}]
    history = sweep.sweep(lambda: models.MLP(22, 11, width=32, bias=False), d, members, loss=loss,
                          precision="float64" if loss == "stablemax" else "float16",
                          monitors=[numerics.collapse("float16")], **common)
    for member, model in enumerate(history.models):
        logits = model(d.x_train).detach()
        own = (numerics.stablemax_collapse(logits, "float64") if loss == "stablemax"
               else numerics.softmax_collapse(logits, "float16"))
        assert history.final("train", "sc", member) == pytest.approx(own, abs=1e-12)
        assert history.final("train", "softmax_sc", member) == pytest.approx(
            numerics.softmax_collapse(logits, "float16"), abs=1e-12)
        assert history.final("train", "max_gap", member) == pytest.approx(numerics.max_logit_gap(logits), rel=1e-5)
        zero = numerics.per_example_loss(losses.get_loss(loss, precision=history.knobs[member]["precision"]),
                                         logits, d.y_train)
        assert history.final("train", "zero_loss", member) == pytest.approx((zero == 0).float().mean().item())
        mask = numerics.collapsed(logits, "float64" if loss == "stablemax" else "float16", loss == "stablemax")
        assert mask.float().mean().item() == pytest.approx(own, abs=1e-12)
        assert history.final("train", "collapsed_nonzero_loss", member) == pytest.approx(
            (mask & (zero.reshape(mask.shape) != 0)).float().mean().item())


def test_optimizer_factories_check_their_settings():
    with pytest.raises(ValueError, match="beta"):
        optim.adamw(lr=0.01, betas=(0.9, 1.0), eps=1e-8)
    with pytest.raises(ValueError, match="optimizer"):
        optim.make("lion", lr=0.01, betas=(0.9, 0.99), eps=1e-8)


def test_per_example_loss_matches_the_mean_loss_example_by_example():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(5, 4, generator=gen) * 30
    targets = torch.randint(0, 4, (5,), generator=gen)
    for loss in (losses.StableMaxCrossEntropy(), losses.SoftmaxCrossEntropy("float32")):
        per = numerics.per_example_loss(loss, logits, targets)
        assert per.shape == (5,)
        for i in range(5):
            assert per[i].item() == pytest.approx(loss(logits[i:i + 1], targets[i:i + 1]).item(), rel=1e-6)


def test_stablemax_collapse_needs_a_ratio_of_one_over_epsilon_not_a_gap():
    # a logit gap of 400 collapses any softmax, but s(400) = 401 against s(0) = 1 does not round away
    logits = torch.tensor([[400.0, 0.0, -3.0], [1e17, 0.0, -1.0], [1e17, 1e17, 0.0]], dtype=torch.float64)
    assert numerics.softmax_collapse(logits, "float64") == pytest.approx(2 / 3)
    assert numerics.stablemax_collapse(logits, "float64") == pytest.approx(1 / 3)   # only 1e17 + 1 + 1/2 → 1e17
    assert numerics.stablemax_collapse(logits[:1].float(), "float32") == 0.0
    targets = torch.tensor([0, 0, 0])
    per = numerics.per_example_loss(losses.StableMaxCrossEntropy(), logits, targets)
    assert per[0].item() > 0 and per[1].item() == 0.0


def test_collapse_curves_name_the_dotted_gap_of_the_softmax_they_draw():
    """The gap panel's dotted line is the collapse gap of the softmax precision it names in its legend: the run's
    own for a softmax loss; for StableMax, float32's softmax, named as not StableMax's (it has no gap)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tdlab.book import plots
    from tdlab.core.history import History

    for loss, precision, drawn in (("softmax_ce", "float64", "float64"), ("stablemax", "float64", "float32")):
        h = History(knobs=[{"loss": loss, "precision": precision}])
        for step in (0, 50):
            for metric in ("sc", "softmax_sc", "zero_loss", "max_gap"):
                h.log(step, "train", metric, 0.1 * step)
        fig, ax = plt.subplots()
        numerics.collapse_curves(h, ax=ax)
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        (dotted,) = [line for axis in fig.axes for line in axis.get_lines() if line.get_linestyle() == ":"
                     and line.get_label().startswith("gap at which")]
        assert dotted.get_ydata()[0] == pytest.approx(numerics.collapse_gap(drawn))
        assert dotted.get_label() in labels and f"a {drawn} softmax sum rounds to 1" in dotted.get_label()
        assert ("not StableMax's" in dotted.get_label()) == (loss == "stablemax")
        assert "largest logit gap (top-1 − top-2)" in labels
        plt.close(fig)
