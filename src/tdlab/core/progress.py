"""Progress of a long run: a bar where someone can watch it, nothing where no one can.

- In a live notebook kernel with a frontend (Jupyter, Colab): a ``tqdm`` widget bar.
- In a terminal: a ``tqdm`` text bar.
- Under ``CI``, ``TDLAB_QUIET`` or ``TDLAB_STATIC`` (``make book`` and ``make test`` set it, so
  nbval and the book build see it), and anywhere else without a terminal: nothing at all.
  A widget bar executed during a book build
  would store widget state in the page and make it load the widget manager (about 1 MB)
  for a bar nobody sees; and ``TQDM_DISABLE`` does not switch ``tqdm.auto`` off inside a
  kernel, so the choice is made here, explicitly.
"""
from __future__ import annotations

import sys

from tqdm import tqdm as text_bar
from tqdm.notebook import tqdm as widget_bar

from tdlab.core.config import frontend_attached, quiet, static


class Silent:
    """A bar that shows nothing (the same methods as tqdm's)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def where() -> str:
    """``"widget"`` (a live notebook frontend), ``"text"`` (a terminal) or ``"none"``."""
    if quiet() or static():
        return "none"
    if frontend_attached():
        return "widget"
    return "text" if sys.stderr.isatty() else "none"


def bar(total: int, description: str = "", enabled: bool = True):
    """A progress bar over ``total`` steps, or :class:`Silent` when no one can see one."""
    kind = where() if enabled else "none"
    if kind == "none":
        return Silent()
    make = widget_bar if kind == "widget" else text_bar
    return make(total=total, desc=description, leave=False, mininterval=0.5)
