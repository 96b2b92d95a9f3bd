"""grokking.until: the first steps of a longer run, as the corrupted-grokking chapter's phase diagram
reads its long forgetting run at the grid's budget."""
import numpy as np
import pytest

from tdlab.core import data, models, sweep
from tdlab.methods.grokking import grokking
from tdlab.core.history import History


def test_until_keeps_the_evaluations_up_to_the_step_and_relabels_the_budget():
    history = History(knobs=[{"weight_decay": 20.0, "steps": 50}], diverged_at=[None])
    for step in range(0, 51, 10):
        history.log(step, "test", "acc", step / 100)
    short = grokking.until(history, 20)
    assert list(short.curve("test", "acc")[0]) == [0, 10, 20]
    assert short.final("test", "acc") == pytest.approx(0.2)
    assert short.knobs == [{"weight_decay": 20.0, "steps": 20}] and short.models == [None]
    assert history.knobs[0]["steps"] == 50 and len(history.records) == 6      # the original is untouched
    with pytest.raises(ValueError, match="no evaluation at step 25"):
        grokking.until(history, 25)


def test_until_of_a_long_run_equals_the_short_run():
    clean = data.modular_arithmetic(13, train_fraction=0.6, seed=1)
    members = [{"weight_decay": 0.0, "noise_rate": 0.3}, {"weight_decay": 5.0, "noise_rate": 0.3}]
    common = dict(loss="mse", optimizer="adamw", lr=1e-2, batch_size=None, eval_every=10, noise="uniform",
                  noise_seed=2, progress=False)
    factory = lambda: models.QuadraticModularNet(13, 16)  # noqa: E731
    long, short = (sweep.sweep(factory, clean, members, steps=steps, **common) for steps in (60, 30))
    cut = grokking.until(long, 30)
    assert cut.knobs == short.knobs
    for m in range(len(members)):
        for split, metric in (("train", "loss"), ("test", "acc"), ("train_corrupted", "acc_true")):
            steps, values = cut.curve(split, metric, m)
            np.testing.assert_array_equal(steps, short.curve(split, metric, m)[0])
            np.testing.assert_allclose(values, short.curve(split, metric, m)[1], atol=1e-6)
