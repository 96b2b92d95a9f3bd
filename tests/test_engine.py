"""The one loop: open evaluation (monitors see the loop's own logits), typed History, recipes."""
import numpy as np
import pytest
import torch

from tdlab.core import augment, data, engine, losses, models, monitors, progress, recipes, sweep, train
from tdlab.book import chapter
from tdlab.core.history import History, concat


@pytest.fixture(scope="module")
def digits():
    return data.digits()


def mlp():
    return models.MLP(64, 10, width=16, depth=1)


def test_train_is_the_one_member_case_of_sweep(digits):
    """train() and a one-member sweep take the same knobs and give the same History."""
    common = dict(noise_rate=0.3, noise_seed=4, loss="elr", lam=2.0, beta=0.6, steps=30, eval_every=10,
                  batch_size=64, progress=False)
    one = train.train(mlp, digits, seed=2, data_seed=5, **common)
    many = sweep.sweep(mlp, digits, [{"seed": 2}], data_seed=5, batched=False, **common)
    assert one.knobs == many.knobs
    assert one.frame["value"].tolist() == many.frame["value"].tolist()
    knobs = one.knobs[0]
    for key, value in dict(seed=2, noise_rate=0.3, noise_seed=4, lam=2.0, beta=0.6, loss="elr",
                           optimizer="adamw", steps=30, batch_size=64, data_seed=5).items():
        assert knobs[key] == value, key


def test_monitors_receive_the_loops_logits(digits):
    """A monitor sees, per member, exactly the logits of the model at that step (checked at the end)."""
    seen = {}

    def spy(ev):
        seen[ev.step] = {split: z.clone() for split, z in ev.logits.items()}
        return {("train", "mean_logit"): ev.logits["train"].mean(dim=(1, 2))}

    history = sweep.sweep(mlp, digits, [{"seed": 0}, {"seed": 1, "lr": 3e-3}], monitors=[spy], steps=20,
                          eval_every=10, progress=False)
    assert sorted(seen) == [0, 10, 20]
    for member, model in enumerate(history.models):
        torch.testing.assert_close(seen[20]["test"][member], monitors.logits(model, digits.x_test), atol=1e-5,
                                   rtol=0)
        assert history.final("train", "mean_logit", member) == pytest.approx(
            monitors.logits(model, digits.x_train).mean().item(), abs=1e-5)


def test_accuracy_on_a_subset_equals_brute_force(digits):
    mask = digits.y_test % 3 == 0
    history = train.train(mlp, digits, monitors=[monitors.accuracy_on("threes", mask)], steps=20,
                          eval_every=20, progress=False)
    predicted = monitors.logits(history.model, digits.x_test).argmax(-1)
    expected = np.mean([(predicted[i] == digits.y_test[i]).item() for i in range(len(mask)) if mask[i]])
    assert history.final("test_threes", "acc") == pytest.approx(expected, abs=1e-7)
    with pytest.raises(ValueError, match="boolean"):
        monitors.accuracy_on("bad", digits.y_test)


def test_train_subset_evaluation_equals_brute_force_on_those_examples(digits):
    """eval_train_subset=n: the train split's loss and accuracy are those of the final models on the n
    examples of engine.train_subset (recomputed here by hand), the test split is the whole one (equal to
    a run without the option), and the training itself is unchanged."""
    common = dict(steps=20, eval_every=10, batch_size=64, data_seed=3, progress=False)
    sub = sweep.sweep(mlp, digits, [{"seed": 0}, {"seed": 1, "lr": 3e-3}], eval_train_subset=100, **common)
    full = sweep.sweep(mlp, digits, [{"seed": 0}, {"seed": 1, "lr": 3e-3}], **common)
    pick = engine.train_subset(digits.num_train, 100, 3)
    assert len(set(pick.tolist())) == 100 and torch.equal(pick, engine.train_subset(digits.num_train, 100, 3))
    for member in range(2):
        model = sub.models[member]
        with torch.no_grad():
            logits = model(digits.x_train[pick])
        loss = torch.nn.functional.cross_entropy(logits, digits.y_train[pick]).item()
        acc = (logits.argmax(-1) == digits.y_train[pick]).float().mean().item()
        assert sub.final("train", "loss", member) == pytest.approx(loss, rel=1e-5)
        assert sub.final("train", "acc", member) == pytest.approx(acc)
        assert sub.final("test", "loss", member) == pytest.approx(full.final("test", "loss", member), rel=1e-6)
        assert sub.final("train", "loss", member) != pytest.approx(full.final("train", "loss", member), rel=1e-6)
        assert sub.knobs[member]["eval_train_subset"] == 100 and "eval_train_subset" not in full.knobs[member]
    with pytest.raises(ValueError):
        sweep.sweep(mlp, digits, [{"seed": 0}], eval_train_subset=digits.num_train + 1, **common)


