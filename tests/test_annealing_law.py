"""tdlab.methods.lr_and_batch.annealing_law: schedules, the two areas against a naive loop, the fit on synthetic curves,
per-member schedules in one stacked run against separate runs."""
import math

import numpy as np
import pytest
import torch

from tdlab.methods.lr_and_batch import annealing_law as al
from tdlab.core import engine, models, recipes


def naive_areas(etas, lam, warmup=0):
    """S1, S2 straight from the definitions, one step at a time."""
    s1, s2, out1, out2 = 0.0, 0.0, [], []
    m = 0.0
    for i in range(1, len(etas) + 1):          # paper's steps i = 1 .. s, etas[i - 1] = η_i
        eta = etas[i - 1]
        s1 += eta
        if i > max(1, warmup):                   # η_0 = η_1 (no warm-up) or the last warm-up rate
            m = lam * m + (etas[i - 2] - eta)
        else:
            m = 0.0
        s2 += m
        out1.append(s1)
        out2.append(s2)
    return np.array(out1), np.array(out2)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.99])
@pytest.mark.parametrize("shape", al.SHAPES)
def test_areas_match_a_naive_loop(shape, lam):
    schedule = al.lr_schedule(shape, 40, warmup=4, decay_fraction=0.3, floor=0.05, milestones=(0.4, 0.7))
    etas = al.lr_values(schedule, 40, peak=0.3)
    s1, s2 = al.areas(etas, lam, warmup=4)
    n1, n2 = naive_areas(list(etas), lam, warmup=4)
    np.testing.assert_allclose(s1, n1, rtol=1e-12)
    np.testing.assert_allclose(s2, n2, rtol=1e-12, atol=1e-15)


def test_areas_by_hand():
    etas = np.array([1.0, 1.0, 0.5, 0.5, 0.25])
    s1, s2 = al.areas(etas, lam=0.5)
    np.testing.assert_allclose(s1, [1, 2, 2.5, 3, 3.25])
    # m = 0, 0, 0.5, 0.25, 0.125 + 0.25
    np.testing.assert_allclose(s2, [0, 0, 0.5, 0.75, 1.125])
    _, drop = al.areas(etas, lam=0.0)                  # λ = 0: S2 = η_1 − η_s
    np.testing.assert_allclose(drop, etas[0] - etas)


def test_schedules():
    steps = 100
    wsd = al.lr_values(al.lr_schedule("wsd", steps, warmup=10, decay_fraction=0.2), steps)
    np.testing.assert_allclose(wsd[:10], np.arange(1, 11) / 10)          # linear warm-up
    assert np.all(wsd[10:80] == 1.0) and wsd[80] < 1.0 and wsd[-1] == 0.0
    assert np.all(np.diff(wsd[80:]) < 0)
    step = al.lr_values(al.lr_schedule("step", steps, milestones=(0.5, 0.75), factor=0.1), steps)
    np.testing.assert_allclose(step[[0, 49, 50, 74, 75, 99]], [1, 1, 0.1, 0.1, 0.01, 0.01])
    cosine = al.lr_values(al.lr_schedule("cosine", steps, floor=0.1), steps)
    assert cosine[0] == pytest.approx(1.0) and cosine[-1] == pytest.approx(0.1)
    assert np.all(al.lr_values(al.lr_schedule("constant", steps), steps) == 1.0)
    with pytest.raises(ValueError):
        al.lr_schedule("linear", steps)


def test_fit_recovers_known_constants():
    steps, truth = 2000, dict(L0=1.5, A=0.8, alpha=0.6, C=0.4)
    sampled = np.arange(50, steps + 1, 10)
    curves = {}
    for shape in al.SHAPES:
        etas = al.lr_values(al.lr_schedule(shape, steps, warmup=20, milestones=(0.8, 0.9), factor=0.316),
                            steps, peak=1e-3)
        s1, s2 = al.areas(etas, 0.99, warmup=20)
        curves[shape] = (s1[sampled - 1], s2[sampled - 1], al.law(s1[sampled - 1], s2[sampled - 1], **truth))
    fitted = al.fit([curves["constant"], curves["cosine"]])
    for key, value in truth.items():
        assert getattr(fitted, key) == pytest.approx(value, rel=0.02), key
    for shape in ("step", "wsd"):                      # held-out schedules predicted exactly
        s1, s2, loss = curves[shape]
        assert al.r2(loss, fitted(s1, s2)) > 0.999
        assert al.mean_relative_error(loss, fitted(s1, s2)) < 1e-3
    without = al.fit([curves["constant"], curves["cosine"]], annealing=False)
    assert without.C == 0.0


