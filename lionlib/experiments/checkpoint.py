"""Run folders and checkpoints of the experiments: nothing finished is overwritten by accident, a
resume continues only the run it belongs to, and Ctrl-C saves the work done.

A run's `out_dir` holds `checkpoint.pt` (written atomically: periodically, at the end and on Ctrl-C)
and, once the run has finished, `result.json`. The rules, the same for CIFAR-10 and GPT:

- `claim_out_dir` (the command lines call it before any work): a folder with a finished run is
  refused unless `--force`; a folder with a checkpoint needs `--resume` (continue) or `--force`
  (start again). Nothing is created here: the folder appears with the first checkpoint, so a run
  that fails early leaves no empty folder behind.
- `load_checkpoint`: a damaged file is one `CheckpointError` line naming it.
- `check_same_config`: a checkpoint continues only the configuration that wrote it; the error names
  the keys that differ.
- `deferred_interrupt`: Ctrl-C stops the loop between two steps (never inside an optimizer step),
  so the loop can save a consistent checkpoint and raise `Interrupted` (a KeyboardInterrupt whose
  message says where the checkpoint is and how to resume). A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from lionlib.experiments.common import ExperimentError, atomic_write

__all__ = ["CHECKPOINT", "RESULT", "CheckpointError", "Interrupted", "claim_out_dir", "save_checkpoint",
           "load_checkpoint", "config_diff", "check_same_config", "deferred_interrupt"]

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


class CheckpointError(ExperimentError):
    """A run folder or checkpoint that cannot be used as asked (the message says why and what to do)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, raised after the checkpoint was saved; the message says how to resume."""


def claim_out_dir(out_dir: str | Path, resume: bool, force: bool) -> None:
    """Refuse to start a run in `out_dir` that would overwrite a finished run or an unfinished one.

    `resume`: continue the checkpoint there (a finished run has nothing to resume); `force`: start
    again regardless (the old files are replaced as the new run writes its own).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"--out-dir {out} is a file, not a folder: choose another --out-dir")
    if force:
        return
    if (out / RESULT).is_file():
        what = "nothing to resume" if resume else "not overwritten"
        raise CheckpointError(f"{out} holds a finished run ({RESULT}), {what}: choose another --out-dir, "
                              f"or pass --force to train it again")
    if (out / CHECKPOINT).is_file() and not resume:
        raise CheckpointError(f"{out} holds an unfinished run ({CHECKPOINT}): pass --resume to continue it, "
                              f"--force to start again, or choose another --out-dir")


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """torch.save through a temporary file and a rename: an interrupted save keeps the last checkpoint."""
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location="cpu", keys: tuple[str, ...] = ()) -> dict:
    """A checkpoint written by `save_checkpoint` (tensors, numbers, strings, lists and dicts only:
    loaded with weights_only=True). A truncated, foreign or garbage file raises one CheckpointError
    line that names it; `keys` are the entries the caller needs."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 (torch raises many types; its advice about weights_only is wrong here)
        why = "truncated or damaged" if isinstance(e, (EOFError, OSError, RuntimeError)) else "not a checkpoint"
        raise CheckpointError(f"{path}: unreadable checkpoint ({why}, {type(e).__name__}): move it away, "
                              f"or pass --force to start the run again") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this experiment (no {', '.join(missing)}): move it "
                              f"away, or pass --force to start the run again")
    return state


def config_diff(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{key: (saved value, current value)} for every key whose values differ, `ignore` excepted."""
    keys = (saved.keys() | current.keys()) - set(ignore)
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def check_same_config(path: str | Path, saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume `path` under another configuration (say, another lr): the result would
    belong to neither. The message names every differing key with both values."""
    diff = config_diff(saved, current, ignore)
    if diff:
        said = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise CheckpointError(f"{path} was written by another configuration ({said}): resume with the same "
                              f"settings, choose another --out-dir, or pass --force to start again")


@contextmanager
def deferred_interrupt(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Yields `stop()`, true once Ctrl-C was pressed; the loop checks it between steps.

    Only in the main thread (signal handlers live there) and when `enabled` (off for multi-process
    runs, whose processes would see Ctrl-C at different steps); otherwise Ctrl-C behaves as usual.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hit = []

    def handler(signum, frame):
        if hit:  # the second Ctrl-C: stop now
            raise KeyboardInterrupt
        hit.append(True)
        print("\nCtrl-C: stopping after this step to save a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
