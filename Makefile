# The commands of the README; `make` alone (or `make help`) lists them. Each creates or refreshes
# .venv on first use, with the exact versions of constraints.txt (pyproject.toml pins nothing).
# Options: SCALE=smoke|cpu|paper (only cpu writes the committed paper_figures/; the others write
# build/paper_figures/<scale>/), ONLY=01_box_constraint,06_muon (a subset of the notebooks).
#   make verify ONLY=02_continuous_lyapunov   re-run into build/ and compare with the committed claims

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# Offline copy of the data sets beside the checkout (CI, development); else data/ (downloads).
export LIONLIB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
SCALE ?= cpu
ONLY ?=
ONLY_FLAG := $(if $(ONLY),--only $(ONLY))
CONSTRAINTS := constraints.txt
# No -q: the first install downloads and unpacks for minutes, and pip's lines show where it is.
PIP_INSTALL := $(BIN)/python -m pip install -c $(CONSTRAINTS)

.PHONY: help test reproduce verify notebooks unit nbval sync site browser clean
.DEFAULT_GOAL := help

help:  ## this list
	@echo "make TARGET [SCALE=smoke|cpu|paper] [ONLY=notebook,...]; a target that needs .venv installs it first"
	@awk -F':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(firstword $(MAKEFILE_LIST))

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@echo "make: installing lionlib with its test and notebook extras into $(VENV) (pins: $(CONSTRAINTS));"
	@echo "make: the first time this downloads torch and the notebook stack, a few minutes"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(PIP_INSTALL) -e ".[test,notebooks]"
	@# CUDA builds of torch ship their own Triton; elsewhere add the pinned one (for TRITON_INTERPRET=1).
	$(BIN)/python -c "import triton" 2>/dev/null || $(PIP_INSTALL) -e ".[triton]"
	touch $(STAMP)

$(DOCS_STAMP): pyproject.toml $(CONSTRAINTS) $(STAMP)
	@echo "make: adding the docs and browser extras (Sphinx, Playwright) to $(VENV)"
	$(PIP_INSTALL) -e ".[docs,browser]"
	touch $(DOCS_STAMP)

test: sync unit nbval browser  ## the whole suite: unit tests, Triton (interpreted), notebook checks, web book, browser

sync: $(STAMP)  ## every notebook's .py and .ipynb agree (reproduce --check-sync)
	$(BIN)/python -m lionlib.companion.reproduce --check-sync

unit: $(STAMP)  ## the unit tests (tests/, 2 workers)
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup -q --ignore=tests/browser

# The web book from the committed executed notebooks (nothing re-runs); fails on any Sphinx warning,
# broken link, missing figure or asset from another host.
site: $(DOCS_STAMP)  ## the web book of the committed notebooks -> build/site/index.html
	$(BIN)/python -m lionlib.companion.site

# Every page of the book and a JupyterLab session in Debian's Chromium (tests/browser/); one line
# instead when no Chromium is installed (.ci/run installs it).
browser: site  ## every page of the book and JupyterLab in Chromium (skipped without one)
	@if $(BIN)/python -c "import sys; sys.path.insert(0, 'tests/browser'); from conftest import chromium_path; sys.exit(chromium_path() is None)"; \
	then $(BIN)/python -m pytest tests/browser -q; \
	else echo "browser tests SKIPPED: no Chromium on PATH (apt-get install chromium chromium-driver, or set LIONLIB_CHROMIUM)"; fi

nbval: $(STAMP)  ## every notebook runs at the smoke scale (into build/nbval)
	LIONLIB_SCALE=smoke LIONLIB_OUT_DIR=$(CURDIR)/build/nbval $(BIN)/python -m pytest notebooks -p no:python --nbval-lax --nbval-current-env -n 2 --dist loadscope -q

reproduce: $(STAMP)  ## run every notebook at SCALE (default cpu): figures, tables, manifest
	$(BIN)/python -m lionlib.companion.reproduce --scale $(SCALE) $(ONLY_FLAG)

# Same numbers? Re-run at the scale of the committed claims (into build/ only) and compare them:
# exactly for the float64 notebooks, within a stated tolerance for the trainings (lionlib.companion.verify).
verify: $(STAMP)  ## re-run into build/ and compare with the committed claims
	$(BIN)/python -m lionlib.companion.reproduce --verify $(ONLY_FLAG)

# Refresh the committed notebooks/*.ipynb outputs (maintainers, after changing a notebook's .py; cpu scale).
notebooks: $(STAMP)  ## maintainers: refresh the committed notebooks/*.ipynb outputs (cpu scale)
	$(BIN)/python -m lionlib.companion.reproduce --update-notebooks $(ONLY_FLAG)

clean:  ## remove build/ and the test caches
	rm -rf build .pytest_cache .hypothesis
