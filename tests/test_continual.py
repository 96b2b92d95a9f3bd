"""Continual learning: the task split, experience replay, the ER loss and the paper's metrics,
each against a hand computation."""
import math

import numpy as np
import pytest
import torch

from tdlab.methods.continual import continual
from tdlab.core import data, models
from tdlab.core.engine import Batch
from tdlab.core.losses import cross_entropy


def tiny_data(per_class: int = 6, classes: int = 4) -> data.Dataset:
    y = torch.arange(classes).repeat_interleave(per_class)
    x = torch.randn(len(y), 3, generator=torch.Generator().manual_seed(0))
    return data.Dataset("tiny", x, y, x.clone(), y.clone(), classes)


def test_tasks_split_steps_and_labels():
    tasks = continual.Tasks.split(10, 5, steps_per_task=7)
    assert tasks.classes == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))
    assert tasks.steps == 35 and tasks.ends == [7, 14, 21, 28, 35]
    assert [tasks.task_at(s) for s in (0, 1, 7, 8, 14, 15, 35)] == [0, 0, 0, 1, 1, 2, 4]
    assert tasks.task_of(torch.tensor([0, 3, 9, 4])).tolist() == [0, 1, 4, 2]
    with pytest.raises(ValueError):
        continual.Tasks.split(10, 3, 5)


def test_replay_batches_hold_the_current_task_then_the_memory():
    d = tiny_data()
    tasks = continual.Tasks.split(4, 2, steps_per_task=3)
    hook = continual.ExperienceReplay(d, tasks, batch_size=2, memory=3, seed=1)
    y = torch.zeros(2, 2, dtype=torch.long)                        # two members
    for step in range(1, 7):
        batch = hook(Batch(d.x_train[:2], y, torch.arange(2), step))
        labels = batch.y[0].tolist()
        assert batch.y.shape[0] == 2 and torch.equal(batch.y[0], batch.y[1])
        assert torch.equal(batch.x, d.x_train[batch.index])
        if step <= 3:                                              # task 1: no memory yet
            assert len(labels) == 2 and set(labels) <= {0, 1}
        else:                                                      # task 2, then 2 replayed of the 3 kept
            assert set(labels[:2]) <= {2, 3} and set(labels[2:]) <= {0, 1} and len(labels) == 4
            assert set(batch.index[2:].tolist()) <= set(hook.buffer.tolist())
    # class-balanced memory: 3 slots over classes 0, 1 → 2 + 1; over 4 classes after task 2 → 1 each,
    # and an old class keeps a prefix of what it kept before
    first, second = hook.memory_after(0), hook.memory_after(1)
    assert sorted(d.y_train[first].tolist()) == [0, 0, 1]
    assert len(second) == 3 and sorted(d.y_train[second].tolist()) == [0, 1, 2]
    assert second[0] == first[0]
    assert len(continual.ExperienceReplay(d, tasks, 2, memory=0).memory_after(1)) == 0


def test_replay_takes_every_task_example_once_per_epoch():
    d = tiny_data(per_class=4)
    tasks = continual.Tasks.split(4, 2, steps_per_task=4)
    hook = continual.ExperienceReplay(d, tasks, batch_size=4, memory=0, seed=0)
    y = torch.zeros(1, 4, dtype=torch.long)
    seen = [hook(Batch(d.x_train[:4], y, torch.arange(4), s)).index.tolist() for s in (1, 2)]
    assert sorted(seen[0] + seen[1]) == sorted(torch.nonzero(d.y_train < 2).flatten().tolist())


def test_replay_loss_weights_new_and_replayed_examples():
    torch.manual_seed(0)
    logits, targets = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    loss = continual.ReplayCrossEntropy(new_weight=0.3, new_count=2)
    loss.new_weight = torch.tensor([0.3, 0.8])                      # per member, as the loop sets it
    out = loss(logits, targets)
    for e, w in enumerate((0.3, 0.8)):
        naive = (w * cross_entropy(logits[e, :2], targets[e, :2])
                 + (1 - w) * cross_entropy(logits[e, 2:], targets[e, 2:]))
        assert math.isclose(float(out[e]), float(naive), rel_tol=1e-6)
    only_new = continual.ReplayCrossEntropy(0.3, new_count=5)(logits, targets)      # empty memory
    assert torch.allclose(only_new, 0.3 * cross_entropy(logits, targets))


