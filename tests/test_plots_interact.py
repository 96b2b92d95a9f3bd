"""Figures label their axes and mark divergence; panels never train twice and never raise."""
import matplotlib.pyplot as plt
import pytest

from tdlab.book import interact, plots
from tdlab.core.history import History, concat


def fake_history(diverged_at=None, knobs=None):
    h = History(knobs=[knobs or {"lr": 1e-3}], diverged_at=[diverged_at])
    for step, (test, clean, corr, corr_true) in enumerate([(0.1, 0.1, 0.1, 0.1), (0.6, 0.7, 0.2, 0.6),
                                                           (0.5, 0.9, 0.6, 0.4), (0.45, 1.0, 0.9, 0.2)]):
        h.log(step * 10, "test", "acc", test)
        h.log(step * 10, "train", "acc", clean)
        h.log(step * 10, "train_clean", "acc", clean)
        h.log(step * 10, "train_corrupted", "acc", corr)
        h.log(step * 10, "train_corrupted", "acc_true", corr_true)
    return h


def test_history_summaries():
    h = fake_history()
    assert h.peak("test", "acc") == 0.6 and h.peak_step("test", "acc") == 10
    assert h.final("test", "acc") == 0.45
    both = concat([fake_history(knobs={"lr": 1e-3}), fake_history(knobs={"lr": 1e-2})])
    assert both.find(lr=1e-2) == 1
    assert both.member(1).knobs == [{"lr": 1e-2}]
    assert both.select(lr=[1e-2]).knobs == [{"lr": 1e-2}]
    assert both.select(lr=[1e-3, 1e-2]).num_members == 2
    with pytest.raises(KeyError, match="no test/loss"):
        h.curve("test", "loss")


def test_memorization_figure_is_labelled_and_marks_divergence():
    ax = plots.memorization_curves(fake_history(diverged_at=25))
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "accuracy (%)"
    texts = [t.get_text() for t in ax.texts]
    assert "diverged" in texts and any(t.startswith("peak") for t in texts)
    labels = [line.get_label() for line in ax.get_lines()]
    assert "corrupted examples vs true label" in labels
    plt.close("all")


def test_small_multiples_and_final_vs_knob():
    h = concat([fake_history(knobs={"noise_rate": r, "lam": l}) for r in (0.2, 0.4) for l in (0.0, 3.0)])
    grid = plots.small_multiples(h, col="noise_rate", hue="lam", hue_labels={0.0: "CE"})
    assert len(grid.axes.flat) == 2 and [ax.get_title() for ax in grid.axes] == ["noise_rate = 0.2", "noise_rate = 0.4"]
    assert [[line.get_label() for line in ax.get_lines()] for ax in grid.axes] == [["CE", "3.0"]] * 2
    assert [t.get_text() for t in grid.legend.get_texts()] == ["CE", "3.0"]
    assert grid.axes[0].get_ylabel() == "test accuracy (%)" and grid.axes[1].get_xlabel() == "training step"
    # a diverged member is marked in its own panel only
    h = concat([fake_history(knobs={"noise_rate": 0.2, "lam": 0.0}, diverged_at=25),
                fake_history(knobs={"noise_rate": 0.4, "lam": 0.0})])
    grid = plots.small_multiples(h, col="noise_rate", hue="lam")
    assert [[t.get_text() for t in ax.texts] for ax in grid.axes] == [["diverged"], []]
    ax = plots.final_vs_knob(h, "noise_rate", hue="lam")
    assert ax.get_xlabel() == "noise_rate" and "%" in ax.get_ylabel()
    plt.close("all")


def make_panel(grid=None, initial=None):
    calls = []

    def run(callback=None, **values):
        calls.append(values)
        return fake_history(knobs=values)

    panel = interact.panel(run, ["noise_rate", "lr", "weight_decay"], summary=lambda h: {"final": h.final("test", "acc")},
                           plot=lambda h: plots.memorization_curves(h).figure, initial=initial, grid=grid)
    return panel, calls


