"""The Distributed Lion trainer (notebook 10): the GPT of the experiments trained by N data-parallel
workers, simulated one after another in this process, three ways from the same initialisation and
on the same global batches (each worker takes its 1/N of them):

- **global Lion** (`optimizer="lion"`): Lion on the gradient averaged over the workers (what DDP
  does; an fp32 all-reduce of the gradient per step);
- **Distributed Lion** (`optimizer="distributed_lion"`, `vote="majority"` or `"average"`): each
  worker keeps its own momentum and sends the sign of its own Lion direction (one bit per
  parameter); every worker applies sign(sum_i s_i) or (1/N) sum_i s_i. A coordinate with c exactly 0
  is sent as +1 by even workers and -1 by odd ones, as `lionlib.distributed.DistributedLion` does.

That gloo processes compute what this simulation does is a test (`tests/test_distributed_lion.py`
runs `DistributedLion` on 2 and 4 processes against a one-process simulation), not an assumption.
Bytes each worker sends per step are counted for a ring all-reduce of fp32 gradients and for the
all-gather of packed signs (`bytes_per_step`), and kept in the record's `data`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lionlib.experiments.engine import base_lr_lambda, lr_factor, progress
from lionlib.experiments.gpt_data import get_batch
from lionlib.experiments.gpt_model import GPT
from lionlib.experiments.gpt_train import EVAL_SEED, load_data, model_config, streams
from lionlib.experiments.record import Curves, RunRecord, environment
from lionlib.experiments.specs import DistributedSpec, check_spec

__all__ = ["train", "bytes_per_step", "trace"]


def bytes_per_step(optimizer: str, n: int, workers: int) -> float:
    """Bytes each worker sends per step: ring all-reduce of n fp32 gradients (global Lion), or the
    all-gather of n packed sign bits (Distributed Lion)."""
    if optimizer == "lion":
        return 2 * (workers - 1) / workers * 4 * n
    return (workers - 1) * -(-n // 8)


def _setup(spec: DistributedSpec, data):
    from lionlib import Lion

    mcfg = model_config(spec, data.vocab_size)
    torch.manual_seed(spec.seed)
    model = GPT(mcfg)
    named = list(model.named_parameters())
    decayed = [q.dim() >= 2 for _, q in named]
    groups = [dict(params=[(n, q) for (n, q), d in zip(named, decayed) if d], weight_decay=spec.weight_decay),
              dict(params=[(n, q) for (n, q), d in zip(named, decayed) if not d], weight_decay=0.0)]
    opt = Lion(groups, lr=spec.lr, betas=spec.betas)  # steps global Lion; the monitor reads its groups
    return mcfg, model, named, decayed, opt


def _step(spec, model, params, decayed, opt, momenta, x_all, y_all, lr) -> float:
    """One step of the spec's method on the global batch; the mean training loss over the workers."""
    rows, b1, b2 = spec.batch_size // spec.workers, *spec.betas
    for g in opt.param_groups:
        g["lr"] = lr
    total = 0.0
    if spec.optimizer == "lion":
        for w in range(spec.workers):
            sl = slice(w * rows, (w + 1) * rows)
            loss = model(x_all[sl], y_all[sl])[1] / spec.workers
            loss.backward()
            total += loss.item()
        opt.step()
        return total
    votes = [torch.zeros(q.shape, dtype=torch.int32) for q in params]
    for w in range(spec.workers):
        sl = slice(w * rows, (w + 1) * rows)
        model.zero_grad(set_to_none=True)
        loss = model(x_all[sl], y_all[sl])[1]
        loss.backward()
        total += loss.item() / spec.workers
        with torch.no_grad():
            for i, q in enumerate(params):
                g, m = q.grad, momenta[w][i]
                c = m.mul(b1).add_(g, alpha=1 - b1)
                m.mul_(b2).add_(g, alpha=1 - b2)
                votes[i] += torch.where(c > 0, 1, torch.where(c < 0, -1, 1 if w % 2 == 0 else -1)).int()
    with torch.no_grad():
        for q, v, d in zip(params, votes, decayed):
            direction = v.sign().float() if spec.vote == "majority" else v.float() / spec.workers
            if d:
                q.mul_(1 - lr * spec.weight_decay)
            q.add_(direction, alpha=-lr)
    return total


