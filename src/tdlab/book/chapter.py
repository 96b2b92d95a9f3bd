"""The plumbing every chapter shares, so that a notebook reads as a story.

- :func:`status`: the chapter's first lines: what of the paper it reproduces, from its committed seed table.
- :func:`setup`: the chapter's seed and scale from ``TDLAB_SEED``/``TDLAB_SCALE``, the book's
  plot style, and the chapter's name for its records; in a build (``TDLAB_RECORDS`` set) it also watches
  every cell's figures (:func:`watch_figures`): fractions drawn on a percent axis fail the chapter.
- :func:`timed`: train, print how long it took, and record the time (the book's timing report).
- :func:`memorization`: the numbers of the label-noise picture, measured on one run.
- :func:`table` and :func:`fmt`: numbers shown the same way in every chapter (accuracies in %,
  steps as integers, "never" for a level never reached).
- :func:`finish`: the chapter's last cell; no figure drew fractions on a percent axis; every claim of the seed
  table was checked; the records are complete.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import pandas as pd

from tdlab.book import claims, figure_checks, ledger, plots, records, seed_tables, units
from tdlab.core.config import env_scale, env_seed
from tdlab.core.history import History


def status(name: str):
    """The chapter's status line, shown under its title: the paper's claims it reproduces and those it
    does not, counted from its committed seed table (every build re-checks them)."""
    from IPython.display import Markdown
    return Markdown(ledger.status_markdown(name, seed_tables.load(name, env_scale())))


def setup(name: str) -> tuple[int, str]:
    """Start a chapter: name it (its path under ``book/`` without ``.ipynb``), set the book's
    plot style, and return ``(TDLAB_SEED, TDLAB_SCALE)``. Tables show whole cells (pandas cuts text at 50
    characters with "…" by default, which cut the ours-vs-paper rows)."""
    pd.set_option("display.max_colwidth", None)
    records.set_chapter(name)
    records.start()              # the record starts now: its "started" time is the chapter's start
    claims.start()
    plots.set_style()
    _FIGURE_PROBLEMS.clear()
    if records.folder() is not None:
        watch_figures()          # a build: a figure with fractions drawn on a percent axis fails the chapter
    return env_seed(), env_scale()


_FIGURE_PROBLEMS: list[str] = []


def check_open_figures(*_) -> list[str]:
    """Every open matplotlib figure read by :func:`tdlab.book.plots.fractions_on_percent_axes` and
    :func:`tdlab.book.plots.missing_glyphs`; each new problem is
    printed and kept, and :func:`finish` then fails the chapter. Returns the problems found now."""
    import matplotlib.pyplot as plt
    found = []
    for number in plt.get_fignums():
        figure = plt.figure(number)
        note_figure(figure)
        for problem in plots.fractions_on_percent_axes(figure) + [
                f"a character its font lacks (drawn as a box): {p}" for p in plots.missing_glyphs(figure)] + (
                [] if records.current() is None else plots.illegible_text(figure)):
            if problem not in _FIGURE_PROBLEMS:
                _FIGURE_PROBLEMS.append(problem)
                found.append(problem)
    if found:
        import sys
        print("tdlab: a figure draws fractions on a percent axis, a character its font lacks or text too small "
              "to read on the page — "
              + "; ".join(found), file=sys.stderr)
    return found


def note_figure(figure) -> None:
    """Record a figure's width, dpi and smallest text once (a build's record, ``figures``): the build's report
    gives each figure's smallest text in CSS px on the page (:func:`tdlab.book.plots.legible_px`)."""
    if getattr(figure, "_tdlab_noted", False) or records.current() is None:
        return
    figure._tdlab_noted = True                  # on the figure: an id() can return for a later figure
    points, text = plots.smallest_text(figure)
    width_in = float(figure.get_size_inches()[0])   # the inline backend crops to the tight box: at most this wide
    title = figure_checks.title_of(figure)
    records.add("figures", {"title": title[:80], "width_in": round(width_in, 2), "dpi": float(figure.dpi),
                            "smallest_pt": float(points), "smallest_text": text[:40]})