def test_scores():
    measured = np.array([1.0, 2.0, 3.0])
    assert al.r2(measured, measured) == 1.0
    assert al.r2(measured, np.full(3, 2.0)) == pytest.approx(0.0)
    assert al.mean_relative_error(measured, measured * 1.1) == pytest.approx(0.1)


def test_teacher_stream_is_fresh_and_seeded():
    data = al.teacher_task(num_train=16, num_test=64, dim=8, hidden=16, classes=4, seed=3)
    assert 0 < data.info["entropy"] < math.log(4)
    stream = al.TeacherStream(data, seed=1)
    batch = engine.Batch(data.x_train[:8], data.y_train[:8].expand(2, -1), torch.arange(8), 5)
    a, b = stream(batch), stream(batch)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.y.shape == (2, 8) and torch.equal(a.y[0], a.y[1])
    assert not torch.equal(a.x, data.x_train[:8])
    later = stream(engine.Batch(batch.x, batch.y, batch.index, 6))
    assert not torch.equal(later.x, a.x)


def test_member_schedules_stacked_equal_separate_runs():
    data = al.teacher_task(num_train=64, num_test=64, dim=8, hidden=16, classes=4, seed=0)
    steps = 30
    recipe = recipes.Recipe(data, lambda: models.MLP(8, 4, width=16, depth=1),
                            dict(optimizer="adamw", lr=1e-2, batch_size=16, steps=steps, eval_every=10,
                                 batch_hook=al.TeacherStream(data, 0), progress=False))
    shared = dict(warmup=3, decay_fraction=0.5)
    members = [{"shape": "constant", "seed": 1, "lr": 1e-2}, {"shape": "wsd", "seed": 1, "lr": 5e-3},
               {"shape": "cosine", "seed": 2, "lr": 1e-2}]
    stacked = al.sweep(recipe, members, **shared)
    assert [k["schedule"] for k in stacked.knobs] == ["constant", "wsd", "cosine"]
    for index, member in enumerate(members):
        schedule = al.lr_schedule(member["shape"], steps, **shared)
        alone = engine.run(recipe.model, data, [{"seed": member["seed"], "lr": member["lr"]}], optimizer="adamw",
                           batch_size=16, steps=steps, eval_every=10, schedule_name=schedule,
                           batch_hook=al.TeacherStream(data, 0), progress=False)
        for p, q in zip(stacked.models[index].parameters(), alone.models[0].parameters()):
            np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(stacked.curve("test", "loss", index)[1], alone.curve("test", "loss")[1],
                                   rtol=1e-5)
    steps_, s1, s2, loss = al.curve_areas(stacked, 1, 0.9, start=10)
    etas = al.lr_values(al.lr_schedule("wsd", steps, **shared), steps, 5e-3)
    np.testing.assert_allclose(s1, np.cumsum(etas)[steps_ - 1])
    np.testing.assert_allclose(loss, stacked.curve("test", "loss", 1)[1][1:])


LAW_TRUTH = dict(L0=1.5, A=0.8, alpha=0.6, C=20.0)


def _law_curves(truth: dict, steps: int = 2000) -> dict:
    """(S1, S2, loss) sampled every 10 steps from step 50 for the constant, cosine and step (×0.1 at 80%)
    schedules (λ = 0, peak 10⁻³, 20 warm-up steps), the loss exactly the law with ``truth``."""
    sampled = np.arange(50, steps + 1, 10)
    curves = {}
    for shape in ("constant", "cosine", "step"):
        etas = al.lr_values(al.lr_schedule(shape, steps, warmup=20, milestones=(0.8,), factor=0.1), steps, 1e-3)
        s1, s2 = al.areas(etas, 0.0, warmup=20)
        curves[shape] = (s1[sampled - 1], s2[sampled - 1], al.law(s1[sampled - 1], s2[sampled - 1], **truth))
    return curves


