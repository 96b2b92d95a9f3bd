"""The stability chapter's helpers (tdlab.methods.stability.stability): z-loss, monitors, LR sensitivity, weight decay, recipe."""
import math

import pytest
import torch

from tdlab.core import engine, text
from tdlab.methods.stability import stability
from tdlab.core.flat import FlatOptimizer
from tdlab.core.losses import cross_entropy
from tdlab.core.transformer import TinyTransformer, attention_stats


def test_z_loss_is_cross_entropy_plus_c_log_z_squared_per_member():
    torch.manual_seed(0)
    logits, targets = 3 * torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    loss = stability.ZLossCrossEntropy(z_loss=torch.tensor([0.0, 0.3]))(logits, targets)
    for member, c in enumerate((0.0, 0.3)):
        expected = 0.0
        for b in range(5):
            z = sum(math.exp(v) for v in logits[member, b].tolist())
            expected += -math.log(math.exp(logits[member, b, targets[member, b]].item()) / z) + c * math.log(z) ** 2
        assert loss[member].item() == pytest.approx(expected / 5, rel=1e-5)
    plain = stability.ZLossCrossEntropy(0.0)(logits, targets)
    assert torch.allclose(plain, cross_entropy(logits, targets))
    with pytest.raises(ValueError):
        stability.ZLossCrossEntropy(-1.0)


def test_lr_sensitivity_caps_failed_runs_at_the_initial_loss():
    # capped: [2.0, 1.5, 4.0 (diverged), 4.0 (above ℓ₀)] − 1.5 → [0.5, 0, 2.5, 2.5]
    assert stability.lr_sensitivity([2.0, 1.5, float("nan"), 5.0], 4.0) == pytest.approx(1.375)
    assert stability.lr_sensitivity([3.0, 3.0], 4.0) == 0.0
    assert list(stability.capped_losses([1.0, float("inf")], 2.0)) == [1.0, 2.0]


def test_count_model_losses_equal_a_count_by_hand():
    # train pairs (0→0), (0→1), (1→1), vocabulary 2, add-½: p(·|0) = (½, ½), p(·|1) = (¼, ¾), p(y) = (3/8, 5/8)
    out = stability.count_model_losses([0, 0, 1], [0, 1, 1], [1, 0], [1, 0], vocab=2)
    assert out["bigram"] == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2)
    assert out["unigram"] == pytest.approx(-(math.log(5 / 8) + math.log(3 / 8)) / 2)
    # against a dictionary count on random windows (shape (N, T) as the corpus gives them)
    g = torch.Generator().manual_seed(0)
    x, y, xt, yt = (torch.randint(0, 5, (6, 7), generator=g) for _ in range(4))
    counts, totals, single = {}, {}, {}
    for a, b in zip(x.flatten().tolist(), y.flatten().tolist()):
        counts[a, b] = counts.get((a, b), 0) + 1
        totals[a] = totals.get(a, 0) + 1
        single[b] = single.get(b, 0) + 1
    s = 0.25
    bigram = -sum(math.log((counts.get((a, b), 0) + s) / (totals.get(a, 0) + 5 * s))
                  for a, b in zip(xt.flatten().tolist(), yt.flatten().tolist())) / xt.numel()
    unigram = -sum(math.log((single.get(b, 0) + s) / (y.numel() + 5 * s)) for b in yt.flatten().tolist()) / yt.numel()
    out = stability.count_model_losses(x, y, xt, yt, vocab=5, smoothing=s)
    assert out["bigram"] == pytest.approx(bigram) and out["unigram"] == pytest.approx(unigram)
    # a deterministic successor: the bigram's loss falls towards 0 as the smoothing does, the unigram's stays log 2
    seq = torch.tensor([0, 1] * 50)
    sharp = stability.count_model_losses(seq[:-1], seq[1:], seq[:-1], seq[1:], vocab=2, smoothing=1e-6)
    assert sharp["bigram"] < 1e-6 and sharp["unigram"] == pytest.approx(math.log(2), abs=0.01)
    with pytest.raises(ValueError):
        stability.count_model_losses([0, 1], [1], [0], [1], vocab=2)