def test_panel_reuses_initial_and_grid_and_runs_otherwise():
    grid = concat([fake_history(knobs={"noise_rate": r, "lr": 1e-3, "weight_decay": 0.0}) for r in (0.2, 0.4, 0.6)])
    panel, calls = make_panel(grid=grid, initial=fake_history())
    defaults = dict(panel.defaults)
    assert panel.result(defaults)[1] == "the default run above"
    on_grid = {**defaults, "noise_rate": 0.6}
    assert panel.grid_member(on_grid) == 2
    assert panel.result(on_grid)[1] == "precomputed grid point"
    assert calls == []
    off_grid = {**defaults, "noise_rate": 0.35}
    assert panel.grid_member(off_grid) is None
    assert panel.result(off_grid)[1] == "trained now" and len(calls) == 1


def test_panel_validation_messages():
    panel, _ = make_panel()
    assert panel.validate(dict(panel.defaults)) is None
    message = panel.validate({**panel.defaults, "noise_rate": 1.5})
    assert "noise rate must be in [0, 0.9]" in message
    assert "learning rate" in panel.validate({**panel.defaults, "lr": -1.0})
    with pytest.raises(ValueError, match="no standard knob"):
        interact.knob("dropout")


def test_static_display_trains_once_without_frontend(monkeypatch, capsys):
    monkeypatch.setenv("CI", "true")
    panel, calls = make_panel()
    assert not interact.frontend_attached()
    panel._ipython_display_()
    assert len(calls) == 1  # no initial given: the defaults are trained exactly once
    panel._ipython_display_()
    assert len(calls) == 1
    plt.close("all")


def test_widget_builds(monkeypatch):
    panel, calls = make_panel(initial=fake_history())
    widget = panel.widget()
    assert calls == [] and len(widget.children) == 2
    plt.close("all")


def test_widget_scrubs_the_grid_and_runs_off_grid(monkeypatch):
    import ipywidgets as w

    grid = concat([fake_history(knobs={"noise_rate": r, "lr": 1e-3, "weight_decay": 0.0}) for r in (0.2, 0.4, 0.6)])
    panel, calls = make_panel(grid=grid, initial=fake_history())
    left, _ = panel.widget().children
    sliders = {c.description: c for c in left.children if isinstance(c, w.FloatSlider)}
    button = next(c for c in left.children if isinstance(c, w.Button))
    status = [c for c in left.children if isinstance(c, w.HTML)][1]
    sliders["noise rate"].value = 0.6
    assert "precomputed" in status.value and calls == []
    sliders["noise rate"].value = 0.35
    assert "press <b>Run</b>" in status.value and calls == []
    button.click()
    assert len(calls) == 1 and calls[0]["noise_rate"] == pytest.approx(0.35)
    assert calls[0]["weight_decay"] == 0.0  # the log slider's leftmost position means 0
    assert "trained now" in status.value
    plt.close("all")


def test_widget_shows_errors_instead_of_raising():
    import ipywidgets as w

    def broken(callback=None, **values):
        raise RuntimeError("out of memory")

    panel = interact.panel(broken, ["noise_rate"], summary=lambda h: {}, plot=lambda h: plots.memorization_curves(h).figure,
                           initial=fake_history())
    left, _ = panel.widget().children
    slider = next(c for c in left.children if isinstance(c, w.FloatSlider))
    slider.value = 0.3
    next(c for c in left.children if isinstance(c, w.Button)).click()
    status = [c for c in left.children if isinstance(c, w.HTML)][1]
    assert "run failed: RuntimeError: out of memory" in status.value
    plt.close("all")


