"""A figure that draws fractions (0–1) on a percent axis (0–100) is caught; correct figures are not."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tdlab.book import chapter, plots  # noqa: E402
from tdlab.core.history import History  # noqa: E402


def detector_history():
    h = History(knobs=[{"lam": 3.0}], diverged_at=[None])
    for step, (true, flagged) in enumerate([(0.2, 0.01), (0.6, 0.02), (0.8, 0.03)]):
        h.log(step * 10, "train_corrupted", "target_true", true)
        h.log(step * 10, "train_clean", "flagged", flagged)
        h.log(step * 10, "test", "acc", true)
    return h


def test_fractions_on_a_percent_axis_are_caught():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0.1, 0.5, 0.8])
    ax.plot([0, 1, 2], [0.0, 0.01, 0.02])
    ax.set(ylim=(-2, 102), title="blank")
    (problem,) = plots.fractions_on_percent_axes(fig)
    assert "blank" in problem and "percent axis" in problem
    plt.close("all")


def test_a_fraction_beside_percent_curves_is_caught():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        ax.plot([0, 1, 2], [10.0, 50.0, 80.0])                  # in %
        ax.plot([0, 1, 2], [0.1, 0.5, 0.8])                     # the same kind of curve left as a fraction
        ax.set(ylim=(-2, 102), title="mixed")
    axes[0].set_ylabel("accuracy (%)")
    axes[1].set_ylabel("loss and accuracy")                     # not a percent axis: not judged as mixed
    (problem,) = plots.fractions_on_percent_axes(fig)
    assert "beside lines in %" in problem and "mixed" in problem
    plt.close("all")


def test_a_curve_drawn_in_percent_is_never_taken_for_a_fraction():
    """A percent curve that stays within 0–1 % (corrupted examples' true labels under coexistence) beside
    curves in %: not flagged; the same values drawn by curve as a fraction are."""
    h = History(knobs=[{}], diverged_at=[None])
    for step, (test, rare) in enumerate([(0.2, 0.0), (0.6, 0.004), (0.9, 0.009)]):
        h.log(step * 10, "test", "acc", test)
        h.log(step * 10, "train_corrupted", "acc_true", rare)
    fig, ax = plt.subplots()
    plots.curve(ax, h, "test", "acc")
    plots.curve(ax, h, "train_corrupted", "acc_true")           # 0–0.9 %, in %
    ax.set(ylim=(-2, 102), ylabel="accuracy (%)")
    assert plots.fractions_on_percent_axes(fig) == []
    fig, ax = plt.subplots()
    plots.curve(ax, h, "test", "acc")
    plots.curve(ax, h, "test", "acc", percent=False)              # the same curve as a fraction
    ax.set(ylim=(-2, 102), ylabel="accuracy (%)", title="fraction")
    (problem,) = plots.fractions_on_percent_axes(fig)
    assert "fraction" in problem
    fig, ax = plt.subplots()
    plots.curve(ax, h, "train_corrupted", "acc_true")           # every line small, but drawn in %
    ax.set(ylim=(-2, 102))
    assert plots.fractions_on_percent_axes(fig) == []
    plt.close("all")


def test_percent_curves_fraction_axes_flat_lines_and_reference_lines_pass():
    fig, axes = plt.subplots(1, 4)
    axes[0].plot([0, 1, 2], [10.0, 50.0, 80.0])                 # percentages on a percent axis
    axes[0].set_ylim(-2, 102)
    axes[1].plot([0, 1, 2], [0.1, 0.5, 0.8])                    # fractions on a fraction axis
    axes[1].set_ylim(0, 1.02)
    axes[2].plot([0, 1, 2], [0.0, 0.0, 0.0])                    # a flat line at 0 %: nothing varies
    axes[2].set_ylim(-2, 102)
    axes[3].plot([0, 1, 2], [0.5, 40.0, 90.0])                  # percentages, and a line near 0 % that barely moves
    axes[3].plot([0, 1, 2], [0.1, 0.11, 0.12])
    axes[3].axvline(1.0)                                        # y in axes coordinates [0, 1]: not a data line
    axes[3].set(ylim=(-2, 102), ylabel="accuracy (%)")
    assert plots.fractions_on_percent_axes(fig) == []
    fig, ax = plt.subplots()
    ax.axvline(1.0)                                             # only a reference line: no data to judge
    ax.set_ylim(0, 100)
    assert plots.fractions_on_percent_axes(fig) == []
    plt.close("all")


def test_curve_draws_fraction_metrics_in_percent_and_obeys_percent():
    h = detector_history()
    fig, ax = plt.subplots()
    line = plots.curve(ax, h, "train_corrupted", "target_true")
    assert max(line.get_ydata()) == 80.0
    assert max(plots.curve(ax, h, "train_clean", "flagged").get_ydata()) == 3.0
    assert max(plots.curve(ax, h, "test", "acc", percent=False).get_ydata()) == 0.8
    assert max(plots.curve(ax, h, "train_corrupted", "target_true", percent=True).get_ydata()) == 80.0
    plt.close("all")


def test_the_build_watch_records_a_problem_and_finish_fails(monkeypatch):
    chapter._FIGURE_PROBLEMS.clear()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0.1, 0.5, 0.8])
    ax.set(ylim=(0, 100), title="fractions")
    assert len(chapter.check_open_figures()) == 1
    assert chapter.check_open_figures() == []                  # a problem is reported once
    monkeypatch.setattr(chapter.records, "finish", lambda: None)
    try:
        chapter.finish()
    except AssertionError as error:
        assert "percent axis" in str(error) and "fractions" in str(error)
    else:
        raise AssertionError("finish() did not fail on a figure with fractions on a percent axis")
    finally:
        chapter._FIGURE_PROBLEMS.clear()
        plt.close("all")


def test_a_character_the_font_lacks_is_caught_and_the_books_characters_are_not():
    plots.set_style()
    fig, ax = plt.subplots()
    ax.set_title("‖w − w₀‖/‖w₀‖, β₂, g²/v̂, ⊥Grad, √r ≥ 50, λ′ ≈ ½, T_c ∝ P^−1 — “ours” · ✓")
    ax.set_xlabel(r"$\alpha^{-1}$ (mathtext is not read)")
    assert plots.missing_glyphs(fig) == []
    ax.set_ylabel("smile 🙂")
    (problem,) = plots.missing_glyphs(fig)
    assert "🙂" in problem and "DejaVuSans" in problem
    assert any("font lacks" in p for p in chapter.check_open_figures())
    chapter._FIGURE_PROBLEMS.clear()
    plt.close("all")


def test_a_figures_smallest_text_is_recorded_and_projected_onto_the_page(tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    from tdlab.book import records
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import run_chapters

    monkeypatch.setenv("TDLAB_RECORDS", str(tmp_path))
    monkeypatch.setenv("TDLAB_SEED", "0")
    monkeypatch.delenv("TDLAB_SCALE", raising=False)
    records._open.clear()
    records.set_chapter("01_part/fig")
    records.start()
    fig, ax = plt.subplots(figsize=(14, 3), dpi=100)
    ax.set_title("wide", fontsize=12)
    ax.text(0.5, 0.5, "tiny note", fontsize=7)
    assert plots.smallest_text(fig) == (7.0, "tiny note")
    chapter.note_figure(fig)
    chapter.note_figure(fig)                                         # once per figure
    (noted,) = records.current()["figures"]
    assert noted["width_in"] == 14 and noted["smallest_pt"] == 7 and noted["title"] == "wide"
    # 7 pt at 100 dpi is 9.7 px in the 1400 px image, shown at the page's width: scaled by 700/1400
    assert abs(plots.legible_px(7, 14, 100, page_px=700) - 7 / 72 * 100 * 0.5) < 1e-9
    assert plots.legible_px(12, 6, 100, page_px=700) == 12 / 72 * 100            # narrower than the page
    rows = run_chapters.figures(tmp_path)
    assert len(rows) == 1 and "1 with text under 9 CSS px" in capsys.readouterr().out
    records._open.clear()
    records.set_chapter("")
    plt.close("all")


def test_a_figure_closed_by_plt_show_is_read_before_it_closes(monkeypatch):
    """A cell that ends in ``plt.show()`` closes its figure before the post-cell watch runs: the wrapped
    ``plt.show`` reads it first (the figure's problems and its record are not lost)."""
    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(len(plt.get_fignums())) or plt.close("all"))
    chapter._read_before_show()
    chapter._read_before_show()                              # idempotent: wrapped once
    chapter._FIGURE_PROBLEMS.clear()
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [0.1, 0.5, 0.8])
    ax.set(ylim=(0, 100), title="fractions")
    plt.show()
    assert shown == [1] and plt.get_fignums() == []
    assert any("percent axis" in p for p in chapter._FIGURE_PROBLEMS)
    chapter._FIGURE_PROBLEMS.clear()


def test_text_too_small_on_the_page_is_a_problem_and_a_narrower_figure_cures_it():
    """An 11-in figure with 8-pt text is shown at the page's 772 px: 8/72 × 772/11 ≈ 7.8 CSS px (< 9);
    the same text in a 7-in figure (700 px, not scaled) is 8/72 × 100 ≈ 11.1 px."""
    fig, ax = plt.subplots(figsize=(11, 4), dpi=100)
    ax.legend(handles=ax.plot([0, 1], label="small legend"), fontsize=8)
    ax.tick_params(labelsize=10)
    (problem,) = plots.illegible_text(fig)
    assert "small legend" in problem and "7.8 CSS px" in problem and "needs 9.2 pt" in problem   # 9 × 72 / 772 × 11
    assert abs(plots.legible_px(8, 11, 100) - 8 / 72 * 772 / 11) < 1e-9
    fig.set_size_inches(7, 4)
    assert plots.illegible_text(fig) == []
    plt.close("all")
