"""The run store: finished runs kept as data, one record per spec, `<root>/<task>/<spec_hash>.json`
(root: `paper_figures/runs/`, see `common.runs_dir`).

`RunStore.run(specs)` returns a record per spec: stored ones are read back, missing ones trained
(`refresh=True` retrains them all) and written as they finish, so a long batch of runs can be spread
over several sittings. `RunStore.match(partial)` finds the records whose spec contains a partial
spec (a dict of spec keys): the way arms and protocols refer to runs.

Missing runs train in this process or, with `workers > 0`, in that many single-thread worker
processes side by side (two single-thread runs at once beat one run on two threads for these small
nets: `benchmarks/bench_train.py`). Either way each run is deterministic (every random source
seeded from the spec, `torch.use_deterministic_algorithms(True)`, one intra-op thread), so the same
spec gives the same record on the same machine, whichever worker trains it.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields
from pathlib import Path

import torch

from lionlib.experiments.common import ConfigError, atomic_write_text, runs_dir
from lionlib.experiments.record import RunRecord
from lionlib.experiments.specs import SPECS, spec_hash

__all__ = ["RunStore", "trainer", "train_spec"]


def trainer(spec):
    """The function that trains a spec of its task (`spec -> RunRecord`)."""
    if spec.task == "cifar":
        from lionlib.experiments.cifar_train import train
    elif spec.task == "gpt":
        from lionlib.experiments.gpt_train import train
    elif spec.task == "distributed":
        from lionlib.experiments.distributed_train import train
    else:
        raise ConfigError(f"no trainer for task {spec.task!r}")
    return train


def train_spec(spec, data_dir: str | None = None, show_progress: bool = False, device: str = "cpu") -> RunRecord:
    """Train one spec; on the CPU deterministically on one thread (the caller's settings restored after)."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if device == "cpu":
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
    try:
        return trainer(spec)(spec, device=device, data_dir=data_dir, show_progress=show_progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def _worker(spec, data_dir, root) -> str:
    rec = train_spec(spec, data_dir)
    RunStore(root).put(rec)
    return rec.dumps()


_POOLS: dict = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per worker count, kept for the life of the process: starting workers costs seconds."""
    import multiprocessing as mp

    if workers not in _POOLS:
        from lionlib import optim  # noqa: F401  (imported before the fork, once)

        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    return _POOLS[workers]


class RunStore:
    """Records under `root`, read and written atomically. Default root: `common.runs_dir(scale)` of
    each spec (committed for the cpu and paper scales, under build/ for smoke and tiny)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        return self._root if self._root is not None else runs_dir()

    def path(self, spec) -> Path:
        root = self._root if self._root is not None else runs_dir(spec.scale)
        return root / spec.task / f"{spec_hash(spec)}.json"

    def get(self, spec) -> RunRecord | None:
        path = self.path(spec)
        if not path.is_file():
            return None
        rec = RunRecord.loads(path.read_text(), str(path))
        if rec.spec != spec:
            raise ConfigError(f"{path} holds another spec (a hash collision or an edited file): move it away")
        return rec

    def put(self, record: RunRecord) -> Path:
        return atomic_write_text(self.path(record.spec), record.dumps())

    def records(self, task: str | None = None, scale: str = "cpu") -> list[RunRecord]:
        """Every record of `task` (None: of every task) under the root (default: `runs_dir(scale)`)."""
        root = self._root if self._root is not None else runs_dir(scale)
        tasks = [task] if task else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        return [RunRecord.loads(p.read_text(), str(p)) for t in tasks for p in sorted((root / t).glob("*.json"))]

    def match(self, partial: dict, task: str | None = None) -> list[RunRecord]:
        """The records whose spec contains `partial` (every key equal; lists and tuples alike). A key
        no spec of the task has is an error, not a silent non-match."""
        task = task or partial.get("task")
        if task not in SPECS:
            raise ConfigError(f"match needs the task (one of {', '.join(SPECS)}), in `partial` or as `task`")
        names = {f.name for f in fields(SPECS[task])}
        unknown = set(partial) - names
        if unknown:
            raise ConfigError(f"unknown {task} spec keys {sorted(unknown)}")
        want = {k: tuple(v) if isinstance(v, list) else v for k, v in partial.items()}
        found = self.records(task, want.get("scale", "cpu"))
        return [r for r in found if all(getattr(r.spec, k) == v for k, v in want.items())]

    def run(self, specs: list, refresh: bool = False, workers: int = 0, data_dir: str | None = None,
            show_progress: bool = True, device: str = "cpu") -> list[RunRecord]:
        """A record per spec (in order): stored ones read back, the others trained and stored (on
        `device`; worker processes on the CPU only)."""
        from tqdm.auto import tqdm

        out: dict[int, RunRecord] = {}
        todo = []
        for i, s in enumerate(specs):
            rec = None if refresh else self.get(s)
            if rec is None:
                todo.append(i)
            else:
                out[i] = rec
        unique = list(dict.fromkeys(specs[i] for i in todo))  # equal specs are trained once
        bar = tqdm(total=len(unique), desc=f"training ({len(specs) - len(todo)} of {len(specs)} stored)",
                   disable=not show_progress or not unique)
        done: dict = {}
        if workers <= 0 or len(unique) <= 1 or device != "cpu":
            for s in unique:
                done[s] = train_spec(s, data_dir, show_progress, device)
                self.put(done[s])
                bar.update()
        else:
            root = None if self._root is None else str(self._root)
            futures = {s: _pool(workers).submit(_worker, s, data_dir, root) for s in unique}
            for s, f in futures.items():
                done[s] = RunRecord.loads(f.result())
                bar.update()
        bar.close()
        for i in todo:
            out[i] = done[specs[i]]
        return [out[i] for i in range(len(specs))]
