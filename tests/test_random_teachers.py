"""tdlab.methods.representations.random_teachers: the distillation loss, the student's initialisation near the teacher, the
k-NN and linear-probe readings of frozen features — each against an independent computation."""
import math
from collections import Counter

import pytest
import torch

from tdlab.methods.representations import random_teachers as rt
from tdlab.core.data import Dataset


def test_loss_matches_the_naive_formula_per_member():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, 7), torch.randn(5, 7)
    tau_s, tau_t = torch.tensor([0.1, 0.5, 1.0]), torch.tensor([0.04, 1.0, 2.0])
    got = rt.distillation_loss(student, teacher, tau_s, tau_t)
    for e in range(3):
        total = 0.0
        for b in range(5):
            zt = [float(v) / float(tau_t[e]) for v in teacher[b]]
            zs = [float(v) / float(tau_s[e]) for v in student[e, b]]
            pt = [math.exp(v) / sum(math.exp(w) for w in zt) for v in zt]
            log_norm = math.log(sum(math.exp(w) for w in zs))
            total += -sum(p * (z - log_norm) for p, z in zip(pt, zs))
        assert float(got[e]) == pytest.approx(total / 5, rel=1e-5)


def test_engine_loss_looks_up_the_teacher_by_index_and_ignores_labels():
    torch.manual_seed(1)
    table, logits = torch.randn(10, 4), torch.randn(2, 3, 4)
    index = torch.tensor([7, 2, 2])
    loss = rt.DistillationLoss(table, 0.1, 0.04)
    expected = rt.distillation_loss(logits, table[index], 0.1, 0.04)
    assert torch.allclose(loss(logits, torch.zeros(2, 3, dtype=torch.long), index), expected)
    assert torch.allclose(loss(logits, torch.ones(2, 3, dtype=torch.long), index), expected)
    # the student exactly at the teacher, same temperature: the loss is the teacher's entropy
    same = rt.distillation_loss(table, table, 1.0, 1.0)
    p = torch.softmax(table, -1)
    assert float(same) == pytest.approx(float(-(p * p.log()).sum(-1).mean()), rel=1e-6)


def _tiny():
    return rt.mlp_net(6, width=8, depth=1, out_dim=5, hidden=(7,), bottleneck=3)


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_distance_zero_is_the_teacher_and_the_knob_gives_the_stated_distance():
    build = _tiny()
    factory = rt.NearTeacher(build, teacher_seed=11)
    teacher = factory.teacher()
    assert torch.equal(_flat(teacher), _flat(factory.teacher()))          # the same teacher every call
    torch.manual_seed(3)
    student = factory()
    assert torch.equal(_flat(student), _flat(teacher))                    # α = 0: the teacher exactly
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())
    with rt.seeded(5):
        random = build()
    for alpha in (0.1, 0.5, 1.0):
        moved = rt.near_teacher(teacher, random, alpha)
        assert rt.parameter_distance(moved, teacher) == pytest.approx(
            alpha * rt.parameter_distance(random, teacher), rel=1e-5)
        assert torch.allclose(_flat(moved), (1 - alpha) * _flat(teacher) + alpha * _flat(random))
    assert torch.equal(_flat(rt.near_teacher(teacher, random, 1.0)), _flat(random))   # α = 1: independent
    eps = 0.3
    moved = rt.near_teacher(teacher, random, eps, mode="neighborhood")
    assert rt.parameter_distance(moved, teacher) == pytest.approx(eps * float(_flat(random).norm()), rel=1e-5)
    preserved = rt.near_teacher(teacher, random, 0.5, variance_preserving=True)
    assert torch.allclose(_flat(preserved), (0.5 * _flat(teacher) + 0.5 * _flat(random)) / math.sqrt(0.5))
    # the factory's students: seeded by the engine's member seed, at the factory's distance
    factory.derive(init_distance=0.25)
    torch.manual_seed(4)
    a = factory()
    torch.manual_seed(4)
    random4 = build()
    assert torch.allclose(_flat(a), 0.75 * _flat(teacher) + 0.25 * _flat(random4))


def _brute_knn(train, y_train, test, y_test, k):
    correct = 0
    for x, y in zip(test.tolist(), y_test.tolist()):
        distances = sorted((math.dist(x, t), i) for i, t in enumerate(train.tolist()))
        votes = Counter(int(y_train[i]) for _, i in distances[:k])
        top = max(votes.values())
        correct += min(label for label, n in votes.items() if n == top) == y
    return correct / len(test)


@pytest.mark.parametrize("k", [1, 3, 4])
def test_knn_matches_brute_force(k):
    g = torch.Generator().manual_seed(k)
    train, test = torch.randn(30, 3, generator=g), torch.randn(12, 3, generator=g)
    y_train, y_test = torch.randint(0, 3, (30,), generator=g), torch.randint(0, 3, (12,), generator=g)
    assert rt.knn_accuracy(train, y_train, test, y_test, k, normalize=False) == pytest.approx(
        _brute_knn(train, y_train, test, y_test, k))
    mean, std = train.mean(0), train.std(0)
    assert rt.knn_accuracy(train, y_train, test, y_test, k) == pytest.approx(
        _brute_knn((train - mean) / std, y_train, (test - mean) / std, y_test, k))


def test_linear_probe_separates_a_separable_toy_set():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    y = torch.arange(3).repeat(40)
    x = centres[y] + 0.3 * torch.randn(120, 3, generator=g)
    assert rt.linear_probe(x[:90], y[:90], x[90:], y[90:], epochs=60, batch_size=16) == 1.0


def test_recipe_trains_and_measures():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=g), torch.randint(0, 2, (64,), generator=g)
    data = Dataset("toy", x[:48], y[:48], x[48:], y[48:], 2)
    recipe = rt.recipe(data, _tiny(), teacher_seed=1, knn_k=3, optimizer="adamw", lr=1e-2, batch_size=16,
                       steps=30, eval_every=15, progress=False)
    history = recipe.sweep([{"seed": 0}, {"seed": 1}], init_distance=1.0)
    assert history.knobs[0]["init_distance"] == 1.0 and len(history.models) == 2
    teacher = recipe.model.teacher()
    for m in range(2):
        torch.manual_seed(m)                      # the student each member started from
        student = rt.near_teacher(teacher, _tiny()(), 1.0)
        expected = rt.distillation_loss(student(data.x_train), teacher(data.x_train), 0.1, 0.04).detach()
        assert history.curve("train", "distill", m)[1][0] == pytest.approx(float(expected), rel=1e-5)
        assert history.curve("test_knn", "acc", m)[1][0] == pytest.approx(rt.knn_accuracy(
            student.features(data.x_train).detach(), data.y_train, student.features(data.x_test).detach(),
            data.y_test, 3))
    # one stacked call equals the members trained alone
    alone = recipe.sweep([{"seed": 1}], init_distance=1.0)
    assert torch.allclose(_flat(history.models[1]), _flat(alone.models[0]), atol=1e-5)
