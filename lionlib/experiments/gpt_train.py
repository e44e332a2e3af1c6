"""The GPT trainer: nanoGPT's `train.py` as one function of a `GptSpec`, on CPU and CUDA, returning a
`RunRecord`.

Cosine schedule with linear warm-up, gradient clipping, gradient accumulation, bf16 autocast (a
spec key), `torch.compile` and data parallelism through `torchrun` (flags; NCCL on GPUs, gloo on
CPU). The batch of step t is drawn from a generator seeded with (seed, t), so a resumed run and a
run split over several processes see the same global batches as one uninterrupted process.

Streams: training windows from the data set's train split; its held-out split is cut in two, a
**validation** stream (the first half: for tuning, every `eval_every` steps) and a distinct
**test** stream (the second half: the evaluation metric, at the end). Evaluation batches are fixed
(seeded by `EVAL_SEED`), so losses are comparable between runs.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from lionlib.experiments.checkpoint import (CHECKPOINT, Interrupted, check_same_config, deferred_interrupt,
                                            load_checkpoint, save_checkpoint)
from lionlib.experiments.common import ConfigError
from lionlib.experiments.engine import base_lr_lambda, interrupted_message, lr_factor, make_optimizers, progress, runtime
from lionlib.experiments.gpt_data import TokenData, get_batch, load_dataset_by_name
from lionlib.experiments.gpt_model import GPT, GPTConfig
from lionlib.experiments.record import Curves, RunRecord, environment
from lionlib.experiments.specs import GPT_MODELS, GptSpec, canonical, check_spec

__all__ = ["EVAL_SEED", "train", "streams", "model_config", "load_data"]

EVAL_SEED = 20240501
_DATA: dict = {}


def load_data(dataset: str, data_dir: str | None = None) -> TokenData:
    if (dataset, data_dir) not in _DATA:
        _DATA[dataset, data_dir] = load_dataset_by_name(dataset, data_dir)
    return _DATA[dataset, data_dir]


def streams(data: TokenData) -> dict[str, np.ndarray]:
    """{"train", "val", "test"}: the held-out split's first half validates, its second half tests."""
    half = len(data.val) // 2
    return {"train": data.train, "val": data.val[:half], "test": data.val[half:]}


def model_config(spec, vocab_size: int) -> GPTConfig:
    cfg = dict(GPT_MODELS[spec.model])
    cfg.setdefault("vocab_size", vocab_size)
    if cfg["vocab_size"] < vocab_size:
        raise ConfigError(f"model {spec.model}: vocab_size {cfg['vocab_size']} < the data's {vocab_size}")
    return GPTConfig(**cfg)


def _check_sizes(spec, s: dict) -> None:
    if spec.n_train and (len(s["train"]), len(s["val"])) != (spec.n_train, spec.n_val):
        raise ConfigError(f"{spec.dataset}: streams of {len(s['train'])} / {len(s['val'])} tokens, the spec says "
                          f"n_train {spec.n_train} / n_val {spec.n_val}: a different copy of the data set")


def train(spec: GptSpec, *, device: str = "auto", compile: bool | None = None, out_dir: str | Path | None = None,
          resume: bool = False, stop_at: int | None = None, ckpt_every: int = 0, show_progress: bool = True,
          data_dir: str | None = None, ddp: bool = True, data: TokenData | None = None) -> RunRecord | None:
    """Train `spec`; under `torchrun` every process calls this and they train one model together.
    Returns the record on every rank (None when `stop_at` stopped the run before the end)."""
    check_spec(spec)
    rt = runtime(device, spec.precision, compile, ddp)
    if spec.batch_size % (rt.world * spec.grad_accum):
        raise ConfigError(f"batch_size {spec.batch_size} does not split evenly over {rt.world} process(es) x "
                          f"grad_accum {spec.grad_accum}")
    with deferred_interrupt(enabled=rt.world == 1) as stop:
        try:
            return _train(spec, rt, data or load_data(spec.dataset, data_dir), Path(out_dir) if out_dir else None,
                          resume, stop_at, ckpt_every, show_progress, stop)
        finally:
            rt.close()


