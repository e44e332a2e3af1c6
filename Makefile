# The two commands of the README. Each creates or refreshes .venv on first use.
#   make reproduce   run every notebook at the default (cpu) scale: figures, tables, manifest
#   make test        the whole test suite: unit tests, Triton kernels (interpreted), notebook checks
# Options: SCALE=smoke|cpu|paper (only cpu writes the committed paper_figures/; the others write
# build/paper_figures/<scale>/), ONLY=01_box_constraint,06_muon (a subset of the notebooks).
#   make verify ONLY=02_continuous_lyapunov   re-run into build/ and compare with the committed claims

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Offline copy of the data sets beside the checkout (CI, development); else data/ (downloads).
export LIONLIB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
SCALE ?= cpu
ONLY ?=
ONLY_FLAG := $(if $(ONLY),--only $(ONLY))

.PHONY: test reproduce verify notebooks unit nbval sync clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,notebooks]"
	@# CUDA builds of torch ship their own Triton; elsewhere add the pinned one (for TRITON_INTERPRET=1).
	$(BIN)/python -c "import triton" 2>/dev/null || $(BIN)/python -m pip install -q -e ".[triton]"
	touch $(STAMP)

test: sync unit nbval

sync: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --check-sync

unit: $(STAMP)
	$(BIN)/python -m pytest tests -n 2 --dist loadgroup -q

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
