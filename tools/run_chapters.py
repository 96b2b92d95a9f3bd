"""Execute chapters outside the book build: on several seeds, in parallel, with a timing report.

    python tools/run_chapters.py seeds --chapter 01_noisy_labels/01_memorization_elr
    python tools/run_chapters.py seeds --chapter all
    python tools/run_chapters.py check --chapter 01_noisy_labels/01_memorization_elr
    python tools/run_chapters.py timings _build/records/test
    python tools/run_chapters.py projection _build/test-steps.tsv _build/records/book

``seeds`` executes the chapter once per seed (``TDLAB_SEED``; seeds 0–9 unless given), with
``TDLAB_CHECKS=record`` so a claim that fails on one seed is recorded instead of stopping the run,
and ``TDLAB_NULLS=1`` so every effect claim's null is measured. On the ten committed seeds it writes
the chapter's seed table beside the notebook (``book/<part>/<chapter>.seeds.yaml``, thresholds
derived by the rule of :mod:`tdlab.book.seed_tables`), prints claim × seed with the rules that break,
and exits non-zero if any does; on other seeds it only prints (and writes ``<records>/<chapter>.md``).
``--chapter all`` does every chapter of the table of contents, one after the other.

``check`` executes one chapter as the book build does (seed 0, claims asserted against its committed
table), verifies its record, warns (never fails) where its values differ from the table's seed 0, and
keeps the executed copy (``<records>/executed/<chapter>.ipynb``). ``timings`` prints, per chapter, the whole notebook's wall
time, the default run's and the sweep's, from the records a run left (``make test`` and
``make book`` call it). ``projection`` (the end of ``make test``) takes the test's step times and
the chapters' records and projects the whole ``make test`` to 22 and 30 chapters.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tdlab.book import ledger, records, seed_tables

ROOT = Path(__file__).resolve().parents[1]


def execute(notebook: Path, env: dict[str, str], cell_timeout: int, base: dict[str, str] | None = None,
            save: Path | None = None) -> tuple[float, str]:
    """Execute ``notebook`` in a fresh kernel whose environment is ``base`` (default: this process's)
    with ``env`` added, and write the executed copy to ``save`` if given; return (seconds, error or "")."""
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    start = time.perf_counter()
    try:
        client.execute(env={**(os.environ if base is None else base), **env})
        error = ""
    except Exception as failure:  # the report names the chapter and the error; the caller decides
        error = f"{type(failure).__name__}: {str(failure).strip().splitlines()[-1][:300]}"
    seconds = time.perf_counter() - start
    if save is not None:
        save.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save)
    return seconds, error


def seeds(chapter: str, seed_list: list[int], folder: Path, workers: int, threads: int, cell_timeout: int,
          reuse: bool = False) -> int:
    """Run ``chapter`` on ``seed_list``; on the committed seeds write its table. Returns the number of
    problems (failed executions and broken rules). With ``reuse``, nothing is executed: the table is made
    again from the records the last run left (a rounding or a rule changed, not the chapter)."""
    notebook = ROOT / "book" / f"{chapter}.ipynb"
    if not notebook.exists():
        sys.exit(f"no chapter {chapter!r}: expected {notebook}")
    for seed in ([] if reuse else seed_list):
        stale = folder / chapter / f"seed{seed}-cpu.json"
        if stale.exists():
            stale.unlink()
    keep = {k: v for k, v in os.environ.items() if not k.startswith("TDLAB_")}
    common = {"TDLAB_RECORDS": str(folder), "TDLAB_CHECKS": "record", "TDLAB_NULLS": "1", "TDLAB_STATIC": "1",
              "TDLAB_SCALE": "cpu", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    failures = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {}
        for seed in ([] if reuse else seed_list):
            env = {**common, "TDLAB_SEED": str(seed)}
            futures[pool.submit(execute, notebook, env, cell_timeout, keep)] = seed
        for future in concurrent.futures.as_completed(futures):
            seconds, error = future.result()
            failures += bool(error)
            records.note_executed(folder, chapter, seconds, seed=futures[future])
            print(f"{chapter} seed {futures[future]}: {seconds:.0f} s" + (f"  ERROR {error}" if error else ""),
                  flush=True)
    found = [r for r in records.load_all(folder)
             if r.get("chapter") == chapter and r.get("seed") in seed_list and r.get("complete")]
    table = seed_tables.from_records(chapter, "cpu", found)
    committed = tuple(seed_list) == seed_tables.SEEDS and not failures and len(found) == len(seed_list)
    text = f"### {chapter}, seeds {', '.join(map(str, seed_list))}\n\n" + ledger.seed_report(table) + "\n"
    (folder / f"{chapter.replace('/', '__')}.md").write_text(text)
    if committed:
        print(f"wrote {seed_tables.save(table, ROOT / 'book')}")
    elif tuple(seed_list) == seed_tables.SEEDS:
        print("some seeds did not finish: the committed table is left as it was")
    print(text)
    return failures + len(seed_tables.problems(table, tuple(seed_list)))


def check(chapter: str, folder: Path, threads: int, cell_timeout: int) -> int:
    """Execute ``chapter`` once as the book build does (seed 0, claims asserted against the committed
    table, no nulls, none of the caller's ``TDLAB_`` variables), verify its record, and report where its values
    differ from the table's at the same seed (a warning, not a failure: :func:`against_table`)."""
    notebook = ROOT / "book" / f"{chapter}.ipynb"
    keep = {k: v for k, v in os.environ.items() if not k.startswith("TDLAB_")}
    env = {"TDLAB_RECORDS": str(folder), "TDLAB_STATIC": "1", "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    stale = folder / chapter / "seed0-cpu.json"
    if stale.exists():
        stale.unlink()
    executed = folder / "executed" / f"{chapter}.ipynb"
    seconds, error = execute(notebook, env, cell_timeout, keep, save=executed)
    records.note_executed(folder, chapter, seconds, seed=0)
    found = ledger.verify(folder, [chapter], ROOT / "book")
    print(f"{chapter}: {seconds:.0f} s whole notebook" + (f"  ERROR {error}" if error else "")
          + f"; the executed copy is {executed}")
    for line in found:
        print(f"  {line}")
    for line in against_table(chapter, folder):
        print(f"  {line}")
    return 1 if error or found else 0


def against_table(chapter: str, folder: Path) -> list[str]:
    """The check's values against the seed table's at the same seed (:func:`seed_tables.drift`): a report,
    never a failure — another processor (CI's) or another thread count rounds differently, and noisy training
    can grow that rounding into points."""
    record = next((r for r in records.load_all(folder) if r.get("chapter") == chapter and r.get("scale") == "cpu"
                   and r.get("complete")), None)
    table = seed_tables.load(chapter, "cpu", ROOT / "book")
    if record is None or table is None:
        return []
    gaps = seed_tables.differences(table, record)
    if not gaps:
        return [f"seed {record.get('seed')} is not a column of the seed table: its values are not compared"]
    drifted = seed_tables.drift(table, record)
    largest = max((g for g in gaps.values() if not math.isnan(g)), default=0.0)
    seed = record["seed"]
    lines = [f"seed {seed} against the seed table's seed {seed}: {len(gaps) - len(drifted)} of {len(gaps)} claims "
             f"equal up to the table's rounding (largest difference {largest:.3g})"]
    why = "warning, not a failure (another processor, thread count or engine call than the table's)"
    return lines + [f"{why}: {line}" for line in drifted]


def timings(folder: Path) -> None:
    rows = records.timing_table(folder)
    if not rows:
        print(f"no records under {folder}")
        return
    fmt = lambda v: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}"  # noqa: E731
    print(f"| chapter | seed | whole notebook s | setup to end s | default run s | sweep s | all timed runs s | "
          f"budget ({records.NOTEBOOK_BUDGET_S} s, default run {records.DEFAULT_RUN_BUDGET_S} s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['chapter']} | {r['seed']} | {fmt(r['notebook s'])} | {fmt(r['setup to end s'])} | "
              f"{fmt(r['default run s'])} | {fmt(r['sweep s'])} | {fmt(r['all timed runs s'])} | "
              f"{r['over budget'] or 'within'} |")
    total = sum(r["notebook s"] for r in rows if not math.isnan(r["notebook s"]))
    count = sum(1 for r in rows if not math.isnan(r["notebook s"]))
    if count:
        mean = total / count
        print(f"{count} chapters: {total:.0f} s of notebooks, {mean:.0f} s each on average; at that average, "
              f"22 chapters take {22 * mean / 60:.0f} min and 30 take {30 * mean / 60:.0f} min of execution")
    figures(folder)


def figures(folder: Path) -> list[dict]:
    """Every figure a build recorded (:func:`tdlab.book.chapter.note_figure`) with its smallest text in CSS px on
    the page (:func:`tdlab.book.plots.legible_px` at :data:`tdlab.book.plots.PAGE_WIDTH_PX`); prints the count under
    :data:`tdlab.book.plots.LEGIBLE_PX` and the smallest ones."""
    from tdlab.book import plots
    rows = [{"chapter": r["chapter"], **f, "px": plots.legible_px(f["smallest_pt"], f["width_in"], f["dpi"])}
            for r in records.load_all(folder) for f in r.get("figures", [])]
    small = sorted((r for r in rows if r["px"] < plots.LEGIBLE_PX), key=lambda r: r["px"])
    print(f"figures: {len(rows)} recorded; {len(small)} with text under {plots.LEGIBLE_PX:g} CSS px at the page's "
          f"{plots.PAGE_WIDTH_PX} px (issue 35 item 1)")
    for r in small[:12]:
        print(f"  {r['px']:.1f} px  {r['chapter']}: “{r['title'] or 'untitled'}” ({r['width_in']:g} in wide, "
              f"smallest text {r['smallest_pt']:g} pt: “{r['smallest_text']}”)")
    return rows


def projection(steps_file: Path, folder: Path, budget_min: float = 45.0) -> bool:
    """``make test``'s time projected to 22 and 30 chapters: this run's fixed part (every step's wall
    time less the chapters' own execution) plus N chapters at this run's average whole-notebook time."""
    steps = {}
    for line in steps_file.read_text().splitlines():
        name, seconds = line.split("\t")
        steps[name] = float(seconds)
    rows = [r for r in records.timing_table(folder) if not math.isnan(r["notebook s"])]
    if not rows or not steps:
        print(f"no projection: no step times in {steps_file} or no chapter records under {folder}")
        return True
    chapters = sum(r["notebook s"] for r in rows)
    total = sum(steps.values())
    fixed, mean = total - chapters, chapters / len(rows)
    print("make test: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items())
          + f"; {total / 60:.1f} min in all, of which {len(rows)} chapters {chapters / 60:.1f} min "
          f"({mean:.0f} s each on average) and the rest {fixed / 60:.1f} min")
    within = True
    for n in (22, 30):
        projected = (fixed + n * mean) / 60
        within &= projected <= budget_min or n != 30
        print(f"projected at {n} chapters: {projected:.0f} min ({budget_min:.0f} min budget)")
    if not within:
        print(f"over budget: at 30 chapters make test would take more than {budget_min:.0f} min at this average")
    return within


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seeds")
    s.add_argument("--chapter", required=True, help="path under book/ without .ipynb, or 'all'")
    s.add_argument("--seeds", type=int, nargs="+", default=list(seed_tables.SEEDS))
    s.add_argument("--records", type=Path, default=ROOT / "_build" / "records" / "seeds")
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--cell-timeout", type=int, default=900)
    s.add_argument("--reuse-records", action="store_true",
                   help="execute nothing: make the table again from the records of the last run")
    c = sub.add_parser("check", help="execute one chapter as the build does and verify its claims")
    c.add_argument("--chapter", required=True)
    c.add_argument("--records", type=Path, default=ROOT / "_build" / "records" / "check")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--cell-timeout", type=int, default=300)
    t = sub.add_parser("timings")
    t.add_argument("folder", type=Path)
    p = sub.add_parser("projection")
    p.add_argument("steps", type=Path, help="tab-separated step name and seconds, one per line")
    p.add_argument("folder", type=Path)
    args = parser.parse_args()
    if args.command == "seeds":
        chapters = ledger.toc_chapters(ROOT / "_toc.yml") if args.chapter == "all" else [args.chapter]
        bad = [c for c in chapters if seeds(c, args.seeds, args.records, args.workers, args.threads,
                                            args.cell_timeout, args.reuse_records)]
        if bad:
            print("rules broken or runs failed in: " + ", ".join(bad))
        sys.exit(1 if bad else 0)
    if args.command == "check":
        sys.exit(check(args.chapter, args.records, args.threads, args.cell_timeout))
    if args.command == "projection":
        projection(args.steps, args.folder)      # reports, does not fail the build: the budget is a target
        return
    timings(args.folder)


if __name__ == "__main__":
    main()