def test_panel_plot_title_comes_from_the_runs_knobs():
    def run(callback=None, **values):
        return fake_history(knobs={"noise_rate": 0.4, "lam": 3.0})

    panel = interact.panel(run, ["noise_rate"], summary=lambda h: {}, plot=plots.memorization_curves,
                           plot_title="λ = {lam:g}, noise {noise_rate:.0%}")
    figure = panel.plot(fake_history(knobs={"noise_rate": 0.4, "lam": 3.0}))
    assert figure.axes[0].get_title() == "λ = 3, noise 40%"
    bad = interact.panel(run, ["noise_rate"], summary=lambda h: {}, plot=plots.memorization_curves,
                         plot_title="{alpha}")
    with pytest.raises(ValueError, match="alpha"):
        bad.plot(fake_history())
    plt.close("all")


def test_explorer_holds_every_member_and_names_a_missing_combination():
    import json
    import re

    h = concat([fake_history(knobs={"noise_rate": r, "lam": l}) for r in (0.2, 0.4) for l in (0.0, 3.0)][:3])
    figure = plots.explorer(h, ["noise_rate", "lam"], curves=[("test", "acc"), ("train_corrupted", "acc_true")],
                            start={"noise_rate": 0.4, "lam": 0.0})
    markup = figure._repr_html_()
    spec = json.loads(re.search(r"<script type=\"application/json\">(.*?)</script>", markup).group(1))
    assert spec["sliders"][0]["values"] == [0.2, 0.4] and spec["sliders"][1]["values"] == [0.0, 3.0]
    assert set(spec["members"]) == {"0,0", "0,1", "1,0"}                  # (0.4, 3.0) was not trained
    assert spec["members"]["0,1"][0] == [10.0, 60.0, 50.0, 45.0]          # test accuracy in %, every step
    assert 'value="1" aria-label="noise_rate"' in markup and len(figure) < 20_000
    assert "not trained" in markup
    with pytest.raises(ValueError, match="more than the slider knobs"):
        plots.explorer(h, ["noise_rate"])
    with pytest.raises(ValueError, match="not a knob"):
        plots.explorer(h, ["alpha"])


def test_log_slider_reads_off_at_its_left_end_and_legends_sit_outside_the_axes():
    import ipywidgets as w

    panel, calls = make_panel(initial=fake_history())
    left, _ = panel.widget().children
    boxes = [c for c in left.children if isinstance(c, w.HBox)]
    pairs = {b.children[0].description: b.children for b in boxes}
    slider, label = pairs["weight decay"]
    assert label.value == "0 (off)"                       # the leftmost position means weight decay 0
    slider.value = 1e-3
    assert label.value == "1.0e-03"
    ax = plots.memorization_curves(fake_history())
    figure = ax.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend_box, axes_box = ax.get_legend().get_window_extent(renderer), ax.get_window_extent(renderer)
    assert not legend_box.overlaps(axes_box), "the legend covers the curves"
    plt.close("all")


def test_the_expected_ipywidgets_is_the_one_tested():
    """`make widgets7` runs these tests with Colab's ipywidgets 7.7 first on the path; this says which ran."""
    import os

    import ipywidgets

    expected = os.environ.get("TDLAB_EXPECT_IPYWIDGETS")
    if expected:
        assert ipywidgets.__version__.startswith(expected), ipywidgets.__version__
    assert int(ipywidgets.__version__.split(".")[0]) >= 7


def test_memorization_panels_are_legible_and_legend_below_can_hang_in_points():
    fig = plots.memorization_panels({"a": fake_history(), "b": fake_history()}, title="t")
    assert fig.get_size_inches()[0] == 10 and plots.illegible_text(fig) == []
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([0, 1], label="x")
    ax.set_xlabel("training step")
    legend = plots.legend_below(ax, below_pt=40)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    hang = (ax.get_window_extent().y0 - legend.get_window_extent(renderer).y1) * 72 / fig.dpi
    assert 40 <= hang <= 40 + 10 * 0.5 + 0.5               # 40 pt, plus the legend's own border pad
    assert legend.get_window_extent(renderer).y1 < ax.xaxis.label.get_window_extent(renderer).y0
    plt.close(fig)
