import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("TDLAB_QUIET", "1")
torch.set_num_threads(2)


@pytest.fixture
def tmp_data_dir(tmp_path, monkeypatch):
    """A private TDLAB_DATA cache dir."""
    monkeypatch.setenv("TDLAB_DATA", str(tmp_path))
    return tmp_path
