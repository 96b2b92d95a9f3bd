"""The paper smoke run (issue 34 item 1: tdlab.core.smoke, tools/paper_smoke.py): its generated archives read
through the real loaders at the shapes and class counts asked for, its cut-down data keeps every class, and a paper recipe runs its few steps."""
import pytest
import torch

import sys
from pathlib import Path

from tdlab.core import archives, data, recipes
from tdlab.core import smoke as paper_smoke

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import paper_smoke as tool  # noqa: E402  (the chapters' paper-scale calls)


@pytest.mark.parametrize("classes", [10, 100])
def test_generated_cifar_archive_reads_through_the_loader(tmp_path, monkeypatch, classes):
    monkeypatch.setitem(data.SOURCES[f"cifar{classes}"], "md5", None)
    name = data.SOURCES[f"cifar{classes}"]["url"].rsplit("/", 1)[1]
    archives.write_cifar_archive(tmp_path / name, classes, num_train=23, num_test=7)
    d = data.cifar(classes, root=tmp_path)
    assert d.x_train.shape == (23, 3, 32, 32) and d.x_test.shape == (7, 3, 32, 32) and d.num_classes == classes
    counts = [5, 5, 5, 5, 3] if classes == 10 else [23]       # CIFAR-10: five training batches, labels cycling in each
    assert d.y_train.tolist() == [i % classes for n in counts for i in range(n)]
    assert d.y_test.tolist() == [i % classes for i in range(7)]
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0


def test_generated_idx_files_read_through_the_loader(tmp_path):
    archives.write_idx_files(tmp_path / "mnist", num_train=12, num_test=5)
    d = data.idx_images("mnist", root=tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (5, 1, 28, 28)
    assert d.y_train.tolist() == [i % 10 for i in range(12)] and d.y_test.tolist() == list(range(5))


def test_generated_letter_file_reads_through_the_loader(tmp_path):
    archives.write_letter_file(tmp_path / "letter-recognition.data", rows=30)
    d = data.letter(root=tmp_path, num_train=20)
    assert d.x_train.shape == (20, 16) and d.x_test.shape == (10, 16) and d.num_classes == 26
    assert d.y_train.tolist() == list(range(20)) and d.y_test.tolist() == [20, 21, 22, 23, 24, 25, 0, 1, 2, 3]
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) <= 1.0      # features 0–15, ÷ 15


def test_balanced_slice_keeps_the_first_examples_of_every_class_aligned():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (40,), generator=g)
    d = data.Dataset("toy", torch.arange(40.0)[:, None], y, torch.arange(30.0)[:, None], y[:30], 5,
                     y_train_true=(y + 1) % 5, corrupted_mask=y > 2)
    small = paper_smoke.balanced_slice(d, per_class=2, limit=64)
    expected = sorted(i for c in range(5) for i in [j for j in range(40) if int(y[j]) == c][:2])   # brute force
    assert small.x_train[:, 0].long().tolist() == expected
    assert torch.equal(small.y_train, y[expected]) and torch.equal(small.y_train_true, (y[expected] + 1) % 5)
    assert torch.equal(small.corrupted_mask, y[expected] > 2)
    assert sorted(set(small.y_test.tolist())) == sorted(set(y[:30].tolist()))


def test_shrunk_recipe_keeps_the_data_makers_knobs_and_cuts_steps_and_batch():
    recipe = recipes.Recipe(lambda train_size=30: data.digits().subset(train_size),
                            lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
                            dict(optimizer="sgd", lr=0.1, batch_size=128, steps=500, eval_every=100))
    small = paper_smoke.shrunk(recipe, steps=3, batch=4)
    assert small.settings["steps"] == 3 and small.settings["batch_size"] == 4 and recipe.settings["steps"] == 500
    assert "train_size" in small.knob_names()
    history = small.sweep([{"train_size": 30}, {"train_size": 50}])
    assert history.num_members == 2 and max(r["step"] for r in history.records) == 3
    assert small._data({"train_size": 50}).num_train <= paper_smoke.MAX_EXAMPLES


def test_a_paper_recipe_runs_its_steps_on_generated_mnist(tmp_path, monkeypatch):
    """The stability-gap chapter's paper recipe (Split-MNIST, replay) on small generated IDX files."""
    monkeypatch.setenv("TDLAB_DATA", str(tmp_path))
    archives.write_idx_files(tmp_path / "mnist", num_train=200, num_test=50)
    (case,) = [c for c in tool.cases() if c.chapter == "08_continual/01_stability_gap"]
    result = paper_smoke.smoke(case)
    assert result.error is None, result.error
    assert result.paper_batch == 256 and result.parameters == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10


def test_a_failing_recipe_is_reported_with_its_chapter():
    case = paper_smoke.Case("99_part/99_chapter", "broken", lambda: 1 / 0, [{}])
    result = paper_smoke.smoke(case)
    assert result.chapter == "99_part/99_chapter" and result.error.startswith("ZeroDivisionError")


def test_every_chapter_is_smoke_run_or_named_inline():
    from pathlib import Path
    book = Path(__file__).resolve().parents[1] / "book"
    chapters = {str(p.relative_to(book).with_suffix("")) for p in book.glob("[0-9]*/*.ipynb")}
    covered = {c.chapter for c in tool.cases()} | set(tool.INLINE) | set(tool.CANNOT_RUN)
    assert chapters == covered, (chapters - covered, covered - chapters)


def test_flops_per_example_against_the_matrix_products_counted_by_hand():
    """A 64 → 32 → 10 MLP: forward 2·(64·32 + 32·10) per example; backward the two weight gradients (as many
    again) and the hidden layer's input gradient (2·32·10); the input needs no gradient."""
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    forward = 2 * (64 * 32 + 32 * 10)
    assert paper_smoke.example_flops(mlp, torch.randn(8, 64)) == forward + forward + 2 * 32 * 10


def test_paper_flops_and_gpu_hours():
    settings = {"steps": 100, "batch_size": 10, "eval_every": 50}       # evaluations at 0, 50 and 100
    total = paper_smoke.paper_flops(6.0, settings, num_train=300, num_test=60, members=2)
    assert total == 2 * 6.0 * (100 * 10 + 3 * 360 / 3)
    hours = paper_smoke.gpu_hours(paper_smoke.REFERENCE_TFLOPS * 1e12 * paper_smoke.UTILIZATION * 3600)
    assert abs(hours - 1.0) < 1e-12
