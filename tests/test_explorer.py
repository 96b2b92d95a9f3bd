"""The kernel-free explorer: a log y axis where the curves span decades, and the value under the pointer
(issue 35 item 6; the pointer itself is exercised in a real browser by tests_browser)."""
import json
import re

import pytest

from tdlab.book import plots
from tdlab.core.history import History


def history(values_by_lr: dict, metric: str = "loss") -> History:
    h = History(knobs=[{"lr": lr} for lr in values_by_lr], diverged_at=[None] * len(values_by_lr))
    for m, values in enumerate(values_by_lr.values()):
        for step, v in enumerate(values):
            h.records.append({"step": step * 10, "member": m, "split": "train", "metric": metric, "value": v})
    return h


def spec_of(figure) -> dict:
    return json.loads(re.search(r'<script type="application/json">(.*?)</script>', figure._repr_html_()).group(1))


def test_a_quantity_spanning_decades_gets_a_log_axis_with_decade_ticks():
    spec = spec_of(plots.explorer(history({0.1: [2.3, 0.5, 0.01], 0.3: [2.3, 1.0, 0.2]}), ["lr"],
                                  curves=[("train", "loss")]))
    assert spec["ylog"] is True and spec["yticks"] == [0.01, 0.1, 1, 10] and spec["y"] == [0.01, 10]
    assert spec["unit"] == ""


def test_accuracies_and_narrow_ranges_stay_linear_and_log_y_can_be_forced():
    narrow = history({0.1: [2.3, 1.5, 0.9]})
    assert spec_of(plots.explorer(narrow, ["lr"], curves=[("train", "loss")]))["ylog"] is False
    assert spec_of(plots.explorer(narrow, ["lr"], curves=[("train", "loss")], log_y=True))["ylog"] is True
    acc = spec_of(plots.explorer(history({0.1: [0.001, 0.5, 0.9]}, "acc"), ["lr"], curves=[("train", "acc")]))
    assert acc["ylog"] is False and acc["y"] == [0, 100] and acc["unit"] == "%"
    with pytest.raises(ValueError, match="positive"):
        plots.explorer(history({0.1: [0.0, 0.5, 0.9]}), ["lr"], curves=[("train", "loss")], log_y=True)


def test_the_pointer_readout_is_in_the_markup():
    markup = plots.explorer(history({0.1: [2.3, 0.5, 0.01]}), ["lr"], curves=[("train", "loss")])._repr_html_()
    assert 'class="tdlab-hover"' in markup and "mousemove" in markup and "data-hover-step" in markup
