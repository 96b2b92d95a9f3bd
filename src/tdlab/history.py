"""The record of a training run: a tidy table of (step, split, metric, value).

One row per measurement, so a figure is a filter and a groupby away. Splits:
``train``, ``test``, and with label noise ``train_clean`` / ``train_corrupted``
(accuracy of corrupted examples measured against their *noisy* labels, metric
``acc``, and against their *true* labels, metric ``acc_true``). A sweep adds a
``member`` column and one column per swept knob.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class History:
    """Measurements of one run or of a batch of runs (``member`` 0..E-1)."""

    records: list[dict] = field(default_factory=list)
    knobs: list[dict] = field(default_factory=lambda: [{}])   # per member: the swept settings
    diverged_at: list[int | None] = field(default_factory=lambda: [None])
    seconds: float = float("nan")

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

    def member(self, index: int) -> "History":
        """The history of one member, as a single-run History."""
        records = [{**r, "member": 0} for r in self.records if r["member"] == index]
        return History(records, [self.knobs[index]], [self.diverged_at[index]], self.seconds)

    def select(self, **knobs) -> "History":
        """The members whose knobs take the given values (a value may be a list of allowed values)."""
        def keep(settings: dict) -> bool:
            for key, wanted in knobs.items():
                options = wanted if isinstance(wanted, (list, tuple, set)) else [wanted]
                if key not in settings or not any(_close(settings[key], o) for o in options):
                    return False
            return True

        chosen = [m for m, settings in enumerate(self.knobs) if keep(settings)]
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
    out = History(records=[], knobs=[], diverged_at=[])
    for h in histories:
        offset = out.num_members
        out.records += [{**r, "member": r["member"] + offset} for r in h.records]
        out.knobs += h.knobs
        out.diverged_at += h.diverged_at
    out.seconds = sum(h.seconds for h in histories)
    return out