def test_metrics_against_a_hand_computed_example():
    # two tasks of 2 steps each, then a third; evaluated every step
    steps = [0, 1, 2, 3, 4, 5, 6]
    task1 = [0.1, 0.8, 0.9, 0.4, 0.7, 0.5, 0.8]
    task2 = [0.0, 0.0, 0.0, 0.6, 0.9, 0.3, 0.6]
    task3 = [0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.9]
    curves = np.array([task1, task2, task3])
    tasks = continual.Tasks.split(6, 3, steps_per_task=2)
    assert continual.min_accuracy(steps, task1, task_end=2) == 0.4           # steps 3..6
    assert continual.min_accuracy(steps, task2, task_end=4) == 0.3           # steps 5..6
    assert continual.min_accuracy(steps, task1, task_end=2, until=3) == 0.4
    assert math.isnan(continual.min_accuracy(steps, task3, task_end=6))
    assert math.isclose(continual.average_min_accuracy(steps, curves, tasks), (0.4 + 0.3) / 2)
    # WC-ACC at step 4 (task 2 trained): (A_2(4) + min-ACC_1 up to 4) / 2 = (0.9 + 0.4) / 2
    assert math.isclose(continual.worst_case_accuracy(steps, curves, tasks, 4), 0.65)
    # at step 6: (A_3(6) + min over 3..6 of task 1 + min over 5..6 of task 2) / 3
    assert math.isclose(continual.worst_case_accuracy(steps, curves, tasks, 6), (0.9 + 0.4 + 0.3) / 3)
    # windowed forgetting: largest A_i − A_j (i < j) at most w − 1 evaluations apart
    assert math.isclose(continual.windowed_forgetting(task1, window=2), 0.5)           # 0.9 → 0.4
    assert math.isclose(continual.windowed_forgetting(task2, window=2), 0.6)           # 0.9 → 0.3
    assert math.isclose(continual.windowed_forgetting([1.0, 0.9, 0.8, 0.2], window=3), 0.7)
    assert math.isclose(continual.windowed_forgetting([1.0, 0.9, 0.8, 0.2], window=4), 0.8)
    assert continual.windowed_forgetting([0.1, 0.2, 0.3], window=10) == 0.0


def test_stability_gap_against_a_hand_computation():
    steps = np.arange(7)
    curves = np.array([[0.1, 0.8, 0.9, 0.4, 0.7, 0.5, 0.8],
                       [0.0, 0.0, 0.0, 0.6, 0.9, 0.3, 0.6],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.9]])
    tasks = continual.Tasks.split(6, 3, steps_per_task=2)           # task ends 2, 4, 6
    # task ends only: task 1 min(0.7, 0.8) = 0.7, task 2 min(0.6) = 0.6; every step: 0.4 and 0.3 (as above)
    assert math.isclose(continual.stability_gap(steps, curves, tasks), (0.7 + 0.6) / 2 - (0.4 + 0.3) / 2)
    # the first step of tasks 2 and 3 (steps 3 and 5) left out: task 1 min(0.7, 0.8) over 4, 6 → 0.7; task 2 0.6
    after = continual.after_switches(steps, tasks, window=1)
    assert after.tolist() == [False, False, False, True, False, True, False]
    assert continual.after_switches(steps, tasks, window=2).tolist() == [False] * 3 + [True] * 4
    assert math.isclose(continual.stability_gap(steps, curves, tasks, evaluated=~after), 0.0, abs_tol=1e-12)
    assert continual.stability_gap(steps, curves, tasks) >= 0


def test_switches_find_the_dip_and_the_recovery():
    steps = [0, 1, 2, 3, 4, 5, 6]
    curves = np.array([[0.1, 0.8, 0.9, 0.4, 0.7, 0.5, 0.8],
                       [0.0, 0.0, 0.0, 0.6, 0.9, 0.3, 0.6],
                       [0.0, 0.0, 0.0, 0.0, 0.0, 0.7, 0.9]])
    first, second = continual.switches(steps, curves, continual.Tasks.split(6, 3, 2), window=1)
    assert (first.task, first.before, first.lowest, first.lowest_step, first.after) == (1, 0.9, 0.4, 3, 0.7)
    assert math.isclose(first.dip, 0.5) and math.isclose(first.recovery, 0.3)
    # into task 3: the mean of tasks 1 and 2 — (0.7 + 0.9) / 2 before, (0.5 + 0.3) / 2 at step 5, (0.8 + 0.6) / 2 at the end
    assert math.isclose(second.before, 0.8) and math.isclose(second.lowest, 0.4) and math.isclose(second.after, 0.7)


def brute_force_forgetting(values, window):
    return max([values[i] - values[j] for j in range(len(values)) for i in range(max(0, j - window + 1), j)] + [0.0])


def test_windowed_forgetting_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = list(rng.random(rng.integers(1, 30)))
        for window in (2, 3, 10):
            assert math.isclose(continual.windowed_forgetting(values, window), brute_force_forgetting(values, window))


def test_recipe_trains_tasks_in_order_and_logs_each_task():
    d = tiny_data(per_class=8, classes=4)
    recipe = continual.recipe(lambda: d, lambda: models.MLP(3, 4, width=8, depth=1), num_tasks=2, steps_per_task=5,
                              batch_size=4, memory=4, optimizer="sgd", lr=0.1, progress=False)
    h = recipe.sweep([{"new_weight": 0.3}, {"new_weight": 0.7}])
    tasks = continual.tasks_of(h)
    assert tasks.steps == 10 and h.knobs[1]["new_weight"] == 0.7 and h.knobs[0]["memory"] == 4
    steps, curves = continual.task_curves(h, tasks, 1)
    assert list(steps) == list(range(11)) and curves.shape == (2, 11)
    # "acc seen" is the mean over the tasks trained so far
    seen = h.curve("test", "acc seen", 1)[1]
    assert math.isclose(seen[3], curves[0][3]) and math.isclose(seen[8], curves[:, 8].mean())
    # one stacked call equals separate runs
    alone = recipe(new_weight=0.7)
    assert np.allclose(alone.curve("test", "acc task 1")[1], curves[0])
    coarse = recipe(new_weight=0.7, eval_period=5)                  # the evaluation period is a knob
    assert coarse.knobs[0]["eval_period"] == 5 and list(coarse.curve("test", "acc task 1")[0]) == [0, 5, 10]
    assert np.allclose(coarse.curve("test", "acc task 1")[1], curves[0][[0, 5, 10]])
