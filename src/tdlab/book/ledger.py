"""The claims ledger: every claim a build checked, grouped by chapter, with its kind; the status line
under each chapter's title; the book's totals.

The build's records (:mod:`tdlab.book.records`) give each claim's value on the build's seed; the committed
seed tables (:mod:`tdlab.book.seed_tables`) give its kind and its range over the ten seeds. A chapter
*reproduces* a claim of its paper when an effect claim holds (against its control, beyond its null, on
all ten committed seeds and on this build); a *not reproduced* claim is a finding that the paper's
statement does not hold at this scale; *sanity* checks are shown apart and never counted.
"""
from __future__ import annotations

import html
import json
import math
import statistics
from pathlib import Path

import pandas as pd
import yaml

from tdlab.book import records, seed_tables
from tdlab.book.claims import Claim
from tdlab.book.seed_tables import BEYOND, BOOK, EFFECT, KINDS, NOT_REPRODUCED, SANITY, SHOWN

COLUMNS = ["chapter", "section", "kind", "claim", "measured", "threshold", "passed", "seeds", "paper", "seed"]


def toc_chapters(toc_path: str | Path) -> list[str]:
    """The chapters of the book's table of contents (``_toc.yml``), as paths under ``book/``
    (``<part>/<chapter>``; pages directly under ``book/``, such as the ledger itself, are not chapters)."""
    toc = yaml.safe_load(Path(toc_path).read_text())
    files = [entry["file"].removeprefix("book/") for part in toc.get("parts", []) for entry in part["chapters"]]
    return [f for f in files if "/" in f]


def chapter_title(chapter: str, root: Path | None = None) -> str:
    """A chapter's title: the first ``# `` heading of its notebook (its path when there is none)."""
    root = seed_tables.book_root() if root is None else root
    notebook = None if root is None else root / f"{chapter}.ipynb"
    if notebook is not None and notebook.exists():
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                for line in "".join(cell["source"]).splitlines():
                    if line.startswith("# "):
                        return line[2:].strip()
    return chapter.split("/")[-1]


# ----------------------------------------------------------------- a build's claims


def verify(folder: Path, chapters: list[str], root: Path | None = None) -> list[str]:
    """What makes a build's records unpublishable: a chapter without a complete record, a record made
    with checks recorded instead of asserted (``TDLAB_CHECKS`` leaked in), a failed claim, a chapter
    without a committed seed table, or claims that differ from it."""
    found_records = records.load_all(folder) if folder is not None and Path(folder).exists() else []
    found = []
    for chapter in chapters:
        mine = [r for r in found_records if r.get("chapter") == chapter and r.get("scale") == "cpu"]
        if not any(r.get("complete") for r in mine):
            found.append(f"{chapter}: no complete claims record (the chapter was not executed to its end)")
            continue
        record = next(r for r in mine if r.get("complete"))
        if record.get("checks") != "assert":
            found.append(f"{chapter}: its record was made with TDLAB_CHECKS={record.get('checks')!r}: "
                         "failing claims were recorded, not raised")
        failed = [c["words"] for c in record["claims"] if c.get("passed") is False]
        found += [f"{chapter}: claim failed: “{w}”" for w in failed]
        table = seed_tables.load(chapter, "cpu", root)
        if table is None:
            found.append(f"{chapter}: no committed seed table")
            continue
        found += [f"{chapter}: {p}" for p in seed_tables.compare(table, record["claims"])]
    return found


