"""Many seeds, affordably: cached, deterministic runs of the CIFAR-10 nets, trained side by side.

A run is a frozen dataclass (`CifarRun`, or `GptRun` in `lionlib.experiments.gpt_seeds`) that holds
everything its numbers depend on. `run_many(runs)` returns one result dict per run:

- **cached**: a finished run is stored as `<cache>/<kind>/<sha256 of the run and CODE_VERSION>.json`
  and read back instead of trained (`refresh=True` retrains; a failed run writes nothing);
- **deterministic**: every random source is seeded from the run's `seed` (initialisation, data
  order, augmentation), `torch.use_deterministic_algorithms(True)`, one intra-op thread per run, so
  a run gives the same numbers whichever worker trains it and in which order;
- **side by side**: the missing runs are spread over `workers` processes with one thread each.
  `benchmarks/bench_train.py` measured why: these nets are too small for two threads to help one
  run, so two single-thread runs at once beat one run on two threads; batching seeds into one model
  (`torch.func.vmap`) was slower here (conv and attention lose their fused CPU kernels), so it is
  not used.

Speed at equal results, per run: channels-last memory and bf16 autocast (oneDNN uses the CPU's
bf16 matrix units where it has them; weights, optimizer state and the loss stay float32).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lionlib.experiments.cifar_data import MEAN, STD, augment, load_cifar10
from lionlib.experiments.common import REPO
from lionlib.experiments.nets import build

__all__ = ["CODE_VERSION", "CifarRun", "environment", "cache_path", "run_many", "train_cifar",
           "make_optimizer", "evaluate"]

CODE_VERSION = 1  # bump when a change to the training code changes results: old cache entries then miss


@dataclass(frozen=True)
class CifarRun:
    """One CIFAR-10 training run. `optimizer`: "lion", "lion_lp" (Lion-K with K = s ||x||_p per tensor,
    s = `lionlib.optim.lp_scale`), "adamw" or "muon" (2-D weights; the rest AdamW without decay)."""

    arch: str = "resnet"
    arch_kw: tuple = ()  # sorted (name, value) pairs passed to nets.build
    optimizer: str = "lion"
    lr: float = 1e-3
    wd: float = 1.0  # lambda, multiplied by lr (decoupled); on tensors with >= 2 dims only
    p: float = 1.0
    muon_exact: bool = True  # Muon: exact msign (SVD) or 5 Newton-Schulz steps
    aux_lr: float = 1e-3  # Muon: AdamW lr of the 1-D tensors
    epochs: int = 4
    batch_size: int = 64
    warmup: float = 0.1  # linear warm-up fraction, then linear decay to 0
    label_smoothing: float = 0.0
    train_per_class: int | None = 200
    test_per_class: int | None = 100
    seed: int = 0
    bf16: bool = True  # bf16 autocast for the forward pass (CPU: oneDNN, AMX where available)
    channels_last: bool = True
    monitor_every: int = 0  # ConstraintMonitor rows every this many steps (0: off)
    data_dir: str | None = field(default=None, compare=False)  # where to read; not part of the key

    def key(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k != "data_dir"}
        d["code_version"] = CODE_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:20]


def environment() -> dict:
    """What a CPU result depends on besides its configuration (recorded in every result)."""
    cpu = platform.processor()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(torch=torch.__version__, numpy=np.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), cpu=cpu, cores=os.cpu_count(),
                blas=torch.backends.mkldnn.is_available() and "mkldnn" or "none",
                deterministic=torch.are_deterministic_algorithms_enabled())


def cache_path(run, cache_dir: str | Path | None = None) -> Path:
    root = Path(cache_dir) if cache_dir else REPO / "runs" / "cache"
    return root / type(run).__name__ / f"{run.key()}.json"


# ----------------------------------------------------------------------------------------------
# Optimizers


def make_optimizer(model: torch.nn.Module, run: CifarRun) -> list[torch.optim.Optimizer]:
    """The run's optimizers (Muon needs a second one for the 1-D tensors). Weight decay applies to
    tensors with >= 2 dims (conv kernels, linear weights, ViT positions); biases and norms are free."""
    from lionlib import kappa
    from lionlib.optim import Lion, LionK, Muon, lp_scale

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    mats = [(n, p) for n, p in named if p.dim() >= 2]
    vecs = [(n, p) for n, p in named if p.dim() < 2]
    if run.optimizer == "adamw":
        return [torch.optim.AdamW([{"params": mats, "weight_decay": run.wd}, {"params": vecs, "weight_decay": 0.0}],
                                  lr=run.lr, betas=(0.9, 0.999))]
    if run.optimizer == "lion":
        return [Lion([{"params": mats, "weight_decay": run.wd}, {"params": vecs, "weight_decay": 0.0}], lr=run.lr)]
    if run.optimizer == "lion_lp":
        groups = []
        for n, p in named:  # one group per tensor: K and the step scale are per tensor
            s = lp_scale(p.numel(), run.p)
            groups.append({"params": [(n, p)], "lr": run.lr * s, "weight_decay": run.wd / s if p.dim() >= 2 else 0.0})
        return [LionK(groups, kappa=kappa.get("lp", p=run.p), lr=run.lr)]
    if run.optimizer == "muon":
        for n, p in mats:
            if p.dim() != 2:
                raise ValueError(f"Muon needs 2-D weights; {n} has shape {tuple(p.shape)}")
        return [Muon(mats, lr=run.lr, weight_decay=run.wd, exact_svd=run.muon_exact),
                torch.optim.AdamW(vecs, lr=run.aux_lr, weight_decay=0.0)]
    raise ValueError(f"unknown optimizer {run.optimizer!r}; choose lion, lion_lp, adamw or muon")


def _lr_factor(step: int, total: int, warmup: float) -> float:
    w = max(1, round(warmup * total))
    return (step + 1) / w if step < w else max(0.0, (total - step) / (total - w))


# ----------------------------------------------------------------------------------------------
# Training


def _normalise(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


@torch.no_grad()
def evaluate(model, x, y, run: CifarRun, bs: int = 500) -> tuple[float, float]:
    """(mean cross-entropy, accuracy), in eval mode: batch norm uses its running statistics, so the
    result does not depend on how the images are batched or ordered."""
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), bs):
        xb = _normalise(x[i:i + bs])
        if run.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.bf16):
            out = model(xb).float()
        loss += F.cross_entropy(out, y[i:i + bs], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + bs]).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


_DATA: dict = {}


def _data(run: CifarRun) -> dict:
    key = (run.data_dir, run.train_per_class, run.test_per_class)
    if key not in _DATA:
        _DATA[key] = load_cifar10(run.data_dir, run.train_per_class, run.test_per_class)
    return _DATA[key]


def train_cifar(run: CifarRun) -> dict:
    """Train one run and return its result (per-step losses, per-epoch test metrics, monitor rows)."""
    data = _data(run)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    torch.manual_seed(run.seed)
    model = build(run.arch, **dict(run.arch_kw))
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opts = make_optimizer(model, run)
    for o in opts:
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
    steps = math.ceil(len(train_x) / run.batch_size)
    total = run.epochs * steps
    mon = None
    if run.monitor_every:
        from lionlib.monitor import ConstraintMonitor

        mon = ConstraintMonitor(opts[0], model.named_parameters(), every=run.monitor_every, kkt=False)
    losses, history, t0 = [], [], time.perf_counter()
    for epoch in range(run.epochs):
        gen = torch.Generator().manual_seed(run.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_x), generator=gen)
        for i in range(steps):
            step = epoch * steps + i
            for o in opts:
                for g in o.param_groups:
                    g["lr"] = g["initial_lr"] * _lr_factor(step, total, run.warmup)
            idx = order[i * run.batch_size:(i + 1) * run.batch_size]
            x = _normalise(augment(train_x[idx], gen))
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.bf16):
                out = model(x)
            loss = F.cross_entropy(out.float(), train_y[idx], label_smoothing=run.label_smoothing)
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                o.step()
            if mon is not None:
                mon.record(step + 1)
            losses.append(loss.item())
        test_loss, test_acc = evaluate(model, test_x, test_y, run)
        history.append(dict(epoch=epoch + 1, step=(epoch + 1) * steps, test_loss=test_loss, test_acc=test_acc,
                            train_loss=float(np.mean(losses[-steps:]))))
    return dict(run=asdict(run), key=run.key(), kind="CifarRun", dataset=data["label"], data_sha256=data["sha256"],
                n_train=len(train_x), n_test=len(test_x), steps=total, losses=losses, history=history,
                final_test_acc=history[-1]["test_acc"], final_test_loss=history[-1]["test_loss"],
                monitor=None if mon is None else mon.frame().to_dict(orient="list"),
                seconds=time.perf_counter() - t0, images_per_s=total * run.batch_size / (time.perf_counter() - t0),
                environment=environment())


def _trainer(run):
    """The function that trains `run`: the run's own `train` (GptRun) or `train_cifar`."""
    if isinstance(run, CifarRun):
        return train_cifar
    if hasattr(run, "train") and hasattr(run, "key"):
        return type(run).train
    raise TypeError(f"no trainer for {type(run).__name__}")


