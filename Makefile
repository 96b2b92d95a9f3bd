# tdlab: two commands do everything on a fresh machine with Python ≥ 3.10 and git.
#   make book   install what is missing, execute every chapter, write the HTML book to _build/html
#   make test   unit tests + make book (every chapter executed, pages checked) + the browser test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, so the project's range (satisfied by 2.13.0) never pulls another build.
# On a machine with a GPU, set TORCH_SPEC to the build you want (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
# make seeds CHAPTER=01_noisy_labels/01_memorization_elr   (CHAPTER=all: every chapter; SEEDS="0 1" to explore)
CHAPTER ?= 01_noisy_labels/01_memorization_elr
SEEDS ?= 0 1 2 3 4 5 6 7 8 9

.PHONY: install book test unit widgets7 lab browser benchmark clean strip seeds paper-smoke
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

# Chapters execute WORKERS at a time with THREADS torch threads each (measured: see benchmarks/README.md);
# a cell running past CELL_TIMEOUT seconds fails its chapter.
WORKERS ?= 1
THREADS ?= 2
CELL_TIMEOUT ?= 300

book: $(STAMP)
	$(BIN)/python tools/build_book.py --workers $(WORKERS) --threads $(THREADS) --cell-timeout $(CELL_TIMEOUT)

# Each step is timed; the last line projects this run to 22 and 30 chapters (tools/run_chapters.py projection).
TEST_STEPS := unit widgets7 paper-smoke book browser
test: $(STAMP)
	@mkdir -p _build && : > _build/test-steps.tsv
	@for step in $(TEST_STEPS); do start=$$(date +%s); $(MAKE) --no-print-directory $$step || exit 1; \
		printf '%s\t%s\n' $$step $$(( $$(date +%s) - start )) >> _build/test-steps.tsv; done
	@$(BIN)/python tools/run_chapters.py projection _build/test-steps.tsv _build/records/book

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

# Colab ships ipywidgets 7.7: the panel's tests again with ipywidgets 7.7.1 first on the path
# (the venv itself has 8.x, which the unit tests use).
widgets7: $(STAMP)
	$(BIN)/python -m pip install --quiet --target _build/widgets7 --no-deps "ipywidgets==7.7.1" \
		"widgetsnbextension==3.6.*" "jupyterlab_widgets==1.1.*" ipython_genutils
	TDLAB_EXPECT_IPYWIDGETS=7.7 PYTHONPATH=_build/widgets7 $(BIN)/python -m pytest tests/test_plots_interact.py -q \
		-p no:cacheprovider -W ignore::DeprecationWarning

# Every chapter's paper recipe (TDLAB_SCALE=paper) for a few steps on this CPU, on generated archives of the
# real shapes (tools/paper_smoke.py; tdlab.book.paper_smoke says what it keeps and what it cuts).
paper-smoke: $(STAMP)
	$(BIN)/python tools/paper_smoke.py --threads $(THREADS)

# Open the chapters in JupyterLab (installed with the book).
lab: $(STAMP)
	$(BIN)/jupyter lab book/

# The built book in headless Chromium: a chapter's kernel-free slider redraws its figure;
# JupyterLab runs the LDR-KL chapter and its panel retrains on Run (tests_browser/).
browser: $(STAMP)
	$(BIN)/python -m pytest tests_browser -q

# Every claim of one chapter on seeds 0-9 with its null: writes the committed seed table beside the
# chapter (book/<part>/<chapter>.seeds.yaml) and prints claim × seed (see tools/run_chapters.py).
# Two seeds at a time with one torch thread each: about a third faster than one at a time with two here.
SEED_WORKERS ?= 2
SEED_THREADS ?= 1
seeds: $(STAMP)
	$(BIN)/python tools/run_chapters.py seeds --chapter $(CHAPTER) --seeds $(SEEDS) --workers $(SEED_WORKERS) --threads $(SEED_THREADS)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py

strip:
	$(BIN)/python tools/strip_outputs.py book

clean:
	rm -rf _build