def test_accuracy_on_fixed_labels_scores_every_member_against_them(digits):
    """``labels=``: the members are scored against one fixed set of labels, not the ones they train on."""
    mask = digits.y_train % 2 == 0
    other = (digits.y_train + 1) % 10                       # labels no member trains on
    history = train.train(mlp, digits, monitors=[monitors.accuracy_on("other", mask, split="train", labels=other)],
                          steps=20, eval_every=20, progress=False)
    predicted = monitors.logits(history.model, digits.x_train).argmax(-1)
    expected = (predicted[mask] == other[mask]).float().mean().item()
    assert history.final("train_other", "acc") == pytest.approx(expected, abs=1e-7)
    with pytest.raises(ValueError, match="shape"):
        monitors.accuracy_on("bad", mask, labels=other[:5])


def test_a_member_without_corrupted_examples_logs_no_corrupted_split(digits):
    history = sweep.sweep(mlp, digits, [{"noise_rate": 0.0}, {"noise_rate": 0.4}], steps=10, eval_every=10,
                          progress=False)
    assert not any(r["split"] == "train_corrupted" and r["member"] == 0 for r in history.records)
    assert history.has("train_corrupted", "acc_true")
    assert history.knobs[0]["noise_rate"] == 0.0 and history.knobs[1]["noise_rate"] == 0.4


def test_history_keeps_models_through_member_select_concat(digits):
    history = sweep.sweep(mlp, digits, [{"lr": 1e-3}, {"lr": 3e-3}, {"lr": 1e-2}], steps=5, eval_every=5,
                          progress=False)
    assert all(isinstance(m, torch.nn.Module) for m in history.models)
    assert history.member(2).model is history.models[2]
    picked = history.select(lr=[1e-3, 1e-2])
    assert picked.models == [history.models[0], history.models[2]]
    joined = concat([history.member(1), history.member(0)])
    assert joined.models == [history.models[1], history.models[0]]
    with pytest.raises(ValueError, match="members"):
        history.model
    with pytest.raises(ValueError, match="as many"):
        History(knobs=[{}, {}], models=[None])


def test_models_that_cannot_be_stacked_run_one_at_a_time(digits):
    class WithBatchNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
                                           torch.nn.ReLU(), torch.nn.Linear(16, 10))

        def forward(self, x):
            return self.net(x)

    members = [{"seed": 0}, {"seed": 1}]
    history = sweep.sweep(WithBatchNorm, digits, members, steps=10, eval_every=5, progress=False)
    assert history.num_members == 2 and history.knobs[1]["seed"] == 1
    with pytest.raises(ValueError, match="batch norm"):
        sweep.sweep(WithBatchNorm, digits, members, steps=2, progress=False, batched=True)


def test_hook_settings_and_tags_are_recorded(digits):
    hook = augment.compose(augment.cutout(2, seed=1), augment.mixup(0.0, 10))
    history = train.train(mlp, digits, batch_hook=hook, loss="soft_ce", tags={"variant": "a"}, steps=3,
                          eval_every=3, progress=False)
    knobs = history.knobs[0]
    assert knobs["cutout_size"] == 2 and knobs["mixup_alpha"] == 0.0 and knobs["variant"] == "a"


def test_mixup_with_alpha_zero_is_erm(digits):
    """The knob off is the baseline: mixup(α = 0) trains exactly as no hook."""
    common = dict(loss="soft_ce", steps=20, eval_every=10, progress=False)
    plain = train.train(mlp, digits, **common)
    off = train.train(mlp, digits, batch_hook=augment.mixup(0.0, 10), **common)
    assert plain.frame["value"].tolist() == off.frame["value"].tolist()


def test_recipe_trains_groups_and_records_every_knob(digits):
    made = []

    def hook(mixup_alpha=0.0):
        made.append(mixup_alpha)
        return {"batch_hook": augment.mixup(mixup_alpha, 10, seed=3)}

    recipe = recipes.Recipe(digits, mlp, {"loss": "soft_ce", "steps": 12, "eval_every": 6, "progress": False,
                                          "seed": 7}, (hook,))
    members = [{"mixup_alpha": 1.0, "lr": 3e-3}, {"mixup_alpha": 0.0}, {"mixup_alpha": 1.0, "lr": 1e-3}]
    history = recipe.sweep(members)
    assert sorted(made) == [0.0, 1.0]                       # one engine call per hook
    assert [k["mixup_alpha"] for k in history.knobs] == [1.0, 0.0, 1.0]
    assert [k["lr"] for k in history.knobs] == [3e-3, 1e-3, 1e-3]
    assert all(k["seed"] == 7 for k in history.knobs)
    single = recipe(mixup_alpha=1.0, lr=1e-3)                  # the panel's run, off the grid
    assert single.frame["value"].tolist() == history.member(2).frame["value"].tolist()
    with pytest.raises(ValueError, match="unknown knob 'alpah'"):
        recipe(alpah=1.0)


