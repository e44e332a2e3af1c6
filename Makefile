# The two commands of the README. Each creates or refreshes .venv on first use.
#   make reproduce   run every notebook at the default (cpu) scale: figures, tables, manifest
#   make test        the whole test suite: unit tests, Triton kernels (interpreted), notebook checks

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Offline copy of the data sets beside the checkout (CI, development); else data/ (downloads).
export LIONLIB_DATA_DIR ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(CURDIR)/data)
SCALE ?= cpu

.PHONY: test reproduce notebooks unit nbval sync clean

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
	$(BIN)/python -m lionlib.companion.reproduce --scale $(SCALE)

# Refresh the committed notebooks/*.ipynb outputs (maintainers, after changing a notebook's .py).
notebooks: $(STAMP)
	$(BIN)/python -m lionlib.companion.reproduce --scale $(SCALE) --update-notebooks

clean:
	rm -rf build .pytest_cache .hypothesis
