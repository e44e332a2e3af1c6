"""What the experiments share, written once: where the data are and where runs, run folders and
caches are written (one function per kind of path), which device to train on, checksummed
downloads, atomic writes, and the errors a user can act on. (The optimizers: `engine.make_optimizers`.)

The experiments never import the companion (`lionlib.companion`): the notebooks drive the
experiments, not the other way round, so an experiment runs from its own command line with
nothing but this room and the optimizer library.

Vocabulary (every experiment): optimizers `lion`, `lion_lp` (Lion-K with K = the lp norm, exponent
`p`), `adamw`, `muon`, `distributed_lion`; `weight_decay` is the decoupled decay lambda; `out_dir` is
the folder a run writes (`checkpoint.pt`, `result.json`); command-line flags are `--kebab-case`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from lionlib.experiments import home

__all__ = ["REPO", "OFFLINE_DATA", "ExperimentError", "DataError", "ConfigError", "data_dir", "resolve_device",
           "file_digest", "atomic_write", "atomic_write_text", "missing_data", "fetch", "runs_dir", "run_folders_dir",
           "cache_dir", "bench_results_dir"]

REPO = Path(__file__).resolve().parents[2]
OFFLINE_DATA = REPO.parent / "shared" / "data"  # the offline copy beside the checkout (development, CI)


class ExperimentError(Exception):
    """An error the user can fix (bad data, a checkpoint that does not fit, a bad setting).

    Its message is one line that says what is wrong and how to fix it; the command lines print it
    without a traceback and exit non-zero, and IPython (notebooks, papermill) shows it as that line
    too (`_render_traceback_`, IPython's hook for exceptions that render themselves).
    """

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class DataError(ExperimentError):
    """A data set is missing, incomplete or corrupt (the message names it, where it was looked for,
    the expected layout, and the fix)."""


class ConfigError(ExperimentError, ValueError):
    """A setting out of its range (`epochs=0`, `n_head` not dividing `n_embd`): raised before any
    work, so nothing is created; a ValueError too, as callers of the functions expect."""


def data_dir() -> Path:
    """Where data sets are read from and cached: `$LIONLIB_DATA_DIR` (read at each call, so a
    notebook or test can point it elsewhere), else `home.data_home()` (the clone's git-ignored `data/`, or the
    platform cache for an installed copy; never inside the installation).

    A `LIONLIB_DATA_DIR` that does not exist is an error, not created: a misspelt path would
    otherwise silently become a download target.
    """
    env = os.environ.get("LIONLIB_DATA_DIR")
    if env is None:
        return home.data_home()
    if not env.strip():
        raise DataError(f"LIONLIB_DATA_DIR is set but empty: set it to the folder that holds the data sets, or unset "
                        f"it to use {home.data_home()}")
    path = Path(env).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"LIONLIB_DATA_DIR={env} is not a folder: fix the path, or unset it to use {home.data_home()}")
    return path


# Where the experiments write: one function per kind of path, so an installed package can point
# them elsewhere (away from its own folder) in one place.


def runs_dir(scale: str = "cpu") -> Path:
    """The run store's root (`lionlib.experiments.store`): `$LIONLIB_RUNS_DIR`, else the checkout's
    committed `paper_figures/runs/` for the scales whose records are committed (cpu, paper) and the
    git-ignored `build/runs/<scale>/` for the others (smoke, tiny)."""
    env = os.environ.get("LIONLIB_RUNS_DIR")
    if env:
        return Path(env).expanduser()
    root = home.checkout()
    if root is None:  # an installed copy: records go under the home, never into site-packages
        return home.home() / "runs" / "records" / scale
    return root / "paper_figures" / "runs" if scale in ("cpu", "paper") else root / "build" / "runs" / scale


def run_folders_dir() -> Path:
    """Where the command lines put a run's folder (checkpoint.pt, result.json) when no --out-dir is given."""
    return home.runs_dir()


def cache_dir() -> Path:
    """Where decoded data sets are cached (git-ignored in a clone; `home.data_home()`)."""
    return home.data_home()


def bench_results_dir() -> Path:
    """Where `benchmarks/bench_train.py` writes its measurements (read by `engine.measured_precision`)."""
    return (home.checkout() or home.home()) / "benchmarks" / "results"


def resolve_device(device: str = "auto") -> torch.device:
    """`"auto"` -> the best available device (cuda, then mps, then cpu); anything else is passed to torch."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# Files: hashes, atomic writes, checksummed downloads


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks (archives do not fit in memory twice)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """`write(tmp)` then rename tmp -> `path`: readers see the old file or the whole new one, never
    half a file, and a failed or interrupted write leaves no temporary behind. The folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def missing_data(name: str, looked: str, fix: str, url: str, dest: Path, digest: str, algo: str,
                 failure: str = "") -> DataError:
    """The one message for a data set that is not there: what was looked for where, the download
    that failed (if one was tried), and the fix (the folder to point LIONLIB_DATA_DIR at, or the URL
    to download by hand, with its checksum)."""
    tried = f"; downloading {url} failed ({failure})" if failure else ""
    source = "that file" if failure else url
    return DataError(f"{name} not found: looked for {looked}{tried}. Fix: {fix}, or download {source} by hand "
                     f"to {dest} ({algo} {digest})")


def fetch(url: str, dest: Path, digest: str, algo: str = "md5", *, name: str, looked: str = "", fix: str = "") -> Path:
    """`dest` checked against `digest`, downloaded from `url` first if it is missing.

    A file already at `dest` with the wrong checksum is the user's (downloads go to `dest.part` and
    are renamed only once checked): it is reported, never deleted. A failed download leaves nothing
    behind (no `.part`, no folder created for it) and raises `missing_data(name, looked, fix, ...)`.
    """
    dest = Path(dest)
    if dest.is_file():
        got = file_digest(dest, algo)
        if got != digest:
            raise DataError(f"{name}: {dest} has {algo} {got}, expected {digest} (a partial or corrupt copy): "
                            f"replace it with the file at {url}")
        return dest
    created = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:  # noqa: S310 (fixed URLs)
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = file_digest(part, algo)
        if got != digest:
            raise DataError(f"{name}: the download from {url} has {algo} {got}, expected {digest} (not kept); "
                            f"try again, or download it by hand to {dest}")
        os.replace(part, dest)
    except (OSError, urllib.error.URLError) as e:
        raise missing_data(name, looked or str(dest), fix or "set LIONLIB_DATA_DIR to a folder holding it",
                           url, dest, digest, algo, _reason(e)) from None
    finally:
        part.unlink(missing_ok=True)
        if not dest.exists():
            for d in created:  # innermost first: remove only what this call created
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
    return dest


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
    return f"{type(e).__name__}: {reason}"
