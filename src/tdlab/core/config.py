"""Run-wide settings: the device, seeds, and the book's environment variables.

``TDLAB_SEED`` (default 0) seeds every random draw of a chapter; ``TDLAB_SCALE``
is ``cpu`` (default, the ≤ 90 s runs) or ``paper`` (the paper's own scale, for a GPU).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from IPython import get_ipython

SCALES = ("cpu", "paper")


def device(name: str | None = None) -> torch.device:
    """CUDA when available (or when ``name`` asks for it), else the CPU."""
    if name is not None:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def env_seed(default: int = 0) -> int:
    """The chapter seed from ``TDLAB_SEED``."""
    value = os.environ.get("TDLAB_SEED", str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"TDLAB_SEED must be an integer, got {value!r}") from None


def env_scale(default: str = "cpu") -> str:
    """The chapter scale from ``TDLAB_SCALE``: ``'cpu'`` or ``'paper'``."""
    value = os.environ.get("TDLAB_SCALE", default).strip().lower()
    if value not in SCALES:
        raise ValueError(f"TDLAB_SCALE must be one of {SCALES}, got {value!r}")
    return value


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to something other than "", "0" or "false"."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false")


def quiet() -> bool:
    """True when progress bars should be silent (``CI`` is set, or ``TDLAB_QUIET``)."""
    return env_flag("CI") or env_flag("TDLAB_QUIET")


def static() -> bool:
    """True when no one can click: ``CI`` or ``TDLAB_STATIC`` (the book build, ``make test``)."""
    return env_flag("CI") or env_flag("TDLAB_STATIC")


def check_choice(what: str, value, allowed) -> None:
    """Raise a ``ValueError`` naming ``what`` and the allowed values."""
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(map(repr, allowed))}")


def check_range(what: str, value: float, low: float | None = None, high: float | None = None,
                *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise a ``ValueError`` if ``value`` is outside [low, high] (or the open variants)."""
    ok = np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{what} must be in {interval}, got {value!r}")


def live_kernel() -> bool:
    """True inside a running notebook kernel (Jupyter, Colab, nbval, the book build)."""
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def frontend_attached() -> bool:
    """True when someone can watch and click: a live kernel, and neither ``CI`` nor ``TDLAB_STATIC``."""
    return live_kernel() and not static()