def trace(spec: DistributedSpec, n_steps: int, data_dir: str | None = None) -> list[list[torch.Tensor]]:
    """The parameters after each of the first `n_steps` steps (for the one-worker check against Lion)."""
    check_spec(spec)
    data = load_data(spec.dataset, data_dir)
    s = streams(data)
    mcfg, model, named, decayed, opt = _setup(spec, data)
    params = [q for _, q in named]
    momenta = [[torch.zeros_like(q) for q in params] for _ in range(spec.workers)]
    out = []
    for step in range(n_steps):
        x, y = get_batch(s["train"], spec.batch_size, mcfg.block_size, np.random.default_rng([spec.seed, step]))
        _step(spec, model, params, decayed, opt, momenta, x, y, spec.lr * lr_factor(spec.schedule, step, spec.steps, spec.warmup))
        opt.zero_grad(set_to_none=True)
        out.append([q.detach().clone() for q in params])
    return out


def train(spec: DistributedSpec, *, device: str = "cpu", compile: bool | None = None, show_progress: bool = True,
          data_dir: str | None = None, **_run) -> RunRecord:
    """Train `spec` (simulated workers, CPU); the record's eval has val_loss (and test_loss at the end)
    with `bytes` sent per worker up to each evaluation."""
    check_spec(spec)
    if device not in ("cpu", "auto"):
        raise ValueError("the Distributed Lion simulation runs on the CPU (device='cpu')")
    data = load_data(spec.dataset, data_dir)
    s = streams(data)
    mcfg, model, named, decayed, opt = _setup(spec, data)
    params = [q for _, q in named]
    n = sum(q.numel() for q in params)
    per_step = bytes_per_step(spec.optimizer, n, spec.workers)
    momenta = [[torch.zeros_like(q) for q in params] for _ in range(spec.workers)]
    mon = None
    if spec.monitor_every:
        from lionlib.monitor import ConstraintMonitor

        mon = ConstraintMonitor(opt, named, every=spec.monitor_every)

    @torch.no_grad()
    def loss_on(stream: str, n_batches: int) -> float:
        model.eval()
        out = [model(*get_batch(s[stream], spec.batch_size, mcfg.block_size, np.random.default_rng([EVAL_SEED, i])))[1].item()
               for i in range(n_batches)]
        model.train()
        return float(np.mean(out))

    curves = Curves(evals=[{"step": 0, "val_loss": loss_on("val", spec.eval_batches), "bytes": 0.0}])
    bar = progress(spec.steps, 0, f"{spec.optimizer} {spec.vote or ''}".strip(), show_progress)
    t0 = time.perf_counter()
    for step in range(spec.steps):
        x, y = get_batch(s["train"], spec.batch_size, mcfg.block_size, np.random.default_rng([spec.seed, step]))
        factor = lr_factor(spec.schedule, step, spec.steps, spec.warmup)
        curves.loss.append(_step(spec, model, params, decayed, opt, momenta, x, y, spec.lr * factor))
        curves.lr_lambda.append(base_lr_lambda(spec, factor))
        if mon is not None:
            mon.record(step + 1)
        opt.zero_grad(set_to_none=True)
        if (step + 1) % spec.eval_every == 0 and step + 1 < spec.steps:
            curves.evals.append({"step": step + 1, "val_loss": loss_on("val", spec.eval_batches), "bytes": (step + 1) * per_step})
        bar.update()
    bar.close()
    curves.evals.append({"step": spec.steps, "val_loss": loss_on("val", spec.final_eval_batches),
                         "test_loss": loss_on("test", spec.final_eval_batches), "bytes": spec.steps * per_step})
    if mon is not None:
        curves.monitor_rows = mon.rows
    env = environment("cpu", spec.precision, False, 1, simulated_workers=spec.workers)
    info = dict(dataset=spec.dataset, params=n, bytes_per_step=per_step, n_train=len(s["train"]), n_val=len(s["val"]),
                n_test=len(s["test"]))
    return RunRecord.build(spec, curves, env, time.perf_counter() - t0, info, model=model)
