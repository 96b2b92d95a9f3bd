"""The figure helpers built on seaborn (issue 32) draw what they are given: the book's style is
seaborn's, a seed band has one mean line and one band per curve spanning the seeds, a heatmap one
coloured cell per number with its text."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import PolyCollection, QuadMesh  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from tdlab.book import plots  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_the_style_is_seaborns_and_the_written_palette_is_its_colorblind():
    plots.set_style()
    assert [to_hex(c) for c in sns.color_palette("colorblind")] == plots.COLORBLIND
    assert [to_hex(c) for c in plt.rcParams["axes.prop_cycle"].by_key()["color"]] == plots.COLORBLIND
    assert plt.rcParams["axes.grid"] and plt.rcParams["axes.facecolor"] == "white"      # whitegrid
    assert plt.rcParams["axes.titleweight"] == "bold"


def test_seed_band_draws_the_mean_and_a_band_from_the_lowest_to_the_highest_seed():
    steps = np.arange(5)
    low = np.array([[0, 1, 2, 3, 4], [2, 3, 4, 5, 6], [1, 2, 3, 4, 5.0]])         # 3 seeds
    high = low + 10
    ax = plots.seed_band(None, {"method": (steps, low), "control": (steps, high)}, ylabel="accuracy (%)")
    lines = [line for line in ax.get_lines() if line.get_label() in ("method", "control") or len(line.get_xdata()) == 5]
    means = {tuple(np.round(line.get_ydata(), 6)) for line in lines if len(line.get_xdata()) == 5}
    assert tuple(low.mean(0)) in means and tuple(high.mean(0)) in means
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    ys = np.concatenate([p.vertices[:, 1] for p in bands[0].get_paths()])
    assert ys.min() == pytest.approx(0) and ys.max() == pytest.approx(6)           # lowest to highest seed
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["method", "control"]
    assert legend.get_title().get_text() == "mean of 3 seeds, band: lowest to highest seed"
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "accuracy (%)"


def test_seed_band_of_one_seed_says_so_and_checks_shapes():
    ax = plots.seed_band(None, {"run": ([0, 1, 2], [[1.0, 2.0, 3.0]])}, percent=True)
    assert ax.get_legend().get_title().get_text() == "one seed"
    assert list(ax.get_lines()[0].get_ydata()) == [100, 200, 300]
    with pytest.raises(ValueError, match="3 values per seed for 2 steps"):
        plots.seed_band(None, {"bad": ([0, 1], [[1.0, 2.0, 3.0]])})
    with pytest.raises(ValueError, match="band must be one of"):
        plots.seed_band(None, {"run": ([0], [[1.0]])}, band="iqr")


def test_heatmap_has_one_cell_per_number_with_its_text_and_blank_cells_named():
    table = pd.DataFrame([[1.0, 2.0, np.nan], [4.0, 5.0, 6.0]], index=pd.Index([0.5, 2.0], name="α"),
                         columns=pd.Index(["a", "b", "c"], name="T"))
    ax = plots.heatmap(table, fmt=".1f", blank="diverged", colorbar="error (%)")
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    assert mesh.get_array().size == 6 and np.ma.count_masked(mesh.get_array()) == 1
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(["1.0", "2.0", "4.0", "5.0", "6.0", "diverged"])
    assert ax.get_xlabel() == "T" and ax.get_ylabel() == "α"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "2.0"]
    assert ax.get_ylim()[0] < ax.get_ylim()[1]                                  # first row at the bottom
    assert ax.figure.axes[-1].get_ylabel() == "error (%)"                        # the colour bar's label


def test_heatmap_writes_the_given_labels_and_checks_their_shape():
    table = pd.DataFrame([[1.0, 2.0, np.nan, np.nan]])
    ax = plots.heatmap(table, labels=pd.DataFrame([["one", "two", "never", ""]]), blank="no fit")
    assert sorted(t.get_text() for t in ax.texts) == ["never", "no fit", "one", "two"]   # a blank cell's own label
    with pytest.raises(ValueError, match="labels have shape"):
        plots.heatmap(table, labels=pd.DataFrame([["one"]]))
