"""A figure with sliders that works without a kernel: the sweep the build trained, explorable
in the static HTML book (and in JupyterLab and Colab, where it needs no widgets either).

:func:`explorer` turns a sweep :class:`~tdlab.core.history.History` into one self-contained piece of
HTML: a slider per swept knob, and an SVG plot of the chosen curves (test accuracy, the
corrupted examples, ...) of the member trained at the chosen settings, redrawn as a slider
moves. The curves travel as a compact JSON table inside the page and a few dozen lines of
plain JavaScript draw them, so a chapter's explorer weighs kilobytes and needs nothing
fetched from the network (a reader offline, or a test in a sandbox, sees it work).

Why not a plotting library: saved ipywidgets state does not update an output without a
kernel; Vega-Lite (Altair) or Plotly do, but add about 0.3 MB and 1.5 MB of script to every
page, served from a CDN unless inlined. What this figure needs — lines, two axes, a legend —
is small enough to draw by hand.
"""
from __future__ import annotations

import html
import itertools
import json
import math
from typing import Sequence

from tdlab.core.history import History, is_fraction

_counter = itertools.count()

_COLORS = {"test": "#DD8452", "train": "#4C72B0", "train_clean": "#55A868", "train_corrupted": "#C44E52",
           "train_corrupted_true": "#8172B3"}

_SCRIPT = r"""
(function () {
  var root = document.getElementById(%(id)s), spec = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  var svg = root.querySelector("svg"), note = root.querySelector(".tdlab-note"), NS = "http://www.w3.org/2000/svg";
  var W = spec.width, H = spec.height, L = 52, R = 12, T = 12, B = 38;
  function sx(v) { return L + (W - L - R) * (v - spec.x[0]) / (spec.x[1] - spec.x[0] || 1); }
  function ty(v) { return spec.ylog ? Math.log(v) / Math.LN10 : v; }
  function sy(v) { return H - B - (H - T - B) * (ty(v) - ty(spec.y[0])) / (ty(spec.y[1]) - ty(spec.y[0]) || 1); }
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e); return e;
  }
  spec.xticks.forEach(function (t) {
    el("line", {x1: sx(t), x2: sx(t), y1: T, y2: H - B, stroke: "#e6e6e6"});
    el("text", {x: sx(t), y: H - B + 14, "text-anchor": "middle", "font-size": 11}, t);
  });
  spec.yticks.forEach(function (t) {
    el("line", {x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: "#e6e6e6"});
    el("text", {x: L - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11}, t);
  });
  el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 12}, spec.xlabel);
  el("text", {x: 14, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 12,
              transform: "rotate(-90 14 " + (T + H - B) / 2 + ")"}, spec.ylabel);
  var lines = spec.curves.map(function (c) {
    return el("polyline", {fill: "none", stroke: c.color, "stroke-width": c.width, "stroke-dasharray": c.dash,
                           "data-curve": c.label});
  });
  var sliders = root.querySelectorAll("input[type=range]"), readouts = root.querySelectorAll(".tdlab-value");
  function draw() {
    var key = [];
    sliders.forEach(function (s, i) {
      key.push(+s.value); readouts[i].textContent = spec.sliders[i].shown[+s.value];
    });
    var member = spec.members[key.join(",")];
    note.textContent = member ? "" : "This combination was not trained in the sweep.";
    lines.forEach(function (line, i) {
      var points = "";
      if (member && member[i]) {
        for (var j = 0; j < member[i].length; j++) {
          if (member[i][j] !== null) points += sx(spec.steps[j]) + "," + sy(member[i][j]) + " ";
        }
      }
      line.setAttribute("points", points.trim());
    });
    root.setAttribute("data-state", key.join(",")); current = key.join(",");
  }
  var rule = el("line", {y1: T, y2: H - B, stroke: "#888", "stroke-dasharray": "3,3", visibility: "hidden"});
  var hover = root.querySelector(".tdlab-hover"), current = null;
  function fmt(v) { return v === null || v === undefined ? "–" : (Math.abs(v) >= 100 ? v.toFixed(0) : +v.toPrecision(3)) + spec.unit; }
  function show(event) {
    var box = svg.getBoundingClientRect(), x = (event.clientX - box.left) * W / (box.width || W);
    var j = 0, best = Infinity;
    spec.steps.forEach(function (s, i) { var d = Math.abs(sx(s) - x); if (d < best) { best = d; j = i; } });
    var member = spec.members[current];
    rule.setAttribute("x1", sx(spec.steps[j])); rule.setAttribute("x2", sx(spec.steps[j]));
    rule.setAttribute("visibility", member ? "visible" : "hidden");
    hover.textContent = member ? "step " + spec.steps[j] + ": " + spec.curves.map(function (c, i) {
      return c.label + " " + fmt(member[i] ? member[i][j] : null); }).join(" · ") : "";
    root.setAttribute("data-hover-step", spec.steps[j]);
  }
  svg.addEventListener("mousemove", show);
  svg.addEventListener("mouseleave", function () { rule.setAttribute("visibility", "hidden"); hover.textContent = ""; });
  sliders.forEach(function (s) { s.addEventListener("input", draw); });
  draw();
})();
"""


