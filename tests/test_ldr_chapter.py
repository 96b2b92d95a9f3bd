"""The measurements of the LDR-KL chapter: ALDR-KL's per-example λ, split by the label's truth."""
import itertools

import pytest
import torch

from tdlab.core import data, engine, models, monitors


def brute_force_auc(scores, positive):
    pairs = [(p, n) for p, n in itertools.product(scores[positive].tolist(), scores[~positive].tolist())]
    return sum(1.0 if p < n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lower_rank_auc_against_all_pairs(seed):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 6, (40,), generator=gen).float()          # many ties
    positive = torch.rand(40, generator=gen) < 0.3
    assert monitors.lower_rank_auc(scores, positive) == pytest.approx(brute_force_auc(scores, positive))
    assert monitors.lower_rank_auc(scores, torch.zeros(40, dtype=torch.bool)) is None


def test_lambda_monitor_reads_the_loss_buffer_per_member():
    d = data.load("digits", device="cpu")
    seen = {}

    def grab(ev):                                  # the buffer and the mask as the loop holds them
        seen["lambdas"], seen["corrupted"] = ev.loss.lambdas.clone(), ev.corrupted.clone()
        return {}

    h = engine.run(lambda: models.MLP(64, 10, width=16), d, [{"lam": 10.0}, {"lam": 5.0}], loss="aldr_kl",
                   alpha=2.0, noise="uniform", noise_rate=0.5, noise_seed=3, steps=30, eval_every=30,
                   batch_size=64, monitors=[monitors.aldr_lambdas, grab], progress=False)
    redrawn = data.with_label_noise(d, "uniform", 0.5, 3).corrupted_mask
    assert torch.equal(seen["corrupted"][0], redrawn) and 0.3 < redrawn.float().mean() < 0.6
    for member, lam0 in enumerate((10.0, 5.0)):
        lam, corrupted = seen["lambdas"][member], redrawn
        assert lam0 / 2 - 1e-4 <= lam.min() <= lam.max() <= lam0 + 1e-4           # λ_i ∈ [λ0 (1 − 1/α), λ0]
        assert h.final("train", "lambda", member) == pytest.approx(lam.mean().item(), rel=1e-6)
        assert h.final("train_clean", "lambda", member) == pytest.approx(lam[~corrupted].mean().item(), rel=1e-6)
        assert h.final("train_corrupted", "lambda", member) == pytest.approx(lam[corrupted].mean().item(), rel=1e-6)
        assert h.final("train", "lambda_auc", member) == pytest.approx(brute_force_auc(lam, corrupted))
    with pytest.raises(ValueError, match="aldr_kl"):
        engine.run(lambda: models.MLP(64, 10, width=16), d, [{}], steps=2, eval_every=2,
                   monitors=[monitors.aldr_lambdas], progress=False)