def test_fit_does_not_depend_on_the_scale_of_the_areas():
    """With λ = 0, S2 is one drop of the learning rate (≤ 10⁻³ here) and C must reach tens: the fit
    still recovers the constants (it fits C in units of the largest S2)."""
    truth = LAW_TRUTH
    curves = _law_curves(truth)
    fitted = al.fit([curves["constant"], curves["cosine"]])
    for key, value in truth.items():
        assert getattr(fitted, key) == pytest.approx(value, rel=0.02), key
    s1, s2, loss = curves["step"]
    assert al.r2(loss, fitted(s1, s2)) > 0.999


def test_window_scores_and_gap_factor():
    steps = np.array([10, 20, 30, 40])
    curve = (steps, None, None, np.array([1.0, 2.0, 3.0, 5.0]))
    predicted = np.array([9.0, 2.0, 3.0, 4.0])
    r2, error = al.window_scores(curve, predicted, after=15)            # steps 20, 30, 40 only
    measured = np.array([2.0, 3.0, 5.0])
    assert r2 == pytest.approx(1 - 1.0 / np.sum((measured - measured.mean()) ** 2))
    assert error == pytest.approx((1 / 5) / 3)
    assert al.window_scores(curve, predicted, after=15, until=30)[1] == 0.0
    assert al.gap_factor(0.5) == 2.0 and al.gap_factor(2.0) == 2.0 and al.gap_factor(1.0) == 1.0
    assert al.gap_factor(-0.3) == math.inf and al.gap_factor(0.0) == math.inf


def test_mean_curve_and_fit_and_predict():
    data = al.teacher_task(num_train=64, num_test=64, dim=8, hidden=16, classes=4, seed=0)
    recipe = recipes.Recipe(data, lambda: models.MLP(8, 4, width=16, depth=1),
                            dict(optimizer="adamw", lr=1e-2, batch_size=16, steps=40, eval_every=5,
                                 batch_hook=al.TeacherStream(data, 0), progress=False))
    h = al.sweep(recipe, [{"shape": s, "seed": k, "lr": 1e-2} for s in ("constant", "cosine", "step") for k in (1, 2)]
                 + [{"shape": "step", "seed": 1, "lr": 1e-2, "milestones": (0.5,), "factor": 0.1}], warmup=4)
    assert h.knobs[-1]["milestones"] == (0.5,) and h.knobs[-1]["factor"] == 0.1 and h.knobs[0]["factor"] == 0.1
    steps, s1, s2, loss = al.mean_curve(h, "cosine", 0.9, start=10)
    evaluated = h.curve("test", "loss", 2)[0]
    assert steps.tolist() == evaluated[evaluated >= 10].tolist()
    by_hand = np.mean([h.curve("test", "loss", i)[1][evaluated >= 10] for i in (2, 3)], axis=0)
    np.testing.assert_allclose(loss, by_hand)
    np.testing.assert_allclose(s2, al.curve_areas(h, 2, 0.9, start=10)[2])
    law, curves, predicted = al.fit_and_predict(h, 0.9, ["constant", "cosine"], start=10, seeds=[1],
                                                shapes=["constant", "cosine"])
    np.testing.assert_allclose(curves["constant"][3], h.curve("test", "loss", 0)[1][evaluated >= 10])
    np.testing.assert_allclose(predicted["cosine"], law(curves["cosine"][1], curves["cosine"][2]))
    with pytest.raises(ValueError):
        al.mean_curve(h, "wsd", 0.9)


def test_passes_over_data():
    data = al.teacher_task(num_train=64, num_test=16, dim=8, hidden=16, classes=4, seed=0)
    recipe = recipes.Recipe(data, lambda: models.MLP(8, 4, width=16, depth=1), dict(batch_size=16, steps=8))
    assert al.passes_over_data(recipe) == 2.0


def test_decay_start_is_where_the_schedule_first_falls():
    steps = 100
    for shape, kw in (("cosine", {}), ("step", {"milestones": (0.7, 0.9)}), ("wsd", {"decay_fraction": 0.3}),
                      ("constant", {})):
        schedule = al.lr_schedule(shape, steps, warmup=10, **kw)
        etas = al.lr_values(schedule, steps)
        falls = np.flatnonzero(np.diff(etas) < 0)
        first_fall = int(falls[0]) + 1 if len(falls) else steps      # η_{s+1} < η_s: the decay starts after step s
        assert al.decay_start({"steps": steps, **schedule.settings}) == first_fall, shape


