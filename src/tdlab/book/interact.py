"""Widget panels around a pure ``run(**knobs) -> History`` function.

Every chapter gets the same controls with the same names: a log slider for the
learning rate, weight decay and other strengths, linear sliders for rates, a
**Run** button (dragging a slider never retrains by itself), a live plot that is
redrawn at every evaluation while training runs, and a readout of the
phenomenon's numbers.

With a precomputed sweep (``grid=``, any History whose members' knobs record their
settings, as every History of the training loop does) the sliders scrub through the
grid instantly; a value between grid points is trained live when **Run** is pressed.

With no frontend attached — nbval, the book build, ``CI`` or ``TDLAB_STATIC`` set —
the panel shows the result of the default settings once, as an ordinary figure and
table, reusing ``initial=`` when given so nothing is trained twice.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import HTML, display

from tdlab.core.config import frontend_attached
from tdlab.core.history import History
from tdlab.book.plots import readout_table


@dataclass
class Knob:
    """A control: a linear or log slider over [low, high], or a dropdown over ``options``.

    For a log slider with ``zero_at_low=True`` the leftmost position means 0 (off),
    which a log scale cannot show.
    """

    name: str
    label: str
    low: float = 0.0
    high: float = 1.0
    default: float | str = 0.0
    log: bool = False
    step: float | None = None
    zero_at_low: bool = False
    options: list = field(default_factory=list)

    def show(self, value) -> str:
        """How a readout shows ``value``: "0 (off)" for a log knob's off position, else compactly."""
        if self.options:
            return str(value)
        if value == 0 and self.zero_at_low:
            return "0 (off)"
        return f"{value:.1e}" if self.log else f"{value:g}"

    def from_control(self, value):
        """A control's value as the run takes it: a log slider's leftmost position is 0 when it means off."""
        if self.log and self.zero_at_low and value <= self.low * 1.0001:
            return 0.0
        return value

    def check(self, value) -> None:
        if self.options:
            if value not in self.options:
                raise ValueError(f"{self.label} must be one of {self.options}, got {value!r}")
            return
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{self.label} must be a finite number, got {value!r}")
        if self.zero_at_low and value == 0:
            return
        if not (self.low <= value <= self.high):
            raise ValueError(f"{self.label} must be in [{self.low:g}, {self.high:g}], got {value:g}")


# The same names and ranges in every chapter.
STANDARD = {
    "noise_rate": Knob("noise_rate", "noise rate", 0.0, 0.9, 0.4, step=0.05),
    "lr": Knob("lr", "learning rate", 1e-4, 1.0, 1e-3, log=True),
    "weight_decay": Knob("weight_decay", "weight decay", 1e-6, 10.0, 0.0, log=True, zero_at_low=True),
    "lam": Knob("lam", "ELR λ", 0.0, 10.0, 3.0, step=0.5),
    "beta": Knob("beta", "ELR β", 0.0, 0.99, 0.7, step=0.01),
    "train_fraction": Knob("train_fraction", "training fraction", 0.1, 0.9, 0.5, step=0.05),
    "alpha_T": Knob("alpha_T", "PS-KD α_T", 0.0, 1.0, 0.8, step=0.05),
    "smoothing": Knob("smoothing", "label smoothing ε", 0.0, 0.5, 0.1, step=0.05),
}


def knob(name: str, **overrides) -> Knob:
    """A standard knob by name, with some fields changed (``knob("lr", default=3e-3)``)."""
    if name not in STANDARD:
        raise ValueError(f"no standard knob {name!r}; standard: {list(STANDARD)} (or pass a Knob)")
    base = STANDARD[name]
    return Knob(**{**base.__dict__, **overrides})


