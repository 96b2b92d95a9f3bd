"""A recipe run for a few steps on a CPU: the machinery of ``make paper-smoke`` (issue 34 item 1;
tools/paper_smoke.py holds each chapter's paper-scale calls).

Every chapter offers ``TDLAB_SCALE=paper``, the paper's own setup for a GPU; no machine of the build has one or
can download CIFAR, so without this module no paper recipe would run a single step before a reader paid for a
GPU hour. :func:`smoke` runs each chapter's paper recipe — its real model, optimizer, schedule, loss, batch and
step hooks and monitors — for :data:`STEPS` steps, with:

- the datasets that cannot be downloaded replaced by **generated archives in the official formats** at the real
  shapes, class counts and split sizes (CIFAR-10/100's python tar, MNIST's IDX files, UCI Letter's text file:
  :func:`tdlab.core.archives.write_cifar_archive`, :func:`tdlab.core.archives.write_idx_files`,
  :func:`tdlab.core.archives.write_letter_file`), read through the loaders' real code (:func:`tdlab.core.data.cifar`,
  :func:`tdlab.core.data.idx_images`) — the pixels are noise, the numbers mean nothing;
- then, to fit a CPU, the loaded splits cut to a class-balanced handful (:func:`balanced_slice`,
  :data:`PER_CLASS` examples of each class, :data:`MAX_EXAMPLES` at most) and the batch to at most
  :data:`BATCH` examples: the steps, the evaluations and the monitors run the paper's code paths on those.

What it catches: a wrong channel or class count, a schedule or hook reading a missing key, a ``but(...)`` that
drops a paper setting into an error, a monitor that cannot read the paper's model. What it cannot: anything
that needs the full run (accuracy, stability, time). The chapters whose paper recipe is still written inline in
the notebook (issue 33 item 2) are listed by tools/paper_smoke.py, and the run says so for each — it never
skips one silently.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from tdlab.core import archives
from tdlab.core.dataset import Dataset
from tdlab.core.history import History
from tdlab.core.recipes import Recipe

STEPS = 2            # optimizer steps per member
BATCH = 8            # at most this many examples a step (the paper's batch is recorded beside it)
SEQUENCES = 2        # sequence data (a label per position): windows kept in each split, and the batch
PER_CLASS = 2        # examples of each class kept in each split
MAX_EXAMPLES = 64    # at most this many examples in each split (CIFAR-100: the first 32 classes' pairs)


# ----------------------------------------------------------------- generated archives in the official formats


def generated_data(root: str | Path) -> Path:
    """``root`` holding every archive the paper recipes read (written once, kept): point ``TDLAB_DATA`` at it."""
    root = Path(root)
    for classes in (10, 100):
        name = Path(archives.SOURCES[f"cifar{classes}"]["url"]).name
        if not (root / name).exists():
            archives.write_cifar_archive(root / name, classes)
    if not all((root / "mnist" / f).exists() for f in archives.IDX_FILES):
        archives.write_idx_files(root / "mnist")
    if not (root / "letter-recognition.data").exists():      # UCI's Letter (the LDR-KL chapter's tabular set)
        archives.write_letter_file(root / "letter-recognition.data")
    return root


# ----------------------------------------------------------------- cutting a run down to a CPU's few steps


def balanced_slice(data: Dataset, per_class: int = PER_CLASS, limit: int = MAX_EXAMPLES) -> Dataset:
    """``data`` with each split cut to its first ``per_class`` examples of every class (``limit`` at most),
    so that a split a recipe divides by class (tasks of two digits, a minority of classes) keeps every class.
    Sequence data (a label per position, or no class count) keeps its first :data:`SEQUENCES` windows of each
    split: a window of a language model costs as much as hundreds of images."""
    def keep(y: torch.Tensor) -> torch.Tensor:
        if data.num_classes is None or y.dim() != 1:
            return torch.arange(min(len(y), SEQUENCES), device=y.device)
        picked = [torch.nonzero(y == c).flatten()[:per_class] for c in range(data.num_classes)]
        return torch.cat(picked).sort().values[:limit]

    train, test = keep(data.y_train), keep(data.y_test)
    changes = {"x_train": data.x_train[train], "y_train": data.y_train[train],
               "x_test": data.x_test[test], "y_test": data.y_test[test]}
    for key, index in (("y_train_true", train), ("corrupted_mask", train), ("pairs_train", train),
                       ("pairs_test", test)):
        value = getattr(data, key)
        if value is not None:
            changes[key] = value[index]
    return data.replace(**changes)


def shrunk(recipe: Recipe, steps: int = STEPS, batch: int = BATCH) -> Recipe:
    """``recipe`` for ``steps`` steps of at most ``batch`` examples, evaluated at the last step, on the
    :func:`balanced_slice` of its data (the data maker keeps its knobs: its signature is the original's)."""
    maker = recipe.data
    if callable(maker):
        @functools.wraps(maker)                 # the signature stays the maker's: its knobs still bind
        def small(**knobs):
            return balanced_slice(recipe._data(knobs))      # the full set loaded once, in the paper recipe
        data = small
    else:
        data = balanced_slice(maker)
    paper_batch = recipe.settings.get("batch_size")
    settings = {**recipe.settings, "steps": steps, "eval_every": steps, "progress": False,
                "batch_size": batch if paper_batch is None else min(batch, paper_batch)}
    return dataclasses.replace(recipe, data=data, settings=settings, _loaded={})


# ----------------------------------------------------------------- the chapters' paper recipes


@dataclass
class Case:
    """One paper-scale call of a chapter: ``make()`` builds its paper recipe (reading the generated archives),
    ``members`` are the runs the chapter's paper scale trains in it (the method and its control)."""
    chapter: str
    label: str
    make: Callable[[], Recipe]
    members: list[dict]


# ----------------------------------------------------------------- what the paper run costs (issue 34 item 3)

REFERENCE_GPU = "NVIDIA H100 SXM"
# Its TF32 tensor-core peak, dense: NVIDIA's H100 datasheet gives 989 TFLOPS "with sparsity", half without.
REFERENCE_TFLOPS = 494.7
UTILIZATION = 0.3      # the fraction of that peak assumed sustained (small models reach far less: a lower bound)


def example_flops(model: torch.nn.Module, x: torch.Tensor) -> float:
    """FLOPs of one forward and backward pass per example of ``x`` (:class:`torch.utils.flop_counter.FlopCounterMode`
    counts the matrix products and convolutions; the loss and the optimizer's elementwise update are left out)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        out = out if isinstance(out, torch.Tensor) else next(o for o in out if isinstance(o, torch.Tensor))
        out.float().sum().backward()
    return counter.get_total_flops() / len(x)


def model_size_and_flops(model: Callable[[], torch.nn.Module], x: torch.Tensor) -> tuple[int, float]:
    """The parameter count of ``model()`` and its :func:`example_flops` on examples shaped as ``x``, counted on
    PyTorch's ``meta`` device (shapes only: no memory, no arithmetic — an 85M-parameter decoder in about a second);
    a model that reads its weights' values as it is built (the companded ResNet) is counted on real tensors."""
    try:
        with torch.device("meta"):
            built = model()
            return sum(p.numel() for p in built.parameters()), example_flops(built, torch.zeros_like(x, device="meta"))
    except (NotImplementedError, RuntimeError):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            built = model()
            return sum(p.numel() for p in built.parameters()), example_flops(built, torch.zeros_like(x))


def paper_flops(per_example: float, settings: dict, num_train: int, num_test: int, members: int = 1) -> float:
    """The paper run's FLOPs: ``steps × batch`` examples forward and backward, plus a forward pass (a third of
    both) over the training and test splits at every evaluation, for each member."""
    steps = settings.get("steps", 1000)
    batch = settings.get("batch_size") or num_train
    evaluations = steps // max(1, settings.get("eval_every", 50)) + 1
    return members * per_example * (steps * batch + evaluations * (num_train + num_test) / 3)


def gpu_hours(flops: float) -> float:
    """Hours on :data:`REFERENCE_GPU` at :data:`UTILIZATION` of :data:`REFERENCE_TFLOPS`."""
    return flops / (REFERENCE_TFLOPS * 1e12 * UTILIZATION) / 3600


@dataclass
class Result:
    chapter: str
    label: str
    seconds: float
    parameters: int
    paper_batch: int | None
    error: str | None = None
    history: History | None = None
    flops_per_example: float = float("nan")      # forward and backward, the paper's model
    paper_flops: float = float("nan")            # the whole paper run of the case's members

    @property
    def gpu_hours(self) -> float:
        return gpu_hours(self.paper_flops)


def smoke(case: Case, steps: int = STEPS) -> Result:
    """Build ``case``'s paper recipe and train its members for ``steps`` steps on the cut-down data; an
    exception is caught and returned in :attr:`Result.error` (with the chapter's name)."""
    start = time.perf_counter()
    paper_batch, parameters, per_example, total = None, 0, float("nan"), float("nan")
    try:
        recipe = case.make()
        paper_batch = recipe.settings.get("batch_size")
        full = recipe.dataset
        parameters, per_example = model_size_and_flops(recipe.model, full.x_train[:2])
        total = paper_flops(per_example, recipe.settings, full.num_train, full.num_test, len(case.members))
        sequences = full.num_classes is None or full.y_train.dim() != 1
        history = shrunk(recipe, steps, SEQUENCES if sequences else BATCH).sweep(case.members)
        diverged = [m for m, step in enumerate(history.diverged_at) if step is not None]
        error = ("no evaluation recorded" if not history.records else
                 f"member(s) {diverged} diverged" if diverged else None)
    except Exception as exc:                                          # noqa: BLE001 (reported, named)
        history, error = None, f"{type(exc).__name__}: {exc}"
    return Result(case.chapter, case.label, time.perf_counter() - start, parameters, paper_batch, error, history,
                  per_example, total)
