"""tdlab.book: the book's machinery: what a chapter uses to state, check and show what it measured (claims, seed tables, records, the ledger, figures, panels, explorers).

- :mod:`tdlab.book.plots` — One visual style and the standard figures of training dynamics.
- :mod:`tdlab.book.figure_checks` — What a build checks in every figure: fractions on a percent axis, missing glyphs, text too small on the page.
- :mod:`tdlab.book.paper_cards` — Each chapter's recipe card: the paper's setup, value by value with its source, against the paper recipe.
- :mod:`tdlab.book.interact` — Widget panels around a pure ``run(**knobs) -> History`` function.
- :mod:`tdlab.book.claims` — One way to state a claim of the book, check it on the measured run, and record it.
- :mod:`tdlab.book.explorer` — A figure with sliders that works without a kernel: the sweep the build trained, explorable in the static HTML …
- :mod:`tdlab.book.records` — What a chapter's execution leaves behind for the book: its claims and its timings.
- :mod:`tdlab.book.chapter` — The plumbing every chapter shares, so that a notebook reads as a story.
- :mod:`tdlab.book.ledger` — The claims ledger: every claim a build checked, grouped by chapter, with its kind; the status line under each …
- :mod:`tdlab.book.seed_tables` — Each chapter's committed seed table: its claims, measured on seeds 0–9, and where thresholds come from.
- :mod:`tdlab.book.wording` — The book's one vocabulary for claims: what a word in a claim promises about its threshold.
- :mod:`tdlab.book.units` — How the book shows one number, by what it is (issue 35 item 4): a percentage only for accuracies, rates and …
- :mod:`tdlab.book.nbval_executed` — A pytest plugin that keeps what nbval executed: the notebook with every cell's outputs, and a report.
"""