def test_law_panel_summary_scores_the_decay_from_decay_start():
    """LawPanel on a tiny two-run sweep (constant and cosine, the fitted runs): its summary of a WSD run
    gives the law's final loss and scores the window after decay_start, as computed here by hand."""
    data = al.teacher_task(num_train=64, num_test=64, dim=8, hidden=16, classes=4, seed=0)
    recipe = recipes.Recipe(data, lambda: models.MLP(8, 4, width=16, depth=1),
                            dict(optimizer="adamw", lr=1e-2, batch_size=16, steps=40, eval_every=5,
                                 batch_hook=al.TeacherStream(data, 0), progress=False))
    schedule = dict(warmup=4, decay_fraction=0.5)
    fitted = al.sweep(recipe, [{"shape": s, "seed": 1, "lr": 1e-2} for s in ("constant", "cosine")], **schedule)
    panel = al.LawPanel(recipe, fitted, fit_on=["constant", "cosine"], seed=1, lam=0.9, start=10, schedule=schedule)
    run = panel.run(schedule="wsd", lr=1e-2, decay_fraction=0.5)
    assert run.knobs[0]["anneal_lambda"] == 0.9
    after = al.decay_start(run.knobs[0])
    assert after == 20                                        # 40 steps, the last half decays
    summary = panel.summary(run)
    law = al.fit_and_predict(fitted, 0.9, ["constant", "cosine"], 10, shapes=["constant", "cosine"])[0]
    curve = al.curve_areas(run, 0, 0.9, start=10)
    guess = law(curve[1], curve[2])
    decay_r2, decay_error = al.window_scores(curve, guess, after=after)
    assert summary["final loss, measured"] == f"{curve[3][-1]:.4f}"
    assert summary["final loss, the law"] == f"{guess[-1]:.4f}"
    assert summary[f"R² of the law after step {after} (the decay)"] == f"{decay_r2:.3f}"
    assert summary["mean relative error there"] == f"{decay_error:.2%}"
    constant = panel.summary(panel.tag(fitted.select(schedule="constant")))   # no decay: no decay scores
    assert not any("the decay" in key for key in constant)


def test_share_of_fit():
    """By hand; then on curves drawn from the law itself: the prediction of a held-out step schedule is as
    good as fitting it (share 1), and the C = 0 control, put in the prediction's place, gains nothing (0)."""
    assert al.share_of_fit(0.3, 1.0, 0.2) == pytest.approx(0.7 / 0.8)
    assert al.share_of_fit(1.0, 1.0, 0.2) == 0.0 and al.share_of_fit(0.2, 1.0, 0.2) == 1.0
    assert al.share_of_fit(1.2, 1.0, 0.2) == pytest.approx(-0.25)
    assert math.isnan(al.share_of_fit(0.3, 0.2, 0.2))
    truth = LAW_TRUTH
    curves = _law_curves(truth)
    s1, s2, loss = curves["step"]
    error = lambda law: al.mean_relative_error(loss[-40:], law(s1, s2)[-40:])     # noqa: E731
    predicted = error(al.fit([curves["constant"], curves["cosine"]]))
    control = error(al.fit([curves["constant"], curves["cosine"]], annealing=False))
    fitted = error(al.fit(list(curves.values())))
    assert control > 100 * max(predicted, fitted)
    assert al.share_of_fit(predicted, control, fitted) == pytest.approx(1.0, abs=0.01)
    assert al.share_of_fit(control, control, fitted) == 0.0


def _law_history(truth: dict, lam: float, steps: int = 2000, every: int = 10) -> "history.History":
    """A History of constant, cosine and step (×0.1 at 80%) runs, no training: seeds 1 and 2 of each log the
    law with ``truth`` at this λ times (1 ± 0.002) — their mean is the law — the step run's also times a
    wiggle 1 + 0.01 sin(step / 50) the law cannot follow; a seed 9 constant run logs nonsense (left out)."""
    from tdlab.core import history
    settings = dict(steps=steps, warmup=20, decay_fraction=0.2, floor=0.0, milestones=(0.8,), factor=0.1,
                    lr=1e-3)
    members = [(shape, seed) for shape in ("constant", "cosine", "step") for seed in (1, 2)] + [("constant", 9)]
    h = history.History(knobs=[{**settings, "shape": shape, "schedule": shape, "seed": seed}
                               for shape, seed in members])
    for i, (shape, seed) in enumerate(members):
        etas = al.lr_values(al.lr_schedule(shape, steps, warmup=20, milestones=(0.8,), factor=0.1), steps, 1e-3)
        s1, s2 = naive_areas(etas, lam, warmup=20)
        for step in range(every, steps + 1, every):
            loss = al.law(s1[step - 1], s2[step - 1], **truth) * (1 + (0.002 if seed == 1 else -0.002))
            if shape == "step":
                loss *= 1 + 0.01 * math.sin(step / 50)
            h.log(step, "test", "loss", 7.0 if seed == 9 else loss, i)
    return h