def _worker(run, cache: str | None) -> dict:
    """Train one run deterministically on one thread and store it (atomically) in the cache."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    result = _trainer(run)(run)
    path = cache_path(run, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=float) + "\n")
    tmp.replace(path)
    return result


_POOLS: dict = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool per worker count, kept for the life of the process: starting workers costs seconds."""
    import multiprocessing as mp

    if workers not in _POOLS:
        from lionlib import optim  # noqa: F401  (imported before the fork, once)

        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"))
    return _POOLS[workers]


def run_many(runs: list, workers: int = 2, refresh: bool = False, cache_dir: str | Path | None = None,
             progress: bool = True) -> list[dict]:
    """Results of `runs` (in order): cached ones read back, the others trained on `workers`
    single-thread processes (`workers=0`: in this process, still on one thread)."""
    from tqdm.auto import tqdm

    cache = str(cache_dir) if cache_dir else None
    out: dict[int, dict] = {}
    todo = []
    for i, r in enumerate(runs):
        path = cache_path(r, cache)
        if not refresh and path.is_file():
            out[i] = json.loads(path.read_text())
        else:
            todo.append(i)
    unique = list(dict.fromkeys(runs[i].key() for i in todo))  # equal runs are trained once
    first = {runs[i].key(): runs[i] for i in reversed(todo)}
    bar = tqdm(total=len(unique), desc=f"training ({len(runs) - len(todo)} of {len(runs)} cached)",
               disable=not progress or not unique)
    done: dict[str, dict] = {}
    if workers <= 0 or len(unique) <= 1:
        threads = torch.get_num_threads()
        try:
            for k in unique:
                done[k] = _worker(first[k], cache)
                bar.update()
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(False)
    else:
        for k in unique:  # decode the data once, here: forked workers inherit it
            if isinstance(first[k], CifarRun):
                _data(first[k])
        futures = {k: _pool(workers).submit(_worker, first[k], cache) for k in unique}
        for k, f in futures.items():
            done[k] = f.result()
            bar.update()
    bar.close()
    for i in todo:
        out[i] = done[runs[i].key()]
    return [out[i] for i in range(len(runs))]
