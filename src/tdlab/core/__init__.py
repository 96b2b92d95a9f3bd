"""tdlab.core: the training core: the one loop and what it trains with (data, noise, models, losses, optimizers, monitors, batch hooks, recipes, runs and sweeps). It imports nothing of the book or the methods.

- :mod:`tdlab.core.losses` — Losses, written once for a single run and for a batch of E models (a package: base, targets, robust, grokking).
- :mod:`tdlab.core.engine` — The one training loop of tdlab: one run or many, batched or one at a time.
- :mod:`tdlab.core.batches` — What each step of the loop sees: the batches' order, the epoch, the learning-rate schedule, the hooks' records.
- :mod:`tdlab.core.data` — Datasets as tensors that live on the device, with example indices: loading by name.
- :mod:`tdlab.core.dataset` — The :class:`Dataset` every loader returns, and where data are kept on disk.
- :mod:`tdlab.core.archives` — Datasets read from (and written in) the official archives' formats: CIFAR, MNIST's IDX, UCI Letter.
- :mod:`tdlab.core.synthetic` — Generated datasets: modular arithmetic, teacher–student, feature noise, the quadratic teacher.
- :mod:`tdlab.core.models` — Models: an MLP, small 1-D/2-D CNNs, the modular-arithmetic network, and PreAct ResNet-18 and ResNet-34 for …
- :mod:`tdlab.core.augment` — Batch transforms for the training loop's ``batch_hook``: they take and return a :class:`tdlab.core.train.Batch` …
- :mod:`tdlab.core.recipes` — Recipes: a chapter's whole training setup in one object, and the book's standard setups.
- :mod:`tdlab.core.optim` — The optimizers the loop steps beyond the named ones of :mod:`tdlab.core.flat`, and how it finds them.
- :mod:`tdlab.core.monitors` — What the training loop measures, as functions of the logits it has just computed.
- :mod:`tdlab.core.transformer` — A tiny pre-LN decoder-only Transformer, for the stability chapters (Wortsman et al.
- :mod:`tdlab.core.history` — The record of a training run: a tidy table of (step, split, metric, value).
- :mod:`tdlab.core.text` — A small real text corpus, offline: the Python standard library's own source files.
- :mod:`tdlab.core.flat` — Parameters in one flat buffer, and the optimizers that update it in a few operations.
- :mod:`tdlab.core.noise` — Seeded label noise, returning the noisy labels and the mask of corrupted examples.
- :mod:`tdlab.core.config` — Run-wide settings: the device, seeds, and the book's environment variables.
- :mod:`tdlab.core.progress` — Progress of a long run: a bar where someone can watch it, nothing where no one can.
- :mod:`tdlab.core.sweep` — Many configurations trained at once, at about the cost of one run.
- :mod:`tdlab.core.train` — One training run: the one-member case of the loop in :mod:`tdlab.core.engine`.
- :mod:`tdlab.core.jobs` — A sweep's members as separate jobs, for runs too large for one machine (issue 34 item 4).
- :mod:`tdlab.core.smoke` — A recipe run for a few steps on cut-down data, and what its full run costs (``make paper-smoke``).
"""