def test_fit_shares_against_a_fit_by_hand():
    """fit_shares on law curves with a wiggle on the held-out step run, against the three fits and the share
    computed here from the definitions (naive areas, mean relative error and the share's formula by hand)."""
    truth, lam, start, after = LAW_TRUTH, 0.9, 50, 1600
    h = _law_history(truth, lam)
    got = al.fit_shares(h, lam, ["constant", "cosine"], ["step"], start=start, seeds=[1, 2], after=after)
    sampled = np.arange(start, 2001, 10)
    curves = {}
    for shape in ("constant", "cosine", "step"):
        etas = al.lr_values(al.lr_schedule(shape, 2000, warmup=20, milestones=(0.8,), factor=0.1), 2000, 1e-3)
        s1, s2 = naive_areas(etas, lam, warmup=20)
        loss = al.law(s1[sampled - 1], s2[sampled - 1], **truth)
        if shape == "step":
            loss = loss * (1 + 0.01 * np.sin(sampled / 50))
        curves[shape] = (s1[sampled - 1], s2[sampled - 1], loss)
    s1, s2, loss = curves["step"]
    late = sampled > after
    error = lambda law: float(np.mean(np.abs(law(s1, s2)[late] - loss[late]) / loss[late]))   # noqa: E731
    predicted = error(al.fit([curves["constant"], curves["cosine"]]))
    control = error(al.fit([curves["constant"], curves["cosine"]], annealing=False))
    fitted = error(al.fit([curves["constant"], curves["cosine"], curves["step"]]))
    step = got["step"]
    assert step["predicted"] == pytest.approx(predicted, rel=1e-6)
    assert step["control"] == pytest.approx(control, rel=1e-6)
    assert step["fitted"] == pytest.approx(fitted, rel=1e-6)
    assert step["share"] == pytest.approx((control - predicted) / (control - fitted), rel=1e-6)
    assert control > fitted and 0 < step["share"] <= 1.01          # the wiggle: neither fit is exact
    other = al.fit_shares(h, 0.0, ["constant", "cosine"], ["step"], start=start, seeds=[1, 2], after=after)
    assert other["step"]["control"] == pytest.approx(control, rel=1e-6)   # C = 0 does not see λ
    assert other["step"]["fitted"] != pytest.approx(fitted, rel=1e-3)    # each λ its own in-sample fit


def test_characters_read_and_stdlib_characters():
    from tdlab.core import text
    recipe = recipes.Recipe(lambda: text.corpus(context=16, size=4096), lambda: models.MLP(16, 4),
                            dict(batch_size=8, steps=10))
    assert al.characters_read(recipe) == 10 * 8 * 16
    bundled = sum((text.stdlib_dir() / name).stat().st_size for name in text.STDLIB_FILES)
    total = al.stdlib_characters()
    assert total > 10 * bundled                                   # the bundled modules are a small part
    one_test_file = next((text.stdlib_dir() / "test").glob("test_*.py"), None)
    if one_test_file is not None:                                 # test suites are left out
        everything = sum(f.stat().st_size for f in text.stdlib_dir().rglob("*.py")
                         if "site-packages" not in f.parts)
        assert total < everything - one_test_file.stat().st_size
    sentence = al.text_limit(recipe)                             # 10 × 8 × 16 = 1280 characters
    windows = len(recipe.dataset.y_train)
    assert sentence.startswith(f"the paper recipe reads 1,280 characters: its corpus ({windows} windows of 16) "
                               f"{80 / windows:.0f} times")
    assert f"({total:,} characters) {1280 / total:.0f} times" in sentence