class Explorer:
    """The HTML of one kernel-free explorer (displayed by Jupyter and the book through ``_repr_html_``)."""

    def __init__(self, markup: str):
        self.markup = markup

    def _repr_html_(self) -> str:
        return self.markup

    def __len__(self) -> int:
        return len(self.markup.encode())


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _ticks(low: float, high: float, count: int = 5) -> list:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        ticks.append(round(value, 10) if not float(value).is_integer() else int(value))
        value += step
    return ticks


def explorer(history: History, sliders: Sequence[str], curves: Sequence[tuple[str, str]] = (("test", "acc"),),
             labels: dict | None = None, slider_labels: dict | None = None, start: dict | None = None,
             title: str = "", ylabel: str | None = None, width: int = 640, height: int = 300,
             colors: dict | None = None, log_y: bool | None = None) -> Explorer:
    """A kernel-free figure over the sweep ``history``: one slider per knob in ``sliders`` (its
    values are those the sweep trained), and the ``curves`` ((split, metric) pairs; accuracies and
    other fractions in %) of the member trained at the chosen settings, against the training step.

    Members must differ only in the slider knobs (select a sub-grid first); a combination the
    sweep did not train shows a note instead of curves. ``labels`` names the curves,
    ``slider_labels`` the sliders; ``start`` gives the settings shown first (default: the
    middle value of each slider); ``colors`` maps a (split, metric) curve to its colour (default:
    one colour per split). ``log_y``: a log y axis; by default one where the curves are positive and span
    more than two decades (a loss, a norm), never for accuracies. The pointer over the plot shows the
    nearest evaluated step and each curve's value there.
    """
    if not sliders:
        raise ValueError("an explorer needs at least one slider knob")
    knobs = history.knobs
    for name in sliders:
        missing = [m for m, k in enumerate(knobs) if name not in k]
        if missing:
            raise ValueError(f"slider {name!r} is not a knob of member(s) {missing}; knobs: {sorted(knobs[0])}")
    values = {name: sorted({k[name] for k in knobs}, key=lambda v: (isinstance(v, str), v)) for name in sliders}
    steps = sorted({r["step"] for r in history.records})
    index = {s: i for i, s in enumerate(steps)}
    members: dict[str, list] = {}
    lows, highs = [], []
    for m, k in enumerate(knobs):
        key = ",".join(str(values[name].index(k[name])) for name in sliders)
        if key in members:
            raise ValueError(f"members differ in more than the slider knobs {list(sliders)}: two members at "
                             f"{ {name: k[name] for name in sliders} }")
        series = []
        for split, metric in curves:
            row: list = [None] * len(steps)
            scale = 100.0 if is_fraction(metric) else 1.0
            for r in history.records:
                if r["member"] == m and r["split"] == split and r["metric"] == metric and math.isfinite(r["value"]):
                    row[index[r["step"]]] = round(r["value"] * scale, 2)
                    lows.append(row[index[r["step"]]])
                    highs.append(row[index[r["step"]]])
            series.append(row if any(v is not None for v in row) else None)
        members[key] = series
    accuracy = all(is_fraction(metric) for _, metric in curves)
    y_range = [0, 100] if accuracy else [min(lows, default=0), max(highs, default=1)]
    if log_y is None:
        log_y = not accuracy and y_range[0] > 0 and y_range[1] / y_range[0] > 100
    if log_y and not y_range[0] > 0:
        raise ValueError(f"log_y needs positive values; the curves reach {y_range[0]}")
    yticks = _log_ticks(*y_range) if log_y else _ticks(*y_range)
    if log_y:
        y_range = [min(y_range[0], yticks[0]), max(y_range[1], yticks[-1])]
    default_labels = {("test", "acc"): "test", ("train", "acc"): "train (given labels)",
                      ("train_clean", "acc"): "clean train examples",
                      ("train_corrupted", "acc"): "corrupted vs noisy label",
                      ("train_corrupted", "acc_true"): "corrupted vs true label"}
    spec_curves = []
    for split, metric in curves:
        color_key = "train_corrupted_true" if metric == "acc_true" else split
        spec_curves.append({"label": (labels or {}).get((split, metric), default_labels.get((split, metric),
                                                                                              f"{split} {metric}")),
                            "color": (colors or {}).get((split, metric), _COLORS.get(color_key, "#333333")),
                            "width": 2.4 if split == "test" else 1.6,
                            "dash": "5,4" if metric == "acc_true" else "none"})
    spec = {"width": width, "height": height, "steps": steps, "x": [steps[0], steps[-1]], "y": y_range,
            "xticks": _ticks(steps[0], steps[-1]), "yticks": yticks, "ylog": bool(log_y),
            "unit": "%" if accuracy else "", "xlabel": "training step",
            "ylabel": ylabel or ("accuracy (%)" if accuracy else "value"), "curves": spec_curves, "members": members,
            "sliders": [{"name": n, "values": values[n], "shown": [_shown(v) for v in values[n]]} for n in sliders]}
    uid = f"tdlab-explorer-{next(_counter)}"
    controls = "".join(
        f'<label style="display:block;margin:2px 0">{html.escape((slider_labels or {}).get(n, n.replace("_", " ")))} '
        f'<input type="range" min="0" max="{len(values[n]) - 1}" step="1" '
        f'value="{_start_index(values[n], (start or {}).get(n))}" aria-label="{html.escape(n)}" style="vertical-align:middle;width:220px"> '
        f'<b class="tdlab-value"></b></label>' for n in sliders)
    legend = "".join(
        f'<span style="margin-right:14px;white-space:nowrap"><svg width="22" height="8"><line x1="0" x2="22" y1="4" '
        f'y2="4" stroke="{c["color"]}" stroke-width="{c["width"]}" stroke-dasharray="{c["dash"]}"/></svg> '
        f'{html.escape(c["label"])}</span>' for c in spec_curves)
    payload = json.dumps(spec, separators=(",", ":")).replace("</", "<\\/")
    markup = (f'<div id="{uid}" class="tdlab-explorer" data-tdlab-explorer="1" style="font-family:sans-serif;'
              f'font-size:13px;max-width:{width}px">'
              + (f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>' if title else "")
              + controls + f'<svg width="{width}" height="{height}" role="img" aria-label="{html.escape(title)}"></svg>'
              + f'<div style="margin:2px 0 0 52px">{legend}</div>'
              + '<div class="tdlab-hover" style="margin-left:52px;min-height:1.3em;color:#333"></div>'
              + '<div class="tdlab-note" style="color:#b00;margin-left:52px"></div>'
              + f'<script type="application/json">{payload}</script>'
              + f"<script>{_SCRIPT % {'id': json.dumps(uid)}}</script></div>")
    return Explorer(markup)


def _log_ticks(low: float, high: float) -> list:
    """Powers of ten from the one at or below ``low`` to the one at or above ``high`` (a log axis)."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0 ** k if k < 0 else int(10 ** k) for k in range(first, last + 1)]


def _start_index(values: list, wanted) -> int:
    if wanted is None:
        return len(values) // 2
    for i, v in enumerate(values):
        if v == wanted or (isinstance(v, float) and isinstance(wanted, (int, float)) and math.isclose(v, wanted)):
            return i
    raise ValueError(f"start value {wanted!r} is not among the slider's values {values}")