def _train(spec, rt, data, out_dir, resume, stop_at, ckpt_every, show, interrupted) -> RunRecord | None:
    dev, world = rt.device, rt.world
    s = streams(data)
    _check_sizes(spec, s)
    mcfg = model_config(spec, data.vocab_size)
    micro = spec.batch_size // (world * spec.grad_accum)
    micro_rows = [slice(j * micro, (j + 1) * micro) for j in range(rt.rank * spec.grad_accum, (rt.rank + 1) * spec.grad_accum)]
    torch.manual_seed(spec.seed)  # the same init on every rank (DDP also broadcasts rank 0's weights)
    model = GPT(mcfg).to(dev)
    (opt,) = make_optimizers(model.named_parameters(), spec.optimizer, spec.lr, spec.weight_decay, spec.betas, spec.p)
    mon = None
    if spec.monitor_every and rt.master:  # AdamW groups have no K: the monitor then watches Lion's box
        from lionlib.monitor import ConstraintMonitor

        mon = ConstraintMonitor(opt, model.named_parameters(), every=spec.monitor_every)
    curves, start, elapsed, sittings = Curves(), 0, 0.0, 1
    ckpt = out_dir / CHECKPOINT if out_dir else None
    identity = canonical(spec)
    if resume and ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt, dev, keys=("step", "spec", "model", "optimizer", "curves", "monitor"))
        import json

        check_same_config(ckpt, json.loads(state["spec"]), json.loads(identity))
        if rt.master:
            print(f"resuming {ckpt} at step {state['step']} of {spec.steps}", flush=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        curves = Curves(**state["curves"])
        if mon is not None:
            mon.load_state_dict(state["monitor"])
        start, elapsed, sittings = state["step"], state["elapsed"], state["sittings"] + 1
    elif resume and rt.master and ckpt is not None:
        print(f"no checkpoint in {out_dir}: starting the run", flush=True)
    fwd = rt.wrap(model)

    def save(step: int) -> None:
        if ckpt is not None and rt.master:
            save_checkpoint(ckpt, dict(step=step, spec=identity, model=model.state_dict(), optimizer=opt.state_dict(),
                                       model_config=vars(mcfg), curves=curves.state(), sittings=sittings,
                                       elapsed=elapsed + time.perf_counter() - t0,
                                       monitor=None if mon is None else mon.state_dict()))

    @torch.no_grad()
    def loss_on(stream: str, n_batches: int) -> float:
        fwd.eval()
        total = torch.zeros((), device=dev)
        for i in range(n_batches):
            for rows in micro_rows:
                x, y = get_batch(s[stream], spec.batch_size, mcfg.block_size, np.random.default_rng([EVAL_SEED, i]), rows, dev)
                with rt.autocast():
                    total += fwd(x, y)[1].float()
        fwd.train()
        return _mean(total / (n_batches * len(micro_rows)), world)

    end = spec.steps if stop_at is None else min(stop_at, spec.steps)
    bar = progress(spec.steps, start, f"{spec.model} {spec.optimizer}", show and rt.master)
    t0 = time.perf_counter()
    for step in range(start, end):
        if interrupted():  # Ctrl-C, between two steps: keep the work done
            save(step)
            bar.close()
            raise Interrupted(interrupted_message(step, spec.steps, ckpt))
        if ckpt_every and step > start and step % ckpt_every == 0:
            save(step)
        factor = lr_factor(spec.schedule, step, spec.steps, spec.warmup, spec.min_lr_ratio)
        for g in opt.param_groups:
            g["lr"] = spec.lr * factor * g["lr_scale"]
        loss_sum = torch.zeros((), device=dev)
        for k, rows in enumerate(micro_rows):
            # every micro-step of every rank draws the same global batch and keeps its own rows
            x, y = get_batch(s["train"], spec.batch_size, mcfg.block_size, np.random.default_rng([spec.seed, step]), rows, dev)
            last = k == len(micro_rows) - 1
            with (fwd.no_sync() if world > 1 and not last else nullcontext()), rt.autocast():
                loss = fwd(x, y)[1] / len(micro_rows)
            loss.backward()  # DDP averages gradients over ranks on the last micro-step
            loss_sum += loss.detach()
        if spec.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
        opt.step()
        if mon is not None:
            mon.record(step + 1)  # before zero_grad: the KKT score needs the gradient
        opt.zero_grad(set_to_none=True)
        curves.loss.append(_mean(loss_sum, world))
        curves.lr_lambda.append(base_lr_lambda(spec, factor))
        if (step + 1) % spec.eval_every == 0 and step + 1 < spec.steps:
            curves.evals.append({"step": step + 1, "val_loss": loss_on("val", spec.eval_batches)})
        bar.update()
        bar.set_postfix(loss=f"{curves.loss[-1]:.3f}", refresh=False)
    bar.close()
    if end < spec.steps:
        save(end)
        return None
    curves.evals.append({"step": spec.steps, "val_loss": loss_on("val", spec.final_eval_batches),
                         "test_loss": loss_on("test", spec.final_eval_batches)})
    if mon is not None:
        curves.monitor_rows = mon.rows
    save(spec.steps)
    env = environment(dev, spec.precision, rt.compile, world, resumed=sittings - 1)
    info = dict(dataset=spec.dataset, n_train=len(s["train"]), n_val=len(s["val"]), n_test=len(s["test"]),
                vocab_size=data.vocab_size, params=model.num_params())
    return RunRecord.build(spec, curves, env, elapsed + time.perf_counter() - t0, info, model=model)


def _mean(x: torch.Tensor, world: int) -> float:
    if world > 1:  # SUM then divide: gloo has no AVG
        import torch.distributed as dist

        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / world
    return x.item()
