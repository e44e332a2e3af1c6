"""Absolute paths of the repository, so notebooks and scripts work from any working directory.

The idea is showyourwork's `paths.py`: nothing in lionlib builds a path from the current
directory. papermill runs notebooks with `cwd=notebooks/`, pytest runs from the root, a reader may
start Jupyter anywhere; all of them resolve the same folders from here.

The repository is the checkout lionlib runs from (`lionlib.experiments.home.checkout`). An
installed lionlib (`pip install .`) has no checkout: then the current directory plays the
repository (a clone's root, if the user stands in one), so nothing is written into `site-packages/`,
and `require_notebooks` says in one line that the notebooks are not there.

Environment variables:
- `LIONLIB_DATA_DIR`: where data sets are read from and cached; read at each use by
  `lionlib.experiments.common.data_dir()` (the experiments' room owns the data).
- `LIONLIB_HOME`: the folder of downloads, caches and run folders outside a clone (see
  `lionlib.experiments.home`).
- `LIONLIB_OUT_DIR`: where notebooks write figures and claims instead of `build/paper_figures/<scale>/`
  (see `lionlib.companion.report.default_out_dir`); the driver points it at a staging folder, test
  runs at `build/nbval`. Only the driver's cpu run writes the committed `paper_figures/`.
"""

from pathlib import Path

from lionlib.experiments.home import checkout

__all__ = ["REPO", "NOTEBOOKS", "PAPER_FIGURES", "BUILD", "IN_CHECKOUT", "require_notebooks", "unwritable"]

IN_CHECKOUT = checkout() is not None  # False for a pip-installed lionlib
REPO = checkout() or Path.cwd()
NOTEBOOKS = REPO / "notebooks"  # jupytext .py sources and the committed .ipynb with outputs
PAPER_FIGURES = REPO / "paper_figures"  # generated figures, claims/*.json and manifest.json
BUILD = REPO / "build"  # scratch output (executed notebooks of `lionlib.companion.reproduce`); git-ignored


def require_notebooks(notebooks_dir: Path = NOTEBOOKS) -> str | None:
    """None when `notebooks_dir` holds notebooks, else the one-line reason and fix."""
    if any(Path(notebooks_dir).glob("*.py")):
        return None
    where = "this lionlib is installed, not a clone, and " if not IN_CHECKOUT else ""
    return (f"no notebooks in {notebooks_dir}: {where}the companion's notebooks come with the repository; "
            f"clone it (git clone <the lionlib repository>) and run this from the clone's root")


def unwritable(folder: Path) -> str | None:
    """None if `folder` exists as a writable folder or can be created, else why not (one line).

    Tried, not guessed from permission bits (root passes every `os.access` test, /proc refuses all):
    the folder is created if missing, a file written and removed, and the folders this call created
    are removed again, so a run that is refused later leaves nothing behind.
    """
    import os
    import tempfile

    folder = Path(folder).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder" + ("" if existing == folder else f", so {folder} cannot be made")
    created = [d for d in (folder, *folder.parents) if d != existing and existing in d.parents]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return f"cannot write in {folder} ({e.strerror or e})"
    finally:
        for d in sorted(created, key=lambda d: len(d.parts), reverse=True):
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return None
