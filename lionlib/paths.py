"""Absolute paths of the repository, so notebooks and scripts work from any working directory.

The idea is showyourwork's `paths.py`: nothing in lionlib builds a path from the current
directory. papermill runs notebooks with `cwd=notebooks/`, pytest runs from the root, a reader may
start Jupyter anywhere; all of them resolve the same folders from here.

Environment variables:
- `LIONLIB_DATA_DIR`: where data sets are read from and cached (default `<repo>/data`, which is
  git-ignored). Point it at a shared or offline copy (e.g. `export LIONLIB_DATA_DIR=/data/lionlib`)
  to avoid downloads. It is read when this module is imported.
- `LIONLIB_OUT_DIR`: where notebooks write figures and claims instead of `paper_figures/` (see
  `lionlib.report.default_out_dir`); test runs set it so they never touch the committed figures.
"""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"  # jupytext .py sources and the committed .ipynb with outputs
PAPER_FIGURES = REPO / "paper_figures"  # generated figures, claims/*.json and manifest.json
BUILD = REPO / "build"  # scratch output (executed notebooks of `lionlib.reproduce`); git-ignored
DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or REPO / "data").expanduser().resolve()
