"""tdlab: the shared library of the training-dynamics book, in three layers, one folder each.

- :mod:`tdlab.core` — the training core: the one loop (``engine``) and what it trains with (``data``, ``noise``,
  ``models``, ``losses``, ``optim``/``flat``, ``monitors``, ``augment``, ``recipes``), one run (``train``), many
  (``sweep``), as jobs (``jobs``), and their record (``history``). The core imports nothing of the other two.
- :mod:`tdlab.book` — the book's machinery: what a chapter uses to state, check and show what it measured
  (``claims``, ``seed_tables``, ``records``, ``ledger``, ``plots``, ``interact``, ``explorer``, ``chapter``, …).
- :mod:`tdlab.methods` — the papers' methods, one folder per part of the book, named as ``book/``'s parts:
  ``book/07_sparse_training/`` finds its method in ``tdlab.methods.sparse_training``.

Until the next release the old flat names still import (``from tdlab import data``, ``tdlab.grokking``), each the
same module as its new home, with a ``DeprecationWarning`` naming where it now lives (:data:`MOVED`).
"""
import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# the old flat module names and where each lives now (one release of grace, then this goes)
MOVED = {
    "losses": "tdlab.core.losses",
    "engine": "tdlab.core.engine",
    "data": "tdlab.core.data",
    "models": "tdlab.core.models",
    "augment": "tdlab.core.augment",
    "recipes": "tdlab.core.recipes",
    "optim": "tdlab.core.optim",
    "monitors": "tdlab.core.monitors",
    "transformer": "tdlab.core.transformer",
    "history": "tdlab.core.history",
    "text": "tdlab.core.text",
    "flat": "tdlab.core.flat",
    "noise": "tdlab.core.noise",
    "config": "tdlab.core.config",
    "progress": "tdlab.core.progress",
    "sweep": "tdlab.core.sweep",
    "train": "tdlab.core.train",
    "jobs": "tdlab.core.jobs",
    "plots": "tdlab.book.plots",
    "interact": "tdlab.book.interact",
    "claims": "tdlab.book.claims",
    "explorer": "tdlab.book.explorer",
    "records": "tdlab.book.records",
    "chapter": "tdlab.book.chapter",
    "ledger": "tdlab.book.ledger",
    "seed_tables": "tdlab.book.seed_tables",
    "wording": "tdlab.book.wording",
    "units": "tdlab.book.units",
    "nbval_executed": "tdlab.book.nbval_executed",
    "nested": "tdlab.methods.noisy_labels.nested",
    "coteaching": "tdlab.methods.noisy_labels.coteaching",
    "calibration": "tdlab.methods.noisy_labels.calibration",
    "pyramidnet": "tdlab.methods.noisy_labels.pyramidnet",
    "local_complexity": "tdlab.methods.grokking.local_complexity",
    "grokking": "tdlab.methods.grokking.grokking",
    "numerics": "tdlab.methods.grokking.numerics",
    "fourier": "tdlab.methods.grokking.fourier",
    "kernels": "tdlab.methods.grokking.kernels",
    "multisample": "tdlab.methods.regularization.multisample",
    "compander": "tdlab.methods.regularization.compander",
    "sgd_noise": "tdlab.methods.lr_and_batch.sgd_noise",
    "annealing_law": "tdlab.methods.lr_and_batch.annealing_law",
    "large_batch": "tdlab.methods.lr_and_batch.large_batch",
    "stability": "tdlab.methods.stability.stability",
    "spikes": "tdlab.methods.stability.spikes",
    "random_teachers": "tdlab.methods.representations.random_teachers",
    "neural_collapse": "tdlab.methods.representations.neural_collapse",
    "sparsity": "tdlab.methods.sparse_training.sparsity",
    "continual": "tdlab.methods.continual.continual",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import tdlab.<old name>`` gives the module at its new home (the same object), with a warning."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix("tdlab.")
        if fullname.startswith("tdlab.") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = MOVED[spec.name.removeprefix("tdlab.")]
        warnings.warn(f"{spec.name} moved to {new}; import it from there (the old name goes in the next release)",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass                                            # the module at its new home is already executed


if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
    sys.meta_path.append(_Moved())

from tdlab.core.config import device, env_scale, env_seed, set_seed  # noqa: E402
from tdlab.core.history import History  # noqa: E402

__version__ = "0.1.0"
__all__ = ["History", "device", "env_scale", "env_seed", "set_seed", "__version__", "MOVED"]