class Panel:
    """The widget panel. Build it with :func:`panel`."""

    def __init__(self, run: Callable[..., History], knobs: list, summary: Callable[[History], dict],
                 plot: Callable[[History], plt.Figure | plt.Axes], initial: History | None = None,
                 grid: History | None = None, title: str = "", plot_title: str | None = None):
        self.run, self.summary, self.title, self.plot_title = run, summary, title, plot_title
        self._plot = plot
        self.knobs = [k if isinstance(k, Knob) else knob(k) for k in knobs]
        self.grid = grid
        self.defaults = {k.name: k.default for k in self.knobs}
        for k in self.knobs:
            k.check(k.default)
        self.initial = initial
        self._widgets = None

    # ----------------------------------------------------------------- logic, testable without widgets
    def validate(self, values: dict) -> str | None:
        """None if ``values`` are valid, else the message to show in the panel."""
        try:
            for k in self.knobs:
                k.check(values[k.name])
        except ValueError as error:
            return str(error)
        return None

    def grid_member(self, values: dict) -> int | None:
        """The grid member trained with exactly these settings, if any."""
        if self.grid is None:
            return None
        for member, settings in enumerate(self.grid.knobs):
            if all(name in settings and _same(settings[name], value) for name, value in values.items()):
                return member
        return None

    def result(self, values: dict, callback=None) -> tuple[History, str]:
        """The History for ``values`` and where it came from (initial run, grid, or a new run)."""
        if self.initial is not None and all(_same(values[k], v) for k, v in self.defaults.items()):
            return self.initial, "the default run above"
        member = self.grid_member(values)
        if member is not None:
            return self.grid.member(member), "precomputed grid point"
        return self.run(callback=callback, **values), "trained now"

    def plot(self, history: History) -> plt.Figure:
        """The live figure of ``history``: ``plot(history)`` (a Figure or an Axes), titled with
        ``plot_title`` formatted with the run's knobs."""
        drawn = self._plot(history)
        figure = drawn.figure if isinstance(drawn, plt.Axes) else drawn
        if self.plot_title:
            try:
                text = self.plot_title.format(**history.knobs[0])
            except KeyError as missing:
                raise ValueError(f"plot_title {self.plot_title!r} names {missing}, which is not a knob of the run; "
                                 f"its knobs: {sorted(history.knobs[0])}") from None
            if len(figure.axes) == 1:
                figure.axes[0].set_title(text)
            else:
                figure.suptitle(text)
        return figure

    def readout(self, history: History) -> dict:
        values = dict(self.summary(history))
        if history.diverged:
            values["status"] = f"diverged at step {history.diverged_at[0]}"
        return values

    # ----------------------------------------------------------------- display
    def _ipython_display_(self):
        if not frontend_attached():
            history, source = self.result(self.defaults)
            self.initial = history
            figure = self.plot(history)
            from tdlab.book.chapter import check_open_figures
            check_open_figures()    # closed in this cell: read it (legibility, glyphs, percent axes) as the build does
            display(figure)
            plt.close(figure)
            display(HTML(readout_table(self.readout(history))
                         + "<p><i>Static view of the default settings. Run this notebook in Jupyter or "
                           "Colab to move the sliders.</i></p>"))
            return
        display(self.widget())

    def widget(self):
        """The ipywidgets layout (controls | live plot and readout)."""
        controls, readouts = {}, {}
        for k in self.knobs:
            style = {"description_width": "110px"}
            layout = w.Layout(width="340px")
            if k.options:
                controls[k.name] = w.Dropdown(options=k.options, value=k.default, description=k.label,
                                              style=style, layout=layout)
            elif k.log:
                start = k.low if (k.zero_at_low and k.default == 0) else k.default
                slider = w.FloatLogSlider(value=start, base=10, min=math.log10(k.low), max=math.log10(k.high),
                                          step=0.1, description=k.label, readout=False, continuous_update=False,
                                          style=style, layout=w.Layout(width="270px"))
                shown = w.Label(k.show(k.from_control(start)), layout=w.Layout(width="70px"))
                slider.observe(lambda change, k=k, shown=shown: setattr(
                    shown, "value", k.show(k.from_control(change["new"]))), names="value")
                controls[k.name] = slider
                readouts[k.name] = w.HBox([slider, shown])
            else:
                controls[k.name] = w.FloatSlider(value=k.default, min=k.low, max=k.high,
                                                 step=k.step or (k.high - k.low) / 100,
                                                 description=k.label, continuous_update=False,
                                                 style=style, layout=layout)
        button = w.Button(description="Run", button_style="primary", icon="play")
        status = w.HTML()
        readout = w.HTML()
        output = w.Output(layout=w.Layout(min_height="320px"))

        def values() -> dict:
            return {k.name: k.from_control(controls[k.name].value) for k in self.knobs}

        def draw(history: History, note: str) -> None:
            with output:
                output.clear_output(wait=True)
                figure = self.plot(history)
                display(figure)
                plt.close(figure)
            readout.value = readout_table(self.readout(history))
            status.value = f"<span style='color:#555'>{note}</span>"

        def checked_values() -> dict | None:
            current = values()
            message = self.validate(current)
            if message:
                status.value = f"<span style='color:#b00'>{message}</span>"
                return None
            return current

        def on_change(_=None):
            current = checked_values()
            if current is None:
                return
            member = self.grid_member(current)
            if member is not None:
                draw(self.grid.member(member), "precomputed grid point (instant)")
            else:
                status.value = "<span style='color:#555'>not precomputed: press <b>Run</b> to train</span>"

        def on_run(_=None):
            current = checked_values()
            if current is None:
                return
            button.disabled = True
            last = [0.0]

            def live(history: History):
                if time.perf_counter() - last[0] > 0.5:
                    last[0] = time.perf_counter()
                    draw(history, "training…")

            try:
                history, source = self.result(current, callback=live)
                draw(history, source)
            except ValueError as error:
                status.value = f"<span style='color:#b00'>{error}</span>"
            except Exception as error:  # a panel shows a message, never a traceback
                status.value = f"<span style='color:#b00'>run failed: {type(error).__name__}: {error}</span>"
            finally:
                button.disabled = False

        for control in controls.values():
            control.observe(on_change, names="value")
        button.on_click(on_run)
        history, source = self.result(self.defaults)
        self.initial = history
        header = w.HTML(f"<b>{self.title}</b>") if self.title else w.HTML()
        left = w.VBox([header, *(readouts.get(name, control) for name, control in controls.items()), button, status,
                       readout])
        panel = w.HBox([left, output])
        draw(history, source)
        return panel


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def panel(run: Callable[..., History], knobs: list, summary: Callable[[History], dict],
          plot: Callable[[History], plt.Figure | plt.Axes], initial: History | None = None,
          grid: History | None = None, title: str = "", plot_title: str | None = None) -> Panel:
    """A widget panel for ``run(callback=None, **knobs) -> History``.

    - ``knobs``: standard names (``"noise_rate"``, ``"lr"``, ``"weight_decay"``, ``"lam"``, ...)
      or :class:`Knob` objects; their defaults must be the settings of ``initial``.
    - ``summary(history) -> {name: value}``: the readout.
    - ``plot(history) -> Figure or Axes``: the live figure; ``plot_title``: its title, a format
      string of the run's knobs (``"λ = {lam:g}"``).
    - ``initial``: the History of the default settings (already trained in the chapter).
    - ``grid``: a precomputed sweep; a member whose knobs match every slider is shown instantly.
    """
    return Panel(run, knobs, summary, plot, initial, grid, title, plot_title)