def watch_figures() -> bool:
    """In IPython, read the figures of every cell with :func:`check_open_figures` after the cell runs and before
    the inline backend shows and closes them (the first ``post_execute`` callback). False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    callbacks = shell.events.callbacks["post_execute"]
    if check_open_figures not in callbacks:
        callbacks.insert(0, check_open_figures)
    _read_before_show()
    return True


def _read_before_show() -> None:
    """``plt.show()`` in a cell shows and closes its figures before the cell ends, out of the post-cell
    watch's sight: wrap it so the open figures are read (:func:`check_open_figures`) first. Idempotent."""
    import matplotlib.pyplot as plt
    if getattr(plt.show, "_tdlab_reads_first", False):
        return
    shown = plt.show

    def show(*args, **kwargs):
        check_open_figures()
        return shown(*args, **kwargs)

    show._tdlab_reads_first = True
    show.__doc__ = shown.__doc__
    plt.show = show


def timed(label: str, train: Callable[..., History], *args, **kwargs) -> History:
    """``train(*args, **kwargs)``, with one printed line of what it trained and how long it took;
    the time is recorded under ``label`` in the chapter's records."""
    start = time.perf_counter()
    history = train(*args, **kwargs)
    seconds = time.perf_counter() - start
    steps = max((k.get("steps", 0) for k in history.knobs), default=0)
    print(f"{label}: {history.num_members} model{'s' if history.num_members != 1 else ''}"
          f"{f' × {steps} steps' if steps else ''} in {seconds:.0f} s")
    records.add("timings", {"label": label, "seconds": seconds, "members": history.num_members, "steps": steps})
    return history


def finish() -> None:
    """The chapter's last code cell: every claim its committed seed table lists was checked (else it
    raises, naming them), and its records are complete. A build (``TDLAB_RECORDS`` set, at the CPU
    scale) also needs the table to exist."""
    if _FIGURE_PROBLEMS:
        raise AssertionError(f"{records.chapter_name()} drew a figure that misleads or cannot be read: fractions on "
                             f"a percent axis (the curves hug 0–1 % and the figure looks blank), a character its "
                             f"font lacks or text under {plots.LEGIBLE_PX:g} CSS px on the page: "
                             + "; ".join(_FIGURE_PROBLEMS))
    missing = claims.unchecked()
    if missing:
        raise AssertionError(f"{records.chapter_name()} did not check {len(missing)} claim(s) its committed seed "
                             f"table lists: " + "; ".join(f"“{w}”" for w in missing)
                             + " — a claim removed or reworded needs `make seeds` and its reason in the commit")
    if records.folder() is not None and env_scale() == "cpu" and not claims.recording() and claims.table() is None:
        raise AssertionError(f"{records.chapter_name()} has no committed seed table "
                             f"({seed_tables.path(records.chapter_name())}): run `make seeds CHAPTER=...`")
    records.finish()


# ----------------------------------------------------------------- the label-noise summary


def memorization(history: History, member: int = 0) -> dict[str, float]:
    """The numbers of the memorization picture, measured on one run: the test accuracy's peak,
    its step and its final value, the drop between them, and — when some labels were
    corrupted — how the corrupted examples are answered at the end (their given, wrong label;
    their true label, at its peak and at the end)."""
    values = {
        "peak test accuracy": history.peak("test", "acc", member),
        "step of the peak": history.peak_step("test", "acc", member),
        "final test accuracy": history.final("test", "acc", member),
    }
    values["drop after the peak"] = values["peak test accuracy"] - values["final test accuracy"]
    if any(r["split"] == "train_corrupted" and r["member"] == member for r in history.records):
        values["corrupted: fit to noisy label (final)"] = history.final("train_corrupted", "acc", member)
        values["corrupted: true label (peak)"] = history.peak("train_corrupted", "acc_true", member)
        values["corrupted: true label (final)"] = history.final("train_corrupted", "acc_true", member)
    return values


# ----------------------------------------------------------------- showing numbers


def fmt(value, name: str | None = None) -> str:
    """One number as the book shows it (:func:`tdlab.book.units.fmt`, the one formatter the tables and the
    panels share): a fraction in [0, 1] as a percentage unless ``name`` says it is a loss, a ratio, a norm,
    …; a whole number as an integer, NaN as "never", anything else with four significant digits."""
    return units.fmt(value, name)


def table(columns: dict[str, dict], index: str | None = None) -> pd.DataFrame:
    """A table of summaries, one column per run (``{"cross-entropy": {...}, "ELR": {...}}``), each
    number shown with :func:`fmt`; blank where a run has no such number."""
    rows = list(dict.fromkeys(key for column in columns.values() for key in column))
    frame = pd.DataFrame({name: [fmt(column[row], row) if row in column else "" for row in rows]
                          for name, column in columns.items()}, index=rows)
    return frame.rename_axis(index) if index else frame
