"""What a chapter's execution leaves behind for the book: its claims and its timings.

When ``TDLAB_RECORDS`` names a folder (``make book``, ``make test`` and ``make seeds`` set
it), every executed chapter keeps one JSON file there,
``<folder>/<chapter>/seed<SEED>-<scale>.json``: the claims it checked
(:func:`tdlab.book.claims.check`) and the timings of its runs (:func:`tdlab.book.chapter.timed`).
Without ``TDLAB_RECORDS`` nothing is written: a reader running a chapter in Jupyter
leaves no files behind.

Every write replaces the whole file atomically (a temporary file in the same folder,
then ``os.replace``), so a reader of the folder sees the file as it was before a write
or after it, never half of it. A record says ``"complete": false`` until the chapter's
last cell marks it done (:func:`finish`), so a build interrupted halfway is never read as
a whole chapter.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

from tdlab.core.config import env_flag, env_scale, env_seed

VERSION = 2          # 2: claims carry their kind, null and threshold rule; a record says how checks ran


def folder() -> Path | None:
    """The records folder from ``TDLAB_RECORDS``, or None (then nothing is recorded)."""
    value = os.environ.get("TDLAB_RECORDS", "").strip()
    return Path(value) if value else None


_chapter = {"name": ""}


def set_chapter(name: str) -> None:
    """Name the running chapter by its path under ``book/`` without the suffix
    (``"01_noisy_labels/01_memorization_elr"``); :func:`tdlab.book.chapter.setup` calls it."""
    _chapter["name"] = name


def chapter_name() -> str:
    """The running chapter: ``TDLAB_CHAPTER`` if set, else the name :func:`set_chapter` gave, else ``"unnamed"``."""
    return os.environ.get("TDLAB_CHAPTER", "").strip() or _chapter["name"] or "unnamed"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def path(chapter: str | None = None, seed: int | None = None, scale: str | None = None,
         root: Path | None = None) -> Path | None:
    """A chapter's record file under ``root`` (default ``TDLAB_RECORDS``; None when unset): the running
    chapter, ``TDLAB_SEED`` and ``TDLAB_SCALE`` unless given."""
    root = folder() if root is None else root
    if root is None:
        return None
    chapter = chapter or chapter_name()
    seed = env_seed() if seed is None else seed
    scale = scale or env_scale()
    return root / chapter / f"seed{seed}-{_slug(scale)}.json"


def write_atomic(target: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``target`` so that no reader ever sees a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(payload, out, indent=1, allow_nan=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def read(target: Path) -> dict:
    with open(target) as f:
        return json.load(f)


_open: dict[Path, dict] = {}


def _threads() -> int:
    """The torch threads this kernel computes with: the same seed takes another trajectory at another
    count (float sums in another order), so a record says which it ran with."""
    import torch
    return torch.get_num_threads()


def current() -> dict | None:
    """This chapter's record (created empty at the first use in this kernel), or None."""
    target = path()
    if target is None:
        return None
    if target not in _open:
        _open[target] = {"version": VERSION, "chapter": chapter_name(), "seed": env_seed(), "scale": env_scale(),
                         "checks": "record" if os.environ.get("TDLAB_CHECKS", "").strip().lower() == "record"
                         else "assert", "nulls": env_flag("TDLAB_NULLS"), "threads": _threads(),
                         "started": time.time(), "complete": False, "claims": [], "timings": []}
        write_atomic(target, _open[target])
    return _open[target]


def start() -> None:
    """Begin this chapter's record afresh (its setup cell calls it: running a chapter again in the
    same kernel does not add its claims twice)."""
    target = path()
    if target is not None:
        _open.pop(target, None)
        current()


def add(kind: str, entry: dict) -> None:
    """Append ``entry`` to the record's list ``kind`` (``"claims"`` or ``"timings"``) and save."""
    record = current()
    if record is None:
        return
    record.setdefault(kind, []).append(entry)
    write_atomic(path(), record)


def finish() -> None:
    """Mark this chapter's record complete (the chapter's last cell calls it)."""
    record = current()
    if record is None:
        return
    record["complete"] = True
    record["finished"] = time.time()
    write_atomic(path(), record)


def load_all(root: Path) -> list[dict]:
    """Every record under ``root`` (complete or not; each says which), sorted by chapter and seed."""
    out = []
    for file in sorted(root.glob("*/*/seed*.json")) + sorted(root.glob("*/seed*.json")):
        try:
            out.append({**read(file), "file": str(file)})
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: (r.get("chapter", ""), r.get("seed", 0), r.get("scale", "")))


def note_executed(root: Path, chapter: str, seconds: float, seed: int | None = None, scale: str | None = None) -> None:
    """Add the runner's wall time for the whole notebook (kernel start to the last cell's end) to a
    chapter's record; the notebook itself cannot see its kernel start. No record, nothing to note."""
    target = path(chapter, seed, scale, root=root)
    if target.exists():
        write_atomic(target, {**read(target), "executed_seconds": seconds})


# The time budget of the chapter contract, on the 2-core CI machine (DEVELOPERS.md, issue 14).
NOTEBOOK_BUDGET_S, DEFAULT_RUN_BUDGET_S = 120, 60


def timing_table(root: Path) -> list[dict]:
    """Per executed chapter (and seed): the whole notebook's wall time as the runner measured it
    (kernel start to the last cell; else from the setup cell to the last cell), the default run's
    and the sweep's time, from the records under ``root``, and what is over the budget."""
    rows = []
    for record in load_all(root):
        times = {t["label"]: t["seconds"] for t in record.get("timings", [])}
        inside = record["finished"] - record["started"] if record.get("complete") else math.nan
        whole = record.get("executed_seconds", inside)
        default = times.get("default run", math.nan)
        over = ([f"notebook > {NOTEBOOK_BUDGET_S} s"] if whole > NOTEBOOK_BUDGET_S else []) + \
               ([f"default run > {DEFAULT_RUN_BUDGET_S} s"] if default > DEFAULT_RUN_BUDGET_S else [])
        rows.append({"chapter": record["chapter"], "seed": record["seed"], "notebook s": whole,
                     "setup to end s": inside, "default run s": default,
                     "sweep s": times.get("sweep", math.nan), "all timed runs s": sum(times.values()),
                     "complete": bool(record.get("complete")), "threads": record.get("threads"),
                     "over budget": ", ".join(over)})
    return rows