def collect(folder: Path | None, chapters: list[str], strict: bool = False, root: Path | None = None) -> pd.DataFrame:
    """One row per claim the build recorded under ``folder`` for each of ``chapters`` (its CPU-scale record).

    With ``strict``, anything :func:`verify` finds raises: the ledger of a build is never published with
    a failed claim, a chapter missing, or claims its seed table does not list.
    """
    if strict:
        found = verify(folder, chapters, root)
        if found:
            raise RuntimeError("the build's claims cannot be published:\n  " + "\n  ".join(found))
    found_records = records.load_all(folder) if folder is not None and Path(folder).exists() else []
    rows = []
    for chapter in chapters:
        table = seed_tables.load(chapter, "cpu", root)
        for record in (r for r in found_records if r.get("chapter") == chapter and r.get("scale") == "cpu"):
            for entry in record["claims"]:
                claim = Claim(**{k: entry[k] for k in ("words", "value", "threshold", "direction", "kind", "unit",
                                                       "control", "control_value", "paper", "threshold_rule",
                                                       "section", "scope") if k in entry})
                seeded = table.find(claim.words) if table is not None else None
                if claim.kind == SHOWN:
                    continue                     # not a claim: the chapter and its seed report show it
                rows.append({"chapter": chapter, "section": claim.section,
                             "kind": seed_tables.kind_label(claim.kind, claim.scope),
                             "claim": claim.words,
                             "measured": claim.show(claim.value),
                             "threshold": f"{'≥' if claim.direction == '>=' else '≤'} {claim.show(claim.threshold)}",
                             "passed": claim.passed, "seeds": seed_range(seeded, claim) if seeded else "",
                             "paper": claim.paper or "", "seed": record["seed"]})
    return pd.DataFrame(rows, columns=COLUMNS)


def seed_range(entry: seed_tables.Entry, claim: Claim) -> str:
    """The ten seeds in one phrase: the weakest value and, for an effect claim, the strongest null."""
    text = f"weakest {claim.show(entry.weakest)}"
    if entry.kind == EFFECT and entry.nulls:
        text += f" · strongest null {claim.show(entry.strongest_null)}"
    return text


# ----------------------------------------------------------------- counts: a chapter, the book


def _span(entry: seed_tables.Entry, values: list[float]) -> str:
    """The lowest and highest of ``values`` in the entry's unit: "-4.0 points … +5.0 points"."""
    claim = Claim(entry.words, math.nan, math.nan, "", entry.kind, entry.unit)
    return f"{claim.show(min(values))} … {claim.show(max(values))}"


def counts(table: seed_tables.Table | None) -> dict[str, int]:
    return {kind: 0 for kind in (*KINDS, BEYOND)} if table is None else table.counts()


def status_markdown(chapter: str, table: seed_tables.Table | None) -> str:
    """The line under a chapter's title: the paper's claims reproduced k of n, the ones not reproduced
    (listed, with the paper's statement), the book's own tests beyond the paper, and the sanity checks
    apart."""
    if table is None:
        return ("*This chapter's claims are measured and shown but not checked here: it has no committed seed "
                "table at this scale.*")
    c = table.counts()
    paper_claims = c[EFFECT] + c[NOT_REPRODUCED]
    text = f"**Checked on every build** (thresholds from ten committed seeds, {table.seeds[0]}–{table.seeds[-1]}): "
    missing = [e for e in table.entries if e.kind == NOT_REPRODUCED and e.scope != BOOK]
    beyond = [e for e in table.entries if e.kind == EFFECT and e.scope == BOOK]
    carried = [e for e in table.entries if e.kind == NOT_REPRODUCED and e.scope == BOOK]
    if paper_claims == 0:
        text += "**none of the paper's claims is decided at this scale** (the chapter says what it shows instead)."
    elif missing:
        text += (f"**{c[EFFECT]} of {paper_claims}** of the paper's claims reproduced here; "
                 f"**{len(missing)} not reproduced**:\n" + "\n".join(
                     f"- *{e.words}* (the paper: {e.paper})" for e in missing))
    else:
        text += f"**{c[EFFECT]} of {paper_claims}** of the paper's claims reproduced here; none found not to reproduce."
    if beyond or carried:
        text += "\n\nBeyond the paper — this book's own tests, on a setting the book chose:"
        text += "".join(f"\n- *{e.words}* (holds)" for e in beyond)
        text += "".join(f"\n- *{e.words}* (the paper's claim carried over, not found: {e.paper})" for e in carried)
    shown = [e for e in table.entries if e.kind == SHOWN]
    if shown:
        text += "\n\nShown with their ten-seed range and their null's, not checked (no threshold is set on them):"
        for e in shown:
            text += f"\n- *{e.words}*: {_span(e, e.values)}"
            if e.nulls:
                # the null is the same statistic with the method replaced by its control (claims.shown)
                where = f", {e.control} in the method's place" if e.control else ""
                text += f" (null{where}: {_span(e, e.nulls)})"
                if min(e.values) > max(e.nulls) or max(e.values) < min(e.nulls):
                    text += " — every seed lies beyond every null draw, though no check is set"
    if c[SANITY]:
        one = c[SANITY] == 1
        text += f"\n\n{c[SANITY]} sanity check{'' if one else 's'} of the setup {'is' if one else 'are'} shown apart."
    return text


