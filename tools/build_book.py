"""Execute every chapter once, build the HTML book from the executed copies, and check the pages.

    python tools/build_book.py [--workers 2] [--threads 1] [--cell-timeout 300] [--only CHAPTER ...]

What ``make book`` and ``make test`` run:

1. The sources (``book/``, ``_toc.yml``, ``_config.yml``, ``_static/``) are copied to ``_build/site``.
2. Every chapter is executed through nbval (``pytest --nbval-lax -x``, one pytest process and one
   fresh kernel per chapter) — ``--workers`` at a time, each with ``--threads`` torch threads (set
   explicitly, so two kernels never fight over the cores) — with ``TDLAB_STATIC=1`` and
   ``TDLAB_RECORDS=_build/records/book`` and no other ``TDLAB_`` variable of the caller's (a
   ``TDLAB_CHECKS=record`` or ``TDLAB_SEED`` in the shell never reaches the book); a cell that raises
   (a failing claim raises, naming it) or runs past ``--cell-timeout`` seconds fails its chapter, and
   the report names the chapter and the cell. The plugin :mod:`tdlab.book.nbval_executed` writes the
   notebook with the outputs nbval collected into ``_build/site``: that one execution is what the
   ledger and the HTML book are built from.
3. The records are verified (:func:`tdlab.book.ledger.verify`): every chapter complete, its claims
   asserted (not recorded), none failed, and the same claims as its committed seed table. Then the
   book's root page (its totals) and the claims ledger (``book/ledger.ipynb``) are executed.
4. Jupyter Book builds ``_build/site`` with execution off and warnings as errors (``-W``):
   every page shows exactly the outputs of step 2.
5. The built pages are checked (``tools/check_pages.py``): every figure of each executed chapter
   is in its page, and no page carries widget state or stderr.
6. The timing report: per chapter, the whole notebook, the default run and the sweep.

The HTML book is then at ``_build/html``.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tdlab.book import ledger, records

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "_build"
SITE = BUILD / "site"
RECORDS = BUILD / "records" / "book"


def chapters_in_toc() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [entry["file"] for part in toc.get("parts", []) for entry in part["chapters"]]


def root_page() -> str:
    return yaml.safe_load((ROOT / "_toc.yml").read_text())["root"]


def kernel_env(threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every kernel the build starts: the caller's, without any ``TDLAB_`` variable
    (none of them may change what the book publishes), plus the build's own."""
    base = dict(os.environ if base is None else base)
    clean = {k: v for k, v in base.items() if not k.startswith("TDLAB_")}
    return {**clean, "TDLAB_STATIC": "1", "TDLAB_RECORDS": str(RECORDS), "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


def copy_sources(notebooks: bool = True) -> None:
    """The book's sources into the site folder; with ``notebooks=False`` the executed notebooks
    already there are kept and only the rest (config, toc, static files, markdown) is refreshed."""
    if notebooks and SITE.exists():
        shutil.rmtree(SITE)
    SITE.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns(".ipynb_checkpoints", *([] if notebooks else ["*.ipynb"]))
    for name in ("book", "_static"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, SITE / name, ignore=skip, dirs_exist_ok=True)
    shutil.copy(ROOT / "_toc.yml", SITE / "_toc.yml")
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"      # executed here, once
    (SITE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def execute(relative: str, env: dict[str, str], cell_timeout: int) -> dict:
    """Execute ``book/...ipynb`` through nbval into the site copy, in a kernel with exactly the
    environment ``env``; return what happened.

    One pytest process per chapter runs ``pytest --nbval-lax -x`` on the source notebook (the
    command a contributor types, plus the build's options): every code cell is a test, the first
    that raises — a failing claim raises an ``AssertionError`` naming it — or runs past
    ``cell_timeout`` seconds stops the chapter. The plugin :mod:`tdlab.book.nbval_executed` writes the
    notebook with the outputs nbval collected (the copy the HTML book and the ledger are built from)
    and a report: the seconds from the kernel's start to the last cell's end and the first error,
    naming the cell by its index in the notebook.
    """
    source = ROOT / f"{relative}.ipynb"
    target = SITE / f"{relative}.ipynb"
    with tempfile.TemporaryDirectory(prefix="tdlab-nbval-") as scratch:
        report_path = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pytest", "-p", "tdlab.book.nbval_executed", "-p", "no:cacheprovider",
                   "--nbval-lax", "-x", "-q", "--no-header", "-rN", f"--nbval-cell-timeout={cell_timeout}",
                   "--nbval-kernel-name=python3", f"--executed-to={target}", f"--executed-report={report_path}",
                   f"--rootdir={scratch}", f"--confcutdir={scratch}", str(source)]
        start = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=scratch, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        report = json.loads(report_path.read_text()) if report_path.exists() else {}
    error = report.get("error", "")
    if done.returncode and not error:                   # pytest itself failed (no report, or none blamed)
        tail = [line for line in (done.stdout + done.stderr).strip().splitlines() if line.strip()]
        error = f"nbval failed (pytest exit {done.returncode}): {' | '.join(tail[-3:])[:600]}"
    return {"chapter": relative, "seconds": report.get("seconds") or seconds, "error": error}


def drop_repeated_inline_scripts(page: Path) -> None:
    """Keep the first of identical inline ``<script>`` lines in a page.

    Jupyter Book 1 with Sphinx 7.4 writes sphinx-thebe's and sphinx-togglebutton's inline
    configuration scripts twice into every page (their ``add_js_file`` calls land both in the
    registry and in the builder); the second ``const THEBE_JS_URL`` is a JavaScript error in the
    reader's console. An identical inline script run twice is never meant, so the repeat goes.
    """
    seen, kept, changed = set(), [], False
    for line in page.read_text().splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("<script>") and stripped.endswith("</script>"):
            if stripped in seen:
                changed = True
                continue
            seen.add(stripped)
        kept.append(line)
    if changed:
        page.write_text("".join(kept))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=int(os.environ.get("TDLAB_WORKERS", 1)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("TDLAB_THREADS", 2)))
    parser.add_argument("--cell-timeout", type=int, default=300)
    parser.add_argument("--only", nargs="*", help="chapters to execute (paths as in _toc.yml); the rest keep no outputs")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the chapters executed by the last run (in _build/site) and their records; "
                             "rebuild the ledger, the pages and the checks only")
    args = parser.parse_args()

    entries = chapters_in_toc()
    pages = [e for e in entries if Path(e).parent == Path("book")]            # the ledger
    chapters = [e for e in entries if e not in pages and (ROOT / f"{e}.ipynb").exists()]
    if args.only:
        chapters = [c for c in chapters if c in args.only or c.removeprefix("book/") in args.only]
    copy_sources(notebooks=not args.reuse)
    if not args.reuse and RECORDS.exists():
        shutil.rmtree(RECORDS)
    env = kernel_env(args.threads)
    print(f"executing {0 if args.reuse else len(chapters)} chapters, {args.workers} at a time, "
          f"{args.threads} torch thread(s) each", flush=True)
    start = time.perf_counter()
    results = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
        futures = [pool.submit(execute, c, env, args.cell_timeout) for c in ([] if args.reuse else chapters)]
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results.append(result)
            records.note_executed(RECORDS, result["chapter"].removeprefix("book/"), result["seconds"])
            status = "ok" if not result["error"] else f"FAILED: {result['error']}"
            print(f"  {result['chapter']}: {result['seconds']:.0f} s  {status}", flush=True)
    print(f"all chapters: {time.perf_counter() - start:.0f} s wall", flush=True)
    failed = [r for r in results if r["error"]]
    if failed:
        print("\n".join(f"FAILED {r['chapter']}: {r['error']}" for r in failed), file=sys.stderr)
        return 1
    if not args.only:                                  # a partial build has no complete ledger to show
        unpublishable = ledger.verify(RECORDS, [c.removeprefix("book/") for c in chapters], ROOT / "book")
        if unpublishable:
            print("FAILED: the build's claims cannot be published:\n  " + "\n  ".join(unpublishable), file=sys.stderr)
            return 1
    for page in ([] if args.only else [root_page(), *pages]):
        if (ROOT / f"{page}.ipynb").exists():
            result = execute(page, env, args.cell_timeout)
            if result["error"]:
                print(f"FAILED {page}: {result['error']}", file=sys.stderr)
                return 1
    build = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", str(SITE), "-W",
                            "--keep-going", "--path-output", str(BUILD / "jb")], cwd=ROOT)
    if build.returncode:
        print("FAILED: the book build (warnings are errors)", file=sys.stderr)
        return build.returncode
    html = BUILD / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.copytree(BUILD / "jb" / "_build" / "html", html)
    for page in html.rglob("*.html"):
        drop_repeated_inline_scripts(page)
    check = subprocess.run([sys.executable, str(ROOT / "tools" / "check_pages.py"), str(SITE), str(html)]
                           + [c.removeprefix("book/") for c in chapters])
    if check.returncode:
        return check.returncode
    subprocess.run([sys.executable, str(ROOT / "tools" / "run_chapters.py"), "timings", str(RECORDS)])
    print(f"The book is at {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
