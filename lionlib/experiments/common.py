"""What the CIFAR-10 and GPT experiments share, written once: where the data are, which device to
train on, checksummed downloads, atomic writes, the optimizers by name and their Lion-lp groups, and
the errors a user can act on.

The experiments never import the companion (`lionlib.companion`): the notebooks drive the
experiments, not the other way round, so an experiment runs from its own command line with
nothing but this room and the optimizer library.

Vocabulary (both experiments): optimizers `lion`, `lion_lp` (Lion-K with K = the lp norm, exponent
`p`) and `adamw`; `weight_decay` is the decoupled decay lambda; `out_dir` is the folder a run writes
(`checkpoint.pt`, `result.json`); command-line flags are `--kebab-case`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

__all__ = ["REPO", "OFFLINE_DATA", "OPTIMIZERS", "LEGACY_OPTIMIZERS", "ExperimentError", "DataError", "ConfigError",
           "data_dir", "resolve_device", "file_digest", "atomic_write", "atomic_write_text", "missing_data", "fetch",
           "lp_groups", "make_optimizer", "optimizer_name", "runs_dir", "run_folders_dir", "cache_dir"]

REPO = Path(__file__).resolve().parents[2]
OFFLINE_DATA = REPO.parent / "shared" / "data"  # the offline copy beside the checkout (development, CI)
OPTIMIZERS = ("lion", "lion_lp", "adamw")
LEGACY_OPTIMIZERS = {"lionk": "lion_lp"}  # earlier CIFAR name, still accepted


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
    notebook or test can point it elsewhere), else the repository's git-ignored `data/`.

    A `LIONLIB_DATA_DIR` that does not exist is an error, not created: a misspelt path would
    otherwise silently become a download target.
    """
    env = os.environ.get("LIONLIB_DATA_DIR")
    if env is None:
        return REPO / "data"
    if not env.strip():
        raise DataError(f"LIONLIB_DATA_DIR is set but empty: set it to the folder that holds the data sets, or unset "
                        f"it to use {REPO / 'data'}")
    path = Path(env).expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"LIONLIB_DATA_DIR={env} is not a folder: fix the path, or unset it to use {REPO / 'data'}")
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
    return REPO / "paper_figures" / "runs" if scale in ("cpu", "paper") else REPO / "build" / "runs" / scale


def run_folders_dir() -> Path:
    """Where the command lines put a run's folder (checkpoint.pt, result.json) when no --out-dir is given."""
    return REPO / "runs"


def cache_dir() -> Path:
    """Where decoded data sets are cached (git-ignored)."""
    return REPO / "data"


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


# ----------------------------------------------------------------------------------------------
# Optimizers by name


def optimizer_name(name: str) -> str:
    """The canonical name (`lionk` -> `lion_lp`); a ValueError lists the choices."""
    name = LEGACY_OPTIMIZERS.get(name, name)
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    return name


def lp_groups(named: Iterable[tuple[str, torch.Tensor]], lr: float, weight_decay: float, p: float,
              decay: Callable[[str, torch.Tensor], bool] = lambda name, prm: True) -> list[dict]:
    """One param group per tensor for Lion-lp, scaled so that every p takes steps of Lion's size and
    keeps Lion's lr * weight_decay.

    The group's lr is multiplied and its decay divided by s = `lionlib.optim.lp_scale(n, p)`
    (n^(1 - 1/p) for a tensor of n entries): grad ||c||_p has unit lq norm, so without s a p = 2
    step would be sqrt(n) times smaller than Lion's. `lr_scale` = s is kept for schedules that
    set `lr` at every step; tensors where `decay(name, tensor)` is false get no decay.
    """
    from lionlib.optim import lp_scale

    groups = []
    for name, prm in named:
        if prm.requires_grad:
            s = lp_scale(prm.numel(), p)
            groups.append(dict(params=[(name, prm)], lr=lr * s, weight_decay=weight_decay / s if decay(name, prm) else 0.0,
                               lr_scale=s))
    return groups


def make_optimizer(params, name: str, lr: float, weight_decay: float = 0.0, betas: tuple[float, float] | None = None,
                   p: float = 1.0) -> torch.optim.Optimizer:
    """`lion`, `lion_lp` or `adamw` over `params` (tensors, (name, tensor) pairs or param groups;
    groups' own lr and weight_decay win). `betas` None: (0.9, 0.99) for Lion, (0.9, 0.999) for AdamW.
    A bad value is the optimizer's own ValueError, raised here, before any training."""
    from lionlib.kappa import get as get_kappa
    from lionlib.optim import Lion, LionK

    name = optimizer_name(name)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas or (0.9, 0.999), weight_decay=weight_decay)
    if name == "lion":
        return Lion(params, lr=lr, betas=betas or (0.9, 0.99), weight_decay=weight_decay)
    return LionK(params, kappa=get_kappa("lp", p=p), lr=lr, betas=betas or (0.9, 0.99), weight_decay=weight_decay)