def totals(chapters: list[str], root: Path | None = None) -> dict[str, int]:
    """The book's totals over the committed tables of ``chapters``."""
    out = {kind: 0 for kind in (*KINDS, BEYOND)} | {"chapters": 0, "without a table": 0}
    for chapter in chapters:
        table = seed_tables.load(chapter, "cpu", root)
        if table is None:
            out["without a table"] += 1
            continue
        out["chapters"] += 1
        for kind, n in table.counts().items():
            out[kind] += n
    return out


def totals_markdown(chapters: list[str], root: Path | None = None) -> str:
    t = totals(chapters, root)
    text = (f"**What the book reproduces**, counted from the chapters' committed ten-seed tables and re-checked on "
            f"every build: **{t[EFFECT]} of {t[EFFECT] + t[NOT_REPRODUCED]}** of the papers' claims reproduced "
            f"in {t['chapters']} chapters, **{t[NOT_REPRODUCED]} not reproduced** at this scale (each said so in "
            f"its chapter), {t[BEYOND]} of the book's own tests beyond the papers, and {t[SANITY]} sanity checks "
            "of the setups apart. The "
            "[claims ledger](ledger.ipynb) lists every one.")
    if t["without a table"]:
        text += f" {t['without a table']} chapters have no committed table yet."
    return text


def times_markdown(folder: Path | None, chapters: list[str]) -> str:
    """How long the chapters took in this build, from its records (the runner's wall time for each whole
    notebook, :func:`tdlab.book.records.note_executed`): the median, the fastest and the slowest, with the torch
    threads they ran with. Outside a build (no records), where those times come from."""
    rows = [] if folder is None or not Path(folder).exists() else records.timing_table(Path(folder))
    found = {r["chapter"]: r for r in rows if r["chapter"] in chapters and math.isfinite(r["notebook s"])}
    if not found:
        return ("Each chapter's time, whole notebook on this book's two-core CPU, is measured when the book is "
                "built (`make book`) and printed here then.")
    seconds = sorted(r["notebook s"] for r in found.values())
    median = statistics.median(seconds)
    slowest = max(found.values(), key=lambda r: r["notebook s"])
    threads = sorted({r["threads"] for r in found.values() if r.get("threads")})
    each = (f", with {'/'.join(map(str, threads))} torch thread{'' if threads == [1] else 's'} each"
            if threads else "")
    over = [c for c, r in found.items() if r["notebook s"] > records.NOTEBOOK_BUDGET_S]
    text = (f"**How long a chapter takes**, measured in this build ({len(found)} of {len(chapters)} chapters, "
            f"one at a time{each}): a median of {median:.0f} s for the whole notebook, "
            f"from {seconds[0]:.0f} s to {seconds[-1]:.0f} s; the longest: *{chapter_title(slowest['chapter'])}*.")
    if over:
        text += (f" Over the book's budget of {records.NOTEBOOK_BUDGET_S} s per chapter: "
                 + "; ".join(f"*{chapter_title(c)}*" for c in over) + ".")
    return text


def summary(table: pd.DataFrame, chapters: list[str], root: Path | None = None) -> str:
    """The ledger's headline: per kind, over the build's chapters."""
    if table.empty:
        return ("*No claims were recorded: the chapters were not executed with `TDLAB_RECORDS` set "
                "(`make book` sets it).*")
    t = totals(chapters, root)
    seeds = ", ".join(map(str, sorted(table.seed.unique())))
    failed = int((table.passed == False).sum())  # noqa: E712
    return (f"**The papers' claims: {t[EFFECT]} of {t[EFFECT] + t[NOT_REPRODUCED]} reproduced, "
            f"{t[NOT_REPRODUCED]} not reproduced**, in {table.chapter.nunique()} chapters; "
            f"{t[BEYOND]} of the book's own tests beyond the papers; {t[SANITY]} sanity checks apart. "
            f"This build checked every one on seed {seeds}"
            + (f", and **{failed} failed**." if failed else ", and all held.")
            + " The last column is each claim's range over the ten committed seeds.")


