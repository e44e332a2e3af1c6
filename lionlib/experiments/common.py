"""What the CIFAR-10 and GPT experiments share: where the repository and the data are, and which
device to train on.

The experiments never import the companion (`lionlib.companion`): the notebooks drive the
experiments, not the other way round, so an experiment runs from its own command line with
nothing but this room and the optimizer library.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["REPO", "OFFLINE_DATA", "data_dir", "resolve_device"]

REPO = Path(__file__).resolve().parents[2]
OFFLINE_DATA = REPO.parent / "shared" / "data"  # the offline copy beside the checkout (development, CI)


def data_dir() -> Path:
    """Where data sets are read from and cached: `$LIONLIB_DATA_DIR` (read at each call, so a
    notebook or test can point it elsewhere), else the repository's git-ignored `data/`."""
    env = os.environ.get("LIONLIB_DATA_DIR")
    return Path(env).expanduser().resolve() if env else REPO / "data"


def resolve_device(device: str = "auto") -> torch.device:
    """`"auto"` -> the best available device (cuda, then mps, then cpu); anything else is passed to torch."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
