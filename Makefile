# tdlab: two commands do everything on a fresh machine with Python ≥ 3.10 and git.
#   make book   install what is missing, execute every chapter, write the HTML book to _build/html
#   make test   unit tests + every chapter under nbval + a book build with warnings as errors
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch goes in first, so the project's range (satisfied by 2.13.0) never pulls another build.
# On a machine with a GPU, set TORCH_SPEC to the build you want (e.g. TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install book test unit notebooks book-check benchmark clean strip
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

book: $(STAMP)
	TDLAB_STATIC=1 $(BIN)/jupyter-book build . -W --keep-going
	@echo "The book is at _build/html/index.html"

test: unit notebooks book-check

unit: $(STAMP)
	$(BIN)/python -m pytest tests -q

notebooks: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider book/ -q

# A book build with execution off and warnings as errors: catches a broken toc, links, references.
book-check: $(STAMP)
	$(BIN)/python tools/noexec_config.py _config.yml _build/_config_noexec.yml
	$(BIN)/jupyter-book build . -W --keep-going --config _build/_config_noexec.yml --path-output _build/check

benchmark: $(STAMP)
	$(BIN)/python benchmarks/run.py

strip:
	$(BIN)/python tools/strip_outputs.py book

clean:
	rm -rf _build
