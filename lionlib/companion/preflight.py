"""What the driver checks before any notebook runs, so a bad argument costs a line, not a run.

Every argument, parameter and environment variable a run depends on is checked up front (issue 21
found a bad `--out-dir` reported after a 40 s notebook, as a 30-line traceback): the folders it
writes are tried (`paths.unwritable`), `--threads` and `--cell-timeout` are positive, the
parameters' types and ranges are those declared (`params.check_overrides`), the data folder and the
device exist. Each problem is one line that names the fix.
"""

import argparse
from pathlib import Path

from lionlib.companion.params import ParameterError
from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES, unwritable

__all__ = ["OneLineParser", "positive", "check_folders", "check_environment", "dirty_promotion"]


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse's usage block buries the message)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive(text: str) -> int:
    """argparse type of --threads and --cell-timeout: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive: give 1 or more (or leave it out for the default)")
    return value


def check_folders(parser, folders: dict[str, Path]) -> None:
    """Every folder a run writes, tried before any notebook runs (a bad one would fail after it)."""
    for flag, folder in folders.items():
        if problem := unwritable(folder):
            parser.error(f"{flag} {folder}: {problem}; choose a folder you can write")


def check_environment(overrides: dict) -> None:
    """The environment variables and the folder and device parameters, checked before any work."""
    from lionlib.experiments.common import DataError, data_dir
    from lionlib.experiments.home import HomeError, home

    try:
        home()
        data_dir()  # an empty LIONLIB_DATA_DIR, or one that is not a folder: its one-line error
    except (DataError, HomeError) as e:
        raise ParameterError(str(e)) from None
    value = overrides.get("DATA_DIR")
    if value is not None and not (Path(value).expanduser().is_dir() and any(Path(value).expanduser().iterdir())):
        raise ParameterError(f"-p DATA_DIR {value}: not a folder holding data; point it at the folder with the data sets "
                             "(or leave it out for $LIONLIB_DATA_DIR)")
    device = overrides.get("DEVICE")
    if isinstance(device, str) and device != "auto":
        import torch

        kind = device.split(":")[0]
        available = {"cpu": True, "cuda": torch.cuda.is_available(),
                     "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
        if kind not in available:
            raise ParameterError(f"-p DEVICE {device!r}: unknown device; use auto, cpu, cuda or mps")
        if not available[kind]:
            raise ParameterError(f"-p DEVICE {device}: this torch has no {kind} device ({torch.__version__}); "
                                 "use -p DEVICE cpu or auto, or install a torch build with it")


def dirty_promotion(out_dir: Path, update_notebooks: bool, notebooks_dir: Path, state: dict,
                    committed: Path = PAPER_FIGURES, notebooks: Path = NOTEBOOKS) -> str | None:
    """Why this run may not write the committed results, or None: results in `paper_figures/` (and the
    committed notebooks' outputs) must trace to a commit, so they are made from a tree without local
    changes to the code (`state`: `manifest.git_commit()`). Any other folder (build/, --out-dir) is fine."""
    targets = [t for t, hit in ((f"{committed}/", Path(out_dir).resolve() == Path(committed).resolve()),
                                (f"the committed {notebooks}/*.ipynb",
                                 update_notebooks and Path(notebooks_dir).resolve() == Path(notebooks).resolve())) if hit]
    if not targets or not state.get("dirty"):
        return None
    return (f"the tree has local changes (git status), so results made now would not trace to commit "
            f"{(state.get('commit') or '?')[:10]}: commit or stash them before writing {' and '.join(targets)}, "
            "or write elsewhere with --out-dir (smoke and other scales go to build/ anyway)")
