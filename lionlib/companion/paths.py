"""Absolute paths of the repository, so notebooks and scripts work from any working directory.

The idea is showyourwork's `paths.py`: nothing in lionlib builds a path from the current
directory. papermill runs notebooks with `cwd=notebooks/`, pytest runs from the root, a reader may
start Jupyter anywhere; all of them resolve the same folders from here.

Environment variables:
- `LIONLIB_DATA_DIR`: where data sets are read from and cached; read at each use by
  `lionlib.experiments.common.data_dir()` (the experiments' room owns the data).
- `LIONLIB_OUT_DIR`: where notebooks write figures and claims instead of `build/paper_figures/<scale>/`
  (see `lionlib.companion.report.default_out_dir`); the driver points it at a staging folder, test
  runs at `build/nbval`. Only the driver's cpu run writes the committed `paper_figures/`.
"""

from pathlib import Path

__all__ = ["REPO", "NOTEBOOKS", "PAPER_FIGURES", "BUILD"]

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"  # jupytext .py sources and the committed .ipynb with outputs
PAPER_FIGURES = REPO / "paper_figures"  # generated figures, claims/*.json and manifest.json
BUILD = REPO / "build"  # scratch output (executed notebooks of `lionlib.companion.reproduce`); git-ignored
