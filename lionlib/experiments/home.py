"""Where lionlib writes when it is not told: never inside its own installation.

A pip-installed lionlib lives in `site-packages/`, which belongs to the installer; deriving run
folders or caches from the package's location would write there. Every default folder comes from
here instead:

- `checkout()`: the clone this lionlib runs from (the package's parent holds `pyproject.toml`:
  a git clone, an editable install or an unpacked sdist), else None (an installed copy).
- `home()`: `$LIONLIB_HOME` if set; else the checkout; else the platform's cache folder
  (`$XDG_CACHE_HOME/lionlib` or `~/.cache/lionlib` on Linux, `~/Library/Caches/lionlib` on macOS,
  `%LOCALAPPDATA%\\lionlib` on Windows). Downloads and decoded data caches go to `home()/data`.
- `runs_dir()`: the parent of run folders (`cifar10/`, `gpt/`): `$LIONLIB_HOME/runs`, else the
  checkout's `runs/`, else `./runs` under the current directory (a user's results belong where
  they work, not in a hidden cache).

`$LIONLIB_DATA_DIR` (`lionlib.experiments.common.data_dir`) still chooses where data are read from.
Each function reads the environment when called, so a test or notebook can change it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["PACKAGE", "HomeError", "checkout", "platform_cache", "home", "runs_dir", "data_home"]

PACKAGE = Path(__file__).resolve().parents[1]  # the lionlib package folder


class HomeError(ValueError):
    """A folder variable that is set but unusable; the message is one line naming the fix."""

    def _render_traceback_(self) -> list[str]:  # IPython shows it as its line (see common.ExperimentError)
        return [f"{type(self).__name__}: {self}"]


def checkout(package: Path = PACKAGE) -> Path | None:
    """The repository root when lionlib runs from a source tree, None when it is installed."""
    root = package.parent
    return root if (root / "pyproject.toml").is_file() else None


def platform_cache() -> Path:
    """The per-user cache folder of this platform, with `lionlib` appended."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "lionlib"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lionlib"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lionlib"


def _env_home() -> Path | None:
    value = os.environ.get("LIONLIB_HOME")
    if value is None:
        return None
    if not value.strip():
        raise HomeError("LIONLIB_HOME is set but empty: set it to a folder (export LIONLIB_HOME=~/lionlib) "
                        "or unset it (unset LIONLIB_HOME)")
    return Path(value).expanduser().resolve()


def home() -> Path:
    """`$LIONLIB_HOME`, else the checkout, else `platform_cache()` (see the module docstring)."""
    return _env_home() or checkout() or platform_cache()


def runs_dir() -> Path:
    """Parent of the experiments' default run folders."""
    env = _env_home()
    if env is not None:
        return env / "runs"
    root = checkout()
    return root / "runs" if root is not None else Path.cwd() / "runs"


def data_home() -> Path:
    """Default data folder: downloads and decoded caches (`home()/data`)."""
    return home() / "data"

