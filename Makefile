# The two commands of the README. Each creates or refreshes .venv on first use.
#   make reproduce   run every notebook at the default (cpu) scale: figures, tables, manifest
#   make test        the whole test suite: unit tests, Triton kernels (interpreted), notebook checks,
#                    the web book built and, where Chromium is installed, tested in the browser
#   make site        the web book of the committed notebooks -> build/site/index.html
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

.PHONY: test reproduce verify notebooks unit nbval sync site browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,notebooks]"
	@# CUDA builds of torch ship their own Triton; elsewhere add the pinned one (for TRITON_INTERPRET=1).
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[triton]"
	touch $(STAMP)

$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install -q -e ".[docs,browser]"
	touch $(DOCS_STAMP)

test: sync unit nbval browser

sync: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --check-sync

unit: $(STAMP)
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup -q --ignore=tests/browser

# The web book from the committed executed notebooks (nothing re-runs); fails on any Sphinx warning,
# broken link, missing figure or asset from another host.
site: $(DOCS_STAMP)
	$(BIN)/python -m lionlib.companion.site

# Every page of the book and a JupyterLab session in Debian's Chromium (tests/browser/); one line
# instead when no Chromium is installed (.ci/run installs it).
browser: site
	@if $(BIN)/python -c "import sys; sys.path.insert(0, 'tests/browser'); from conftest import chromium_path; sys.exit(chromium_path() is None)"; \
	then $(BIN)/python -m pytest tests/browser -q; \
	else echo "browser tests SKIPPED: no Chromium on PATH (apt-get install chromium chromium-driver, or set LIONLIB_CHROMIUM)"; fi

nbval: $(STAMP)
	LIONLIB_SCALE=smoke LIONLIB_OUT_DIR=$(CURDIR)/build/nbval $(BIN)/python -m pytest notebooks -p no:python --nbval-lax --nbval-current-env -n 2 --dist loadscope -q

reproduce: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --scale $(SCALE) $(ONLY_FLAG)

# Same numbers? Re-run at the scale of the committed claims (into build/ only) and compare them:
# exactly for the float64 notebooks, within a stated tolerance for the trainings (lionlib.companion.verify).
verify: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --verify $(ONLY_FLAG)

# Refresh the committed notebooks/*.ipynb outputs (maintainers, after changing a notebook's .py; cpu scale).
notebooks: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --update-notebooks $(ONLY_FLAG)

clean:
	rm -rf build .pytest_cache .hypothesis