def page_html(table: pd.DataFrame, root: Path | None = None) -> str:
    """The ledger as one HTML table: a header row per chapter (its title, linked, and its counts), then
    one line per claim — kind, words, this build's value, threshold, the ten seeds' range."""
    if table.empty:
        return "<p><i>No claims were recorded in this build.</i></p>"
    order = {kind: i for i, kind in enumerate((EFFECT, NOT_REPRODUCED, seed_tables.kind_label(EFFECT, BOOK),
                                               seed_tables.kind_label(NOT_REPRODUCED, BOOK), SANITY))}
    lines = ['<table class="tdlab-ledger"><thead><tr><th>kind</th><th>claim</th><th>this build</th>'
             "<th>threshold</th><th>ten seeds</th></tr></thead><tbody>"]
    for chapter, rows in table.groupby("chapter", sort=False):
        c = counts(seed_tables.load(chapter, "cpu", root))
        section = rows.section.iloc[0]
        lines.append(f'<tr class="tdlab-chapter"><td colspan="5"><a href="{chapter}.html#{section}">'
                     f"{html.escape(chapter_title(chapter, root))}</a> — reproduced {c[EFFECT]} of "
                     f"{c[EFFECT] + c[NOT_REPRODUCED]}, not reproduced {c[NOT_REPRODUCED]}, beyond the paper {c[BEYOND]}, "
                     f"sanity {c[SANITY]}"
                     "</td></tr>")
        for _, row in rows.sort_values("kind", key=lambda k: k.map(order), kind="stable").iterrows():
            words = html.escape(row.claim)
            if row.paper:
                words += f'<br><span class="tdlab-paper">the paper: {html.escape(row.paper)}</span>'
            mark = "" if row.passed is None or (isinstance(row.passed, float) and math.isnan(row.passed)) \
                else ("✓ " if row.passed else "✗ ")
            lines.append(f'<tr class="tdlab-{row.kind.split(" (")[0].replace(" ", "-")}"><td>{row.kind}</td><td>{words}</td>'
                         f"<td>{mark}{html.escape(row.measured)}</td><td>{html.escape(row.threshold)}</td>"
                         f"<td>{html.escape(row.seeds)}</td></tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


# ----------------------------------------------------------------- the seed runner's report


def seed_report(table: seed_tables.Table) -> str:
    """A markdown table of one chapter's seed table: claim × seed, then the threshold, the weakest
    seed and the strongest null, and what breaks the rules."""
    lines = ["| kind | claim | threshold | " + " | ".join(f"s{s}" for s in table.seeds) + " | strongest null |",
             "|---" * (len(table.seeds) + 4) + "|"]
    for e in table.entries:
        claim = Claim(e.words, math.nan, e.threshold, e.direction, e.kind, e.unit)
        if e.kind == SHOWN:
            nulls = _span(e, e.nulls) if e.nulls else ""
            lines.append(f"| shown | {e.words} | — | " + " | ".join(claim.show(v) for v in e.values) + f" | {nulls} |")
            continue
        cells = [claim.show(v) + ("" if e.passes(v) else " ✗") for v in e.values]
        null = claim.show(e.strongest_null) if e.nulls else ""
        rule = " (seeds)" if e.rule == seed_tables.DERIVED else ""
        lines.append(f"| {seed_tables.kind_label(e.kind, e.scope)} | {e.words} | {'≥' if e.direction == '>=' else '≤'} {claim.show(e.threshold)}{rule} | "
                     + " | ".join(cells) + f" | {null} |")
    issues = seed_tables.problems(table)
    return "\n".join(lines) + ("\n\n**Problems:**\n" + "\n".join(f"- {p}" for p in issues) if issues else
                               "\n\nEvery rule holds.")
