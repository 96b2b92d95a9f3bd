"""One formatter for the tables and the panels (issue 35 item 4): a percentage only for accuracies, rates and
fractions; nats, ratios, norms, NC measures and counts as numbers."""
import math

from tdlab.book import chapter, plots, units


def test_fractions_in_percent_and_other_quantities_as_numbers():
    assert units.fmt(0.734, "final test accuracy") == "73.4%"
    assert units.fmt(0.12, "corrupted: fit to noisy label (final)") == "12.0%"
    assert units.fmt(0.05, "final zero-loss fraction") == "5.0%"            # a fraction, though "loss" is in it
    assert units.fmt(0.61, "cross-entropy") == "61.0%"                        # a method's row, not an entropy
    assert units.fmt(0.02, "early (step 250), one-shot + regeneration") == "2.0%"
    assert units.fmt(0.0213, "final attention entropy (nats)") == "0.0213"
    assert units.fmt(0.6, "final NC1 (within / between)") == "0.6"
    assert units.fmt(0.25, "final test / plateau") == "0.25"
    assert units.fmt(0.031, "‖w − w₀‖/‖w₀‖") == "0.031"
    assert units.fmt(0.93, "AUC (corrupted above clean)") == "0.93"
    # unnamed: as the tables always showed it; counts, NaN, text, booleans, non-numbers
    assert units.fmt(0.4567) == "45.7%" and units.fmt(300.0, "steps") == "300" and units.fmt(7, "NC1") == "7"
    assert units.fmt(math.nan, "final test accuracy") == "never" and units.fmt("n/a") == "n/a"
    assert units.fmt(True) == "True" and units.fmt(object.__new__(object)).startswith("<object")


def test_the_tables_and_the_panels_share_it():
    html = plots.readout_table({"final test accuracy": 0.5, "final attention entropy (nats)": 0.5, "step": 120})
    assert "<b>50.0%</b>" in html and "<b>0.5</b>" in html and "<b>120</b>" in html
    frame = chapter.table({"run": {"final test accuracy": 0.5, "final NC1 (within / between)": 0.5}})
    assert list(frame["run"]) == ["50.0%", "0.5"]
    assert chapter.fmt(0.5, "NC1") == units.fmt(0.5, "NC1") == "0.5"
