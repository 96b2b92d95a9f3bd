"""A pytest plugin that keeps what nbval executed: the notebook with every cell's outputs, and a report.

nbval (``pytest --nbval-lax``) runs a notebook's code cells one pytest item each, in one kernel, and
holds each cell's outputs on its item (``item.test_outputs``); it does not write them anywhere. The
book is built from exactly that execution (``tools/build_book.py``), so this plugin puts the outputs
back into the notebook nbval read and writes it::

    pytest -p tdlab.book.nbval_executed --nbval-lax -x --executed-to OUT.ipynb [--executed-report OUT.json] CHAPTER.ipynb

``--executed-to`` takes one notebook per run (the book runs one chapter per pytest process, so that a
chapter's kernel and environment are its own). The report (JSON) says how long the notebook took —
from the first cell's setup (the kernel's start included) to the last cell's end — how many code
cells ran, and, when one failed, ``error``: the cell's index among *all* the notebook's cells (the
index a reader finds in Jupyter) and the last line of its traceback (for a failing claim, the
``AssertionError`` naming it) or the per-cell timeout it ran past.

Without ``--executed-to`` the plugin does nothing: ``pytest --nbval-lax book/<part>/<chapter>.ipynb``
is plain nbval.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pytest_addoption(parser):
    group = parser.getgroup("tdlab", "the book's execution through nbval")
    group.addoption("--executed-to", default=None, metavar="PATH",
                    help="write the executed notebook (the one notebook of this run) to PATH")
    group.addoption("--executed-report", default=None, metavar="PATH",
                    help="write the run's report (seconds, cells run, the first error) to PATH as JSON")


class _Run:
    """What one notebook's execution left: the notebook nbval read, with the outputs put back."""

    def __init__(self, notebook, path: Path):
        self.notebook, self.path = notebook, path
        self.start: float | None = None
        self.end: float | None = None
        self.cells_run = 0
        self.error = ""


def _plugin_on(config) -> bool:
    return config.getoption("executed_to") is not None


def _is_nbval_cell(item) -> bool:
    return hasattr(item, "test_outputs") and hasattr(item, "cell") and hasattr(item.parent, "nb")


def _run_of(item) -> _Run:
    runs = item.config._tdlab_executed
    key = str(item.parent.path)
    if key not in runs:
        runs[key] = _Run(item.parent.nb, Path(key))
    return runs[key]


def pytest_configure(config):
    config._tdlab_executed = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if _plugin_on(item.config) and _is_nbval_cell(item):
        run = _run_of(item)
        if run.start is None:
            run.start = time.perf_counter()          # the kernel starts in the first cell's setup
    yield


def _ends_with_semicolon(source: str) -> bool:
    """IPython's own rule for a cell whose result is not shown. nbval executes every cell with
    ``store_history=False``, so IPython's display hook, which reads the last stored input, cannot
    apply it: the kernel sends the result of ``ax.set_title(...);`` (a ``Text``) or of a function
    returning the figure it drew (the figure a second time), which Jupyter never shows."""
    import tokenize

    from IPython.core.displayhook import DisplayHook     # the kernel's own package: nbval needs ipykernel

    try:
        return DisplayHook.semicolon_at_end_of_expression(source)
    except tokenize.TokenError:                       # source that does not tokenize raised in the kernel anyway
        return False


def _index_in_notebook(run: _Run, cell) -> int:
    return next(i for i, c in enumerate(run.notebook.cells) if c is cell)


def _describe(error: BaseException, timeout: float) -> str:
    """One line: what the failing cell did, in the build report's words."""
    text = _ANSI.sub("", str(error))
    inner = _ANSI.sub("", getattr(error, "inner_traceback", None) or "")
    if text.startswith("Timeout of") and "waiting for output" not in text:
        return f"ran past the per-cell timeout of {timeout:g} s (a hang, or a chapter over budget)"
    lines = [line for line in inner.strip().splitlines() if line.strip()]
    return f"raised: {lines[-1].strip()[:400]}" if lines else f"failed: {text[:400]}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not (_plugin_on(item.config) and _is_nbval_cell(item)):
        return
    report = outcome.get_result()
    run = _run_of(item)
    if call.when == "setup" and report.failed and not run.error:
        run.error = f"the kernel did not start: {_ANSI.sub('', str(call.excinfo.value))[:400]}"
    if call.when != "call":
        return
    run.end = time.perf_counter()
    run.cells_run += 1
    outputs = list(item.test_outputs or [])
    if _ends_with_semicolon(item.cell.source):       # what Jupyter shows: no result for a cell ending in ';'
        outputs = [o for o in outputs if o.get("output_type") != "execute_result"]
    item.cell.outputs = outputs
    item.cell.execution_count = run.cells_run
    for output in item.cell.outputs:                 # nbval's execute_result carries the kernel's count
        if output.get("output_type") == "execute_result":
            output["execution_count"] = run.cells_run
            output.setdefault("metadata", {})
    if report.failed and not run.error:
        timeout = float(item.config.getoption("nbval_cell_timeout"))
        run.error = f"cell {_index_in_notebook(run, item.cell)} {_describe(call.excinfo.value, timeout)}"


def pytest_sessionfinish(session):
    config = session.config
    if not _plugin_on(config):
        return
    import nbformat

    runs = list(config._tdlab_executed.values())
    if len(runs) > 1:
        raise pytest.UsageError("--executed-to writes one notebook: give pytest one notebook")
    target = Path(config.getoption("executed_to"))
    target.parent.mkdir(parents=True, exist_ok=True)
    report = {"notebook": None, "seconds": None, "cells_run": 0,
              "error": "" if session.testscollected else "no notebook cell was collected (is --nbval-lax given?)"}
    if runs:
        run = runs[0]
        nbformat.write(run.notebook, target)
        seconds = (run.end - run.start) if run.start is not None and run.end is not None else None
        report.update(notebook=str(run.path), seconds=seconds, cells_run=run.cells_run, error=run.error)
    if config.getoption("executed_report"):
        Path(config.getoption("executed_report")).write_text(json.dumps(report, indent=1))