def test_a_knob_a_derivation_reads_reaches_the_engine_too(digits):
    """A derivation that reads lr (to build an optimizer, say) must not leave the engine at its own default."""
    seen = []

    def optimizer(lr=3e-2):
        seen.append(lr)
        return {"optimizer": "sgd"}

    recipe = recipes.Recipe(digits, mlp, {"steps": 5, "eval_every": 5, "progress": False, "momentum": 0.0}, (optimizer,))
    by_default = recipe()
    explicit = train.train(mlp, digits, optimizer="sgd", lr=3e-2, momentum=0.0, steps=5, eval_every=5, progress=False)
    assert by_default.knobs[0]["lr"] == 3e-2 and seen == [3e-2]
    assert by_default.frame["value"].tolist() == explicit.frame["value"].tolist()


def test_recipe_derived_data_is_built_once_per_setting(digits):
    calls = []

    def split(train_fraction=0.5):
        calls.append(train_fraction)
        return data.modular_arithmetic(5, "add", train_fraction, seed=0)

    recipe = recipes.Recipe(split, lambda: models.MLP(10, 5, width=8), {"steps": 2, "eval_every": 2,
                                                                        "batch_size": None, "progress": False})
    assert recipe().knobs[0]["train_fraction"] == 0.5
    recipe(lr=3e-3)
    assert recipe(train_fraction=0.8).knobs[0]["train_fraction"] == 0.8
    assert calls == [0.5, 0.8]
    assert recipe.dataset.num_train == 12


def test_chapter_formatting_and_summary():
    assert chapter.fmt(0.4567) == "45.7%" and chapter.fmt(300.0) == "300" and chapter.fmt(float("nan")) == "never"
    assert chapter.fmt("text") == "text" and chapter.fmt(16.64) == "16.64"
    frame = chapter.table({"a": {"x": 0.5, "y": 3.0}, "b": {"x": 0.25}})
    assert frame.loc["y", "b"] == "" and frame.loc["x", "b"] == "25.0%"
    h = History(knobs=[{}])
    for step, (test, corrupted, true) in enumerate([(0.2, 0.1, 0.2), (0.7, 0.2, 0.6), (0.5, 0.9, 0.3)]):
        h.log(step * 10, "test", "acc", test)
        h.log(step * 10, "train_corrupted", "acc", corrupted)
        h.log(step * 10, "train_corrupted", "acc_true", true)
    summary = chapter.memorization(h)
    assert summary["step of the peak"] == 10 and summary["drop after the peak"] == pytest.approx(0.2)
    assert summary["corrupted: true label (peak)"] == 0.6


def test_progress_is_silent_where_no_one_watches(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert isinstance(progress.bar(10, "x"), progress.Silent)
    monkeypatch.delenv("CI")
    monkeypatch.delenv("TDLAB_QUIET", raising=False)
    monkeypatch.setenv("TDLAB_STATIC", "1")
    assert progress.where() == "none"


def test_loss_registry_has_every_loss_once():
    assert set(losses.LOSSES) == {"ce", "softmax_ce", "mse", "elr", "stablemax", "soft_ce", "gce", "zloss", "taylor",
                                  "ldr_kl", "aldr_kl", "label_smoothing", "pskd"}
    assert losses.get_loss("softmax_ce", precision="float16").describe() == {"loss": "softmax_ce",
                                                                            "precision": "float16"}
    assert losses.get_loss("elr", lam=2.0).describe() == {"loss": "elr", "lam": 2.0, "beta": 0.7}
    with pytest.raises(ValueError, match="precision"):
        losses.get_loss("stablemax", precision="float8")
    with pytest.raises(ValueError, match="no hyper-parameter or setting 'gamma'"):
        losses.get_loss("ce", gamma=2)


def test_engine_schedule_step_milestones():
    elr = engine.schedule("step", 120, milestones=(40 / 120, 80 / 120), factor=0.01)
    assert elr(39) == 1 and elr(40) == pytest.approx(0.01) and elr(80) == pytest.approx(1e-4)
