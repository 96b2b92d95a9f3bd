"""The record of a training run: a tidy table of (step, split, metric, value).

One row per measurement, so a figure is a filter and a groupby away. Splits:
``train``, ``test``, and with label noise ``train_clean`` / ``train_corrupted``
(accuracy of corrupted examples measured against their *noisy* labels, metric
``acc``, and against their *true* labels, metric ``acc_true``); monitors add their
own. Every run has members 0..E-1 (E = 1 for one run); each member's ``knobs`` hold
every setting it was trained with (seed, learning rate, weight decay, noise rate,
the loss's coefficients, the batch hook's settings, ...), whichever entry point
trained it, and ``models`` the trained modules.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn


# Metrics that are fractions (of examples, of neurons), drawn in % by the figures and the explorer: accuracies
# (``acc``, ``acc_true``, ``acc_*``), Softmax Collapse (``sc``, ``softmax_sc``), examples at zero loss, ELR's
# target buffer read as a detector (``target_true``, ``flagged``), calibration (``ece``, ``confidence``) and the
# share of neurons below an IPR edge (``ipr<e``). One list, read by :mod:`tdlab.book.plots` and :mod:`tdlab.book.explorer`.
FRACTIONS = ("acc", "acc_true", "sc", "softmax_sc", "zero_loss", "target_true", "flagged", "ece", "confidence")
FRACTION_PREFIXES = ("acc_", "ipr<")


def is_fraction(metric: str) -> bool:
    """Whether ``metric`` is a fraction in [0, 1] (drawn × 100, in %)."""
    return metric in FRACTIONS or metric.startswith(FRACTION_PREFIXES)


@dataclass
class History:
    """Measurements of one run or of a batch of runs (``member`` 0..E-1)."""

    records: list[dict] = field(default_factory=list)
    knobs: list[dict] = field(default_factory=lambda: [{}])   # per member: every setting it was trained with
    diverged_at: list[int | None] | None = None                # per member: the step its loss turned NaN/inf
    seconds: float = float("nan")
    models: list[nn.Module | None] | None = None               # per member: the trained model

    def __post_init__(self) -> None:
        members = len(self.knobs)
        if self.diverged_at is None:
            self.diverged_at = [None] * members
        if self.models is None:
            self.models = [None] * members
        if not len(self.diverged_at) == len(self.models) == members:
            raise ValueError(f"a History of {members} member(s) needs as many diverged_at and models entries, "
                             f"got {len(self.diverged_at)} and {len(self.models)}")

    # ------------------------------------------------------------------ writing
    def log(self, step: int, split: str, metric: str, value: float, member: int = 0) -> None:
        self.records.append({"member": member, "step": int(step), "split": split, "metric": metric,
                             "value": float(value)})

    # ------------------------------------------------------------------ reading
    @property
    def frame(self) -> pd.DataFrame:
        """The tidy table, with a column per knob and a ``diverged`` flag."""
        df = pd.DataFrame.from_records(self.records, columns=["member", "step", "split", "metric", "value"])
        knob_frame = pd.DataFrame(self.knobs).assign(member=range(len(self.knobs)))
        knob_frame["diverged"] = [d is not None for d in self.diverged_at]
        return df.merge(knob_frame, on="member", how="left")

    @property
    def num_members(self) -> int:
        return len(self.knobs)

    @property
    def model(self) -> nn.Module:
        """The trained model of a one-member History."""
        if self.num_members != 1:
            raise ValueError(f"this History has {self.num_members} members: use .models[member]")
        if self.models[0] is None:
            raise ValueError("this History holds no trained model")
        return self.models[0]

    @property
    def diverged(self) -> bool:
        """True when any member diverged (NaN/inf loss)."""
        return any(d is not None for d in self.diverged_at)

    def curve(self, split: str, metric: str, member: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one metric for one member."""
        rows = [(r["step"], r["value"]) for r in self.records
                if r["member"] == member and r["split"] == split and r["metric"] == metric]
        if not rows:
            raise KeyError(f"no {split}/{metric} values for member {member}; "
                           f"have: {sorted({(r['split'], r['metric']) for r in self.records})}")
        steps, values = zip(*rows)
        return np.asarray(steps), np.asarray(values)

    def final(self, split: str, metric: str, member: int = 0) -> float:
        return float(self.curve(split, metric, member)[1][-1])

    def peak(self, split: str, metric: str, member: int = 0) -> float:
        """The largest value reached (NaN-safe)."""
        values = self.curve(split, metric, member)[1]
        return float(np.nanmax(values)) if np.isfinite(values).any() else math.nan

    def peak_step(self, split: str, metric: str, member: int = 0) -> int:
        steps, values = self.curve(split, metric, member)
        return int(steps[int(np.nanargmax(values))])

    def first_step(self, split: str, metric: str, level: float, member: int = 0) -> float:
        """The first evaluated step at which ``metric`` reaches ``level`` (NaN if it never does)."""
        steps, values = self.curve(split, metric, member)
        hit = np.nonzero(values >= level)[0]
        return float(steps[hit[0]]) if len(hit) else math.nan

    def at_step(self, split: str, metric: str, step: int, member: int = 0) -> float:
        """The value measured at the first evaluation at or after ``step``."""
        steps, values = self.curve(split, metric, member)
        index = int(np.searchsorted(steps, step))
        if index == len(steps):
            raise KeyError(f"no {split}/{metric} evaluation at or after step {step} (last: {steps[-1]})")
        return float(values[index])

    def has(self, split: str, metric: str | None = None) -> bool:
        """Whether any member has values for ``split`` (and ``metric``)."""
        return any(r["split"] == split and (metric is None or r["metric"] == metric) for r in self.records)

    def member(self, index: int) -> "History":
        """The history of one member, as a single-run History."""
        if not 0 <= index < self.num_members:
            raise IndexError(f"member {index} of a History of {self.num_members}")
        records = [{**r, "member": 0} for r in self.records if r["member"] == index]
        return History(records, [dict(self.knobs[index])], [self.diverged_at[index]], self.seconds,
                       [self.models[index]])

    def members(self, **knobs) -> list[int]:
        """The indices of the members whose knobs take the given values (a value may be a list of allowed
        values; floats compared with a relative tolerance); empty when none does."""
        def keep(settings: dict) -> bool:
            for key, wanted in knobs.items():
                options = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
                if key not in settings or not any(_close(settings[key], o) for o in options):
                    return False
            return True

        return [m for m, settings in enumerate(self.knobs) if keep(settings)]

    def select(self, **knobs) -> "History":
        """The members whose knobs take the given values (a value may be a list of allowed values)."""
        chosen = self.members(**knobs)
        if not chosen:
            raise KeyError(f"no member with {knobs}")
        out = concat([self.member(m) for m in chosen])
        out.seconds = self.seconds
        return out

    def find(self, **knobs) -> int:
        """The member whose knobs match ``knobs`` (floats compared with a relative tolerance)."""
        for index, settings in enumerate(self.knobs):
            if all(k in settings and _close(settings[k], v) for k, v in knobs.items()):
                return index
        raise KeyError(f"no member with {knobs}")

    def __repr__(self) -> str:
        steps = max((r["step"] for r in self.records), default=0)
        return (f"History(members={self.num_members}, steps={steps}, rows={len(self.records)}, "
                f"diverged={sum(d is not None for d in self.diverged_at)})")


def _close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def concat(histories: list[History]) -> History:
    """Stack several histories as members of one."""
    out = History(records=[], knobs=[], diverged_at=[], models=[])
    for h in histories:
        offset = out.num_members
        out.records += [{**r, "member": r["member"] + offset} for r in h.records]
        out.knobs += [dict(k) for k in h.knobs]
        out.diverged_at += h.diverged_at
        out.models += h.models
    out.seconds = sum(h.seconds for h in histories)
    return out