def test_same_lr_prediction_against_a_lookup_by_hand():
    """The no-law predictor: base minus the reference's gain at the same learning rate, found here by
    scanning the reference's steps for the two learning rates around each target (independent of np.interp)."""
    ref_eta = np.array([0.95, 0.8, 0.5, 0.2, 0.0])             # a decaying reference schedule
    base = np.array([2.0, 1.9, 1.8, 1.7, 1.6])
    reference = base - np.array([0.01, 0.03, 0.06, 0.10, 0.15])  # its gain grows as its lr falls
    eta = np.array([1.0, 1.0, 0.1, 0.1, 0.65])                # a held-out run: at the peak, a drop to 0.1, a rise
    predicted = al.same_lr_prediction(eta, base, reference, ref_eta)
    points = sorted([(1.0, 0.0), *zip(ref_eta, base - reference)])
    for i, e in enumerate(eta):
        lo = max(p for p in points if p[0] <= e)
        hi = min(p for p in points if p[0] >= e)
        gain = lo[1] if hi[0] == lo[0] else lo[1] + (hi[1] - lo[1]) * (e - lo[0]) / (hi[0] - lo[0])
        assert predicted[i] == pytest.approx(base[i] - gain)
    assert predicted[0] == base[0] and predicted[2] == pytest.approx(base[2] - 0.125)   # 0.1: midway 0.10, 0.15
    # the reference predicts itself exactly, and a constant run (at the peak) is the base run
    assert np.allclose(al.same_lr_prediction(ref_eta, base, reference, ref_eta), reference)
    assert np.array_equal(al.same_lr_prediction(np.ones(5), base, reference, ref_eta), base)


def test_running_line_against_line_fits_by_hand():
    """Each point is the least-squares line through the window centred on it (at the ends, the first or last
    window), computed here with np.polyfit window by window; a straight line is kept exactly; window 1 is a copy."""
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.normal(size=23))
    smoothed = al.running_line(values, 7)
    x = np.arange(len(values))
    for i in range(len(values)):
        lo = min(max(0, i - 3), len(values) - 7)
        slope, intercept = np.polyfit(x[lo:lo + 7], values[lo:lo + 7], 1)
        assert smoothed[i] == pytest.approx(slope * i + intercept)
    line = 0.3 - 0.02 * x
    assert np.allclose(al.running_line(line, 9), line)
    assert np.array_equal(al.running_line(values, 1), values)
    assert np.allclose(al.running_line(values, 6), al.running_line(values, 7))          # even → the next odd
    assert np.allclose(al.running_line(values[:5], 9), np.polyval(np.polyfit(x[:5], values[:5], 1), x[:5]))


def test_same_lr_prediction_smoothed_keeps_noiseless_lines_and_removes_noise():
    """With its inputs smoothed, the no-law predictor still predicts the reference itself when the curves are
    noiseless straight lines, equals the raw lookup at smooth = 1, and follows a noiseless truth more closely
    than the raw lookup when the base curve carries evaluation noise."""
    steps = np.arange(40)
    ref_eta = np.linspace(0.99, 0.0, 40)                         # a decaying reference
    base = 1.0 - 0.002 * steps                                   # straight lines: kept by the smoother
    reference = base - 0.05 * (1 - ref_eta)                      # gain linear in the learning rate (and the step)
    assert np.allclose(al.same_lr_prediction(ref_eta, base, reference, ref_eta, smooth=9), reference)
    eta = np.where(steps < 30, 1.0, 0.1)                         # a held-out run: one drop to 0.1 at step 30
    truth = base - np.where(steps < 30, 0.0, 0.05 * 0.9)
    assert np.allclose(al.same_lr_prediction(eta, base, reference, ref_eta, smooth=9), truth)
    noisy = base + np.random.default_rng(1).normal(scale=0.01, size=40)
    raw = al.same_lr_prediction(eta, noisy, reference + (noisy - base), ref_eta)
    assert np.array_equal(raw, al.same_lr_prediction(eta, noisy, reference + (noisy - base), ref_eta, smooth=1))
    smoothed = al.same_lr_prediction(eta, noisy, reference + (noisy - base), ref_eta, smooth=9)
    assert np.mean(np.abs(smoothed - truth)) < 0.6 * np.mean(np.abs(raw - truth))