def test_independent_weight_decay_shrinks_by_the_schedule_times_lambda_not_lr():
    p = torch.full((1, 4), 2.0)
    opt = FlatOptimizer("adamw", p)
    lr, factor, decay = 0.05, 0.3, 1e-2
    coupled = stability.independent_weight_decay(decay, lr)
    opt.step(torch.zeros(1, 4), torch.tensor([lr * factor]), torch.tensor([coupled]), torch.tensor([0.0]))
    assert torch.allclose(p, torch.full((1, 4), 2.0 * (1 - factor * decay)))     # zero gradient: decay only


def test_monitors_equal_direct_computations_on_the_trained_members():
    data = text.corpus(context=8, size=8_000, num_train=48, num_test=12)
    factory = lambda: TinyTransformer(96, context=8, width=8, depth=2, heads=2)   # noqa: E731
    history = engine.run(factory, data, [{"lr": 1e-2, "seed": 0}, {"lr": 1e-1, "seed": 1}], steps=4,
                         batch_size=8, eval_every=4, progress=False, loss=stability.ZLossCrossEntropy(1e-4),
                         monitors=[stability.attention_monitor(factory(), examples=5),
                                   stability.output_logit_monitor(("train", "test"))])
    for member, model in enumerate(history.models):
        stats = attention_stats(model, data.x_test[:5])
        assert history.final("attention", "max_logit", member) == pytest.approx(
            max(s["max_logit"].item() for s in stats), rel=1e-5)
        assert history.final("attention", "max_logit_1", member) == pytest.approx(stats[1]["max_logit"].item(), rel=1e-5)
        assert history.final("attention", "entropy", member) == pytest.approx(
            min(s["entropy"].item() for s in stats), rel=1e-5)
        with torch.no_grad():
            y = model(data.x_test).double()
        naive = torch.log(torch.exp(y).sum(-1)).mean().item()
        assert history.final("test", "log_z", member) == pytest.approx(naive, rel=1e-5)
        assert history.final("test", "mean_logit", member) == pytest.approx(y.mean().item(), rel=1e-5, abs=1e-6)


def test_recipe_trains_qk_layernorm_members_in_separate_calls():
    data = text.corpus(context=8, size=8_000, num_train=32, num_test=8)
    run = stability.recipe(data, vocab=96, context=8, width=8, depth=1, heads=2, steps=2, batch_size=8,
                           eval_every=2, progress=False, attention_examples=4)
    grid = run.sweep([{"qk_layernorm": False, "lr": 1e-2}, {"qk_layernorm": True, "lr": 1e-2, "z_loss": 1e-4}])
    assert [k["qk_layernorm"] for k in grid.knobs] == [False, True]
    assert [k["z_loss"] for k in grid.knobs] == [0.0, 1e-4]
    assert not hasattr(grid.models[0].blocks[0], "q_scale") and hasattr(grid.models[1].blocks[0], "q_scale")
    assert grid.has("attention", "max_logit") and grid.has("test", "log_z")
    independent = stability.recipe(data, vocab=96, context=8, width=8, depth=1, heads=2, steps=2, batch_size=8,
                                   eval_every=2, progress=False, decay="independent", lr=0.1, weight_decay=1e-3)
    coupled = stability.recipe(data, vocab=96, context=8, width=8, depth=1, heads=2, steps=2, batch_size=8,
                               eval_every=2, progress=False, lr=0.1, weight_decay=1e-2)      # λ / η
    a, b = independent(), coupled()
    assert a.knobs[0]["weight_decay"] == 1e-3 and a.knobs[0]["decay"] == "independent"
    assert a.final("test", "loss") == pytest.approx(b.final("test", "loss"), rel=1e-6)
    assert a.final("test", "loss") != pytest.approx(coupled(weight_decay=1e-3).final("test", "loss"), rel=1e-6)
