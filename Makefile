# maplex: the two commands of the README, and the pieces CI is made of.
#   make demo   install (into .venv) and run the main job
#   make test   install with dev extras and run every test
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch first: a loose `torch` requirement alone can pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }  # this machine's pip config warns per package
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

.PHONY: install dev demo test test-slow test-notebooks test-nbdev check-sync docs check-docs wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py settings.ini
	$(BIN)/pip install -q "$(TORCH)" $(QUIET)
	$(BIN)/pip install -q -e . $(QUIET)
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]' $(QUIET)
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

demo: install
	$(BIN)/maplex demo

## Every test: the notebooks as nbdev runs them, the notebooks under strict nbval (stored outputs
## must match a fresh run), and the pytest suite in tests/ (error paths, downloader, CLI).
test: dev
	$(BIN)/nbdev_test --n_workers 2
	$(BIN)/python -m pytest -p no:cacheprovider -n 2 --dist loadfile --durations=12 $(NBVAL) nbs/ tests/

## The slow tests too: the committed HELP rows, each meta-trained from an empty cache (several minutes per row).
test-slow: dev
	MAPLEX_SLOW=1 $(BIN)/python -m pytest -p no:cacheprovider -m slow tests/

## The library is in sync with the notebooks and the notebooks are clean.
check-sync: dev
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
	$(BIN)/python tools/check_import_cells.py
	@git status --porcelain -- nbs maplex pyproject.toml | grep . && { \
	  echo "nbdev_export/nbdev_clean changed the files above: run them and commit the result."; exit 1; } || true

## The docs site: nbdev's own pipeline. tools/ first on PATH stands in for Quarto when it is absent.
docs: dev
	PATH="$(if $(shell command -v quarto 2>/dev/null),,$(CURDIR)/tools:)$(CURDIR)/$(BIN):$$PATH" $(BIN)/nbdev_docs
	PATH="$(if $(shell command -v quarto 2>/dev/null),,$(CURDIR)/tools:)$(CURDIR)/$(BIN):$$PATH" $(BIN)/nbdev_readme

## The site as a visitor reads it (raw markup, math, figures, links) and lesson 70 in a real JupyterLab;
## screenshots of the landing page and lessons 70 and 80 land in artifacts/.
check-docs: docs
	$(BIN)/python tools/check_site.py _docs index.html regressor.html evaluation.html --screenshots artifacts
	$(BIN)/python tools/check_lab.py nbs/70_regressor.ipynb --screenshot artifacts/jupyterlab_70.png

## Build the wheel and import it in a fresh venv, from outside the source tree.
wheel: dev
	rm -rf dist && $(BIN)/python -m build --wheel --outdir dist . >/tmp/maplex-build.log 2>&1 || { cat /tmp/maplex-build.log; exit 1; }
	rm -rf /tmp/maplex-wheel-venv && $(PYTHON) -m venv /tmp/maplex-wheel-venv
	/tmp/maplex-wheel-venv/bin/pip install -q "$(TORCH)" dist/*.whl $(QUIET)
	cd /tmp && /tmp/maplex-wheel-venv/bin/python -c "import maplex, maplex.nb201 as m; \
	  assert '/tmp/maplex-wheel-venv/' in maplex.__file__, maplex.__file__; \
	  print('wheel ok:', maplex.__version__, maplex.__file__, m.N_ARCHS)"
	cd /tmp && /tmp/maplex-wheel-venv/bin/maplex --help >/dev/null
	@echo "the demo from the wheel, with no public data and an empty cache (what a fresh, offline machine has):"
	cd /tmp && env -u MAPLEX_DATA MAPLEX_CACHE=$$(mktemp -d) /tmp/maplex-wheel-venv/bin/maplex demo

clean:
	rm -rf _docs _proc dist build artifacts *.egg-info
