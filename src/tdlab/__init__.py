"""tdlab: the shared library of the training-dynamics book.

Modules, one job each:

- :mod:`tdlab.config`    the device, seeds, the book's environment variables
- :mod:`tdlab.data`      datasets as device-resident tensors (MNIST-1D, digits, modular arithmetic, ...)
- :mod:`tdlab.noise`     seeded label noise with the mask of corrupted examples
- :mod:`tdlab.models`    MLP, small CNNs, the modular-arithmetic network, ResNets for GPU-scale runs
- :mod:`tdlab.losses`    every loss of the book, batched over a leading member axis, in one registry
- :mod:`tdlab.flat`      parameters in one flat buffer, and the optimizers that step it
- :mod:`tdlab.optim`     optimizers beyond the named ones (⊥Grad)
- :mod:`tdlab.engine`    the one training loop: one run or many, stacked or one at a time
- :mod:`tdlab.monitors`  what the loop measures at each evaluation, as functions of its logits
- :mod:`tdlab.train`     one run (the one-member case of the engine)
- :mod:`tdlab.sweep`     many runs at once, grids of settings
- :mod:`tdlab.history`   the tidy record of a run or a sweep, with every member's settings and model
- :mod:`tdlab.augment`   batch transforms for the loop's ``batch_hook`` (crop/flip, mixup, CutMix, Cutout)
- :mod:`tdlab.numerics`  floating-point limits of the softmax: Softmax Collapse and its monitor
- :mod:`tdlab.fourier`   Fourier analysis (IPR) and pruning of the modular-arithmetic network
- :mod:`tdlab.grokking`  the phases of grokking with corrupted labels
- :mod:`tdlab.plots`     one visual style and the standard figures
- :mod:`tdlab.interact`  widget panels around a ``run(**knobs)`` function
- :mod:`tdlab.progress`  a progress bar where someone can watch, nothing where no one can
- :mod:`tdlab.recipes`   a chapter's training setup in one object; the book's standard setups
- :mod:`tdlab.records`   what an executed chapter leaves for the book: claims and timings
- :mod:`tdlab.claims`    one way to state a claim (effect, not reproduced, sanity), check it and record it
- :mod:`tdlab.seed_tables` each chapter's committed ten-seed table and the threshold rule
- :mod:`tdlab.wording`   the vocabulary of claims: what a word promises about its threshold
- :mod:`tdlab.ledger`    the claims ledger, each chapter's status line, the book's totals
- :mod:`tdlab.chapter`   the plumbing every chapter shares (setup, timing, summaries, formatting)
"""
from tdlab.config import device, env_scale, env_seed, set_seed
from tdlab.history import History

__version__ = "0.1.0"
__all__ = ["History", "device", "env_scale", "env_seed", "set_seed", "__version__"]
