"""A nanoGPT-style decoder and its trainer, for the paper's GPT-2 / Lion-lp experiments.

The model (`lionlib.experiments.gpt_model`) is nanoGPT's `model.py` cut to what the experiments use.
The trainer here is nanoGPT's `train.py` as a function: cosine schedule with linear warmup, gradient clipping, gradient
accumulation, bf16 autocast and `torch.compile` on CUDA only, periodic validation, checkpoint and
resume, and data parallelism through `torchrun` (NCCL on GPUs, gloo on CPU).

Runs are reproducible by construction: the batch of step t is drawn from a generator seeded with
(seed, t), so a resumed run and a run split over several processes see exactly the same global
batches as one uninterrupted single-process run (the tests check both).

Command line (the `paper` scale needs `prepare_openwebtext` first, see `lionlib.experiments.gpt_data`):

    python -m lionlib.experiments.gpt --scale cpu --optimizer lion --out-dir runs/gpt/lion
    torchrun --standalone --nproc_per_node 8 -m lionlib.experiments.gpt --scale paper --optimizer lion_lp --p 1.5 \
        --out-dir runs/gpt/paper/lion_lp1.5

`--help` lists every flag. A run writes `<out_dir>/checkpoint.pt` (every `ckpt_interval` steps, at
the end and on Ctrl-C) and `<out_dir>/result.json` when it finishes; see
`lionlib.experiments.checkpoint` for the rules on resuming (`--resume`) and overwriting (`--force`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from lionlib.experiments import cli, common, home
from lionlib.experiments.checkpoint import (CHECKPOINT, RESULT, Interrupted, check_same_config, claim_out_dir,
                                            deferred_interrupt, load_checkpoint, save_checkpoint)
from lionlib.experiments.common import OPTIMIZERS, ConfigError, resolve_device
from lionlib.experiments.gpt_config import (TrainConfig, identity, lr_at, make_optimizer, param_groups,
                                            validate)
from lionlib.experiments.gpt_data import TokenData, get_batch, load_dataset_by_name
from lionlib.experiments.gpt_model import GPT, GPTConfig
from lionlib.monitor import ConstraintMonitor

__all__ = ["TrainConfig", "RunResult", "param_groups", "make_optimizer", "lr_at", "validate", "train", "load_model",
           "sample_text", "preset", "main"]

# -------------------------------------------------------------------------------------------------
# training

EVAL_SEED = 20240501  # validation batches are the same for every run, so losses are comparable


@dataclass
class RunResult:
    model_config: dict
    train_config: dict
    history: list[dict]  # {"step", "lr", "train_loss"} every log_interval; {"step", "val_loss"} at evals
    final_val_loss: float  # on final_eval_batches batches; nan when stopped early (stop_at)
    tokens_per_s: float  # training throughput of all processes together, evaluation excluded
    train_seconds: float
    num_params: int
    world_size: int  # processes that trained together
    monitor: object = None  # ConstraintMonitor.frame() on rank 0 (a pandas DataFrame), else None
    model: GPT | None = None  # the trained model, in memory only
    data: TokenData | None = None

    def to_json(self) -> dict:
        """Everything but the model and data; the monitor frame as columns."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("monitor", "model", "data")}
        out["monitor"] = None if self.monitor is None else self.monitor.to_dict(orient="list")
        return out

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> RunResult:
        """A finished run's result.json: the file, or the run's folder (`out_dir`)."""
        import pandas as pd

        path = Path(path)
        d = json.loads((path / RESULT if path.is_dir() else path).read_text())
        mon = d.pop("monitor")
        return cls(**d, monitor=None if mon is None else pd.DataFrame(mon))


def _setup_distributed(device_pref: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, device, whether we started the process group) from torchrun's env vars."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_pref)
    if world == 1:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, device, started


def _mean_over_ranks(x: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:  # SUM then divide: gloo has no AVG
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / world
    return x


def train(model_cfg: GPTConfig, cfg: TrainConfig, data: TokenData | None = None) -> RunResult:
    """Train a GPT; under `torchrun` every process calls this and they train one model together.

    With `out_dir`, `checkpoint.pt` is written every `ckpt_interval` steps, at the end, and when
    Ctrl-C stops the run between two steps (then `Interrupted` says how to resume); `resume`
    continues it, refusing a checkpoint of another configuration.
    """
    validate(model_cfg, cfg, int(os.environ.get("WORLD_SIZE", "1")))
    with deferred_interrupt(enabled=int(os.environ.get("WORLD_SIZE", "1")) == 1) as stop:
        return _train(model_cfg, cfg, data, stop)


def _train(model_cfg: GPTConfig, cfg: TrainConfig, data: TokenData | None, interrupted) -> RunResult:
    rank, world, device, own_group = _setup_distributed(cfg.device)
    master = rank == 0
    data = data if data is not None else load_dataset_by_name(cfg.dataset, cfg.data_dir)
    if model_cfg.vocab_size is None:
        model_cfg = replace(model_cfg, vocab_size=data.vocab_size)
    if model_cfg.vocab_size < data.vocab_size:
        raise ConfigError(f"vocab_size {model_cfg.vocab_size} is smaller than the data's {data.vocab_size}")
    micro = cfg.batch_size // (world * cfg.grad_accum)
    micro_rows = [slice(j * micro, (j + 1) * micro) for j in range(rank * cfg.grad_accum, (rank + 1) * cfg.grad_accum)]
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
    model = GPT(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    start, history, monitor_rows = 0, [], []
    ckpt_path = Path(cfg.out_dir) / CHECKPOINT if cfg.out_dir else None
    if cfg.resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, device, keys=("model", "optimizer", "step", "history", "monitor_rows",
                                                        "model_config", "train_config"))
        check_same_config(ckpt_path, identity(ckpt["model_config"], ckpt["train_config"]), identity(model_cfg, cfg))
        if master:
            print(f"resuming {ckpt_path} at step {ckpt['step']} of {cfg.max_steps}", flush=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history, monitor_rows = ckpt["step"], ckpt["history"], ckpt["monitor_rows"]
    elif cfg.resume and master and ckpt_path is not None:
        print(f"no checkpoint in {cfg.out_dir}: starting the run", flush=True)
    monitor = None
    if master and cfg.monitor_interval:
        # AdamW groups have no K: the monitor then watches Lion's box, for comparison. After a
        # resume the phase-1 bound restarts from the resumed weights (still a valid bound).
        monitor = ConstraintMonitor(optimizer, model.named_parameters(), every=cfg.monitor_interval)
        monitor.rows = monitor_rows
    fwd = torch.compile(model) if (cuda if cfg.compile is None else cfg.compile) else model
    if world > 1:
        fwd = nn.parallel.DistributedDataParallel(fwd, device_ids=[device.index] if cuda else None)

    @torch.no_grad()
    def evaluate(n_batches: int) -> float:
        fwd.eval()
        total = torch.zeros((), device=device)
        for i in range(n_batches):
            for rows in micro_rows:
                x, y = get_batch(data.val, cfg.batch_size, model_cfg.block_size, np.random.default_rng([EVAL_SEED, i]), rows, device)
                with autocast:
                    total += fwd(x, y)[1].float()
        fwd.train()
        return _mean_over_ranks(total / (n_batches * len(micro_rows)), world).item()

    def checkpoint(step: int) -> None:
        if master and ckpt_path is not None:
            ckpt_path.parent.mkdir(parents=True, exist_ok=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                     "history": history, "model_config": asdict(model_cfg), "train_config": asdict(cfg),
                     "monitor_rows": [] if monitor is None else monitor.rows}
            save_checkpoint(ckpt_path, state)  # atomic: a crash never leaves half a file

    stop = cfg.max_steps if cfg.stop_at is None else min(cfg.stop_at, cfg.max_steps)
    tokens_per_step = cfg.batch_size * model_cfg.block_size
    seconds, timed_steps = 0.0, 0
    for step in tqdm(range(start, stop), disable=not (master and cfg.progress), desc=cfg.optimizer, initial=start, total=stop):
        if interrupted():  # Ctrl-C, between two steps: keep the work done (before this step's evaluation)
            checkpoint(step)
            raise Interrupted(f"interrupted at step {step} of {cfg.max_steps}: " + (
                f"{ckpt_path} saved; continue with --resume (resume=True)" if ckpt_path else "nothing saved (no out_dir)"))
        if ckpt_path is not None and cfg.ckpt_interval and step > start and step % cfg.ckpt_interval == 0:
            checkpoint(step)  # before the evaluation of this step, which a resume repeats
        if step % cfg.eval_interval == 0:
            history.append({"step": step, "val_loss": evaluate(cfg.eval_batches)})
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        loss_sum = torch.zeros((), device=device)
        for k, rows in enumerate(micro_rows):
            # every micro-step of every rank draws the same global batch and keeps its own rows
            x, y = get_batch(data.train, cfg.batch_size, model_cfg.block_size, np.random.default_rng([cfg.seed, step]), rows, device)
            last = k == len(micro_rows) - 1
            with (fwd.no_sync() if world > 1 and not last else nullcontext()), autocast:
                loss = fwd(x, y)[1] / len(micro_rows)
            loss.backward()  # DDP averages gradients over ranks on the last micro-step
            loss_sum += loss.detach()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if monitor is not None:
            monitor.record(step)  # every step (the bound multiplies per step); before zero_grad (KKT)
        optimizer.zero_grad(set_to_none=True)
        if step % cfg.log_interval == 0:
            history.append({"step": step, "lr": lr, "train_loss": _mean_over_ranks(loss_sum, world).item()})
        if cuda:
            torch.cuda.synchronize()
        if step > start:  # the first step pays for compilation and allocation
            seconds += time.perf_counter() - t0
            timed_steps += 1

    final = evaluate(cfg.final_eval_batches) if stop == cfg.max_steps else float("nan")
    if stop == cfg.max_steps:
        history.append({"step": stop, "val_loss": final})
    checkpoint(stop)
    result = RunResult(
        model_config=asdict(model_cfg), train_config=asdict(cfg), history=history, final_val_loss=final,
        tokens_per_s=timed_steps * tokens_per_step / seconds if seconds else float("nan"),
        train_seconds=seconds, num_params=model.num_params(), world_size=world,
        monitor=None if monitor is None else monitor.frame(), model=model, data=data,
    )
    if master and cfg.out_dir and stop == cfg.max_steps:  # a run stopped early (stop_at) has no result yet
        common.atomic_write_text(Path(cfg.out_dir) / RESULT, json.dumps(result.to_json(), indent=1) + "\n")
    if own_group:
        # The barrier first: rank 0's last writes overlap the others' teardown otherwise, and a rank
        # that tears down right after its last all_reduce can deadlock in ~ProcessGroupGloo (seen
        # under heavy load: a gloo thread freeing the all_reduce's tensors waits for the GIL that the
        # joining main thread holds).
        dist.barrier()
        dist.destroy_process_group()
    return result


def load_model(ckpt_path: str | os.PathLike, device: str = "auto") -> GPT:
    """The model of a checkpoint written by `train` (e.g. a `paper` run), for sampling: the run's
    folder or its checkpoint file (`ckpt.pt`, the earlier name, is read as `checkpoint.pt`)."""
    path = Path(ckpt_path)
    if path.is_dir() or (path.name == "ckpt.pt" and not path.exists()):
        path = (path if path.is_dir() else path.parent) / CHECKPOINT
    ckpt = load_checkpoint(path, "cpu", keys=("model", "model_config"))
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device))


@torch.no_grad()
def sample_text(model: GPT, data: TokenData, prompt: str = "\n", n_tokens: int = 300, seed: int = 0,
                temperature: float = 0.8, top_k: int | None = 200) -> str:
    """A reproducible text sample (nanoGPT's sample.py defaults)."""
    model.eval()
    device = next(model.parameters()).device
    idx = torch.tensor([data.encode(prompt)], dtype=torch.long, device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(idx, n_tokens, temperature=temperature, top_k=top_k, generator=g)
    return data.decode(out[0].tolist())


# -------------------------------------------------------------------------------------------------
# scales and command line


def preset(scale: str, optimizer: str = "lion") -> tuple[GPTConfig, TrainConfig]:
    """The three scales of the notebook.

    - `smoke`: a 2-layer toy for CI (seconds).
    - `cpu`: nanoGPT's CPU recipe for shakespeare_char (4 layers x 128 wide, block 64, batch 12,
      2000 steps, warmup 100, betas (0.9, 0.99), cosine to lr/10); AdamW keeps nanoGPT's lr 1e-3 and
      decay 0.1, Lion takes the usual 3-10x smaller lr and 3-10x larger decay (see the notebook).
    - `paper`: GPT-2 124M (HF `gpt2` shape: biases, vocabulary padded to 50304) on OpenWebText,
      the cosine-with-warmup settings of the authors' group for Lion (Optimizer-Zoo, an unconfirmed
      fallback: lr 1e-4, decay 0.1, 640 sequences of 1024 tokens per step, 100k steps, 2k warmup, down
      to 0); AdamW takes nanoGPT's GPT-2 lr 6e-4. `grad_accum=4` on 8 GPUs puts 20 sequences on each
      (sized for 80 GB GPUs; on 40 GB ones pass `--grad_accum 8`).
    """
    adamw = optimizer == "adamw"
    if scale == "smoke":
        return (GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32),
                TrainConfig(optimizer=optimizer, lr=6e-3 if adamw else 2e-3, weight_decay=0.1 if adamw else 1.0,
                            max_steps=150, warmup_steps=10, batch_size=8, eval_interval=50, eval_batches=4,
                            final_eval_batches=8, log_interval=5, monitor_interval=10, progress=False))
    if scale == "cpu":
        return (GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128),
                TrainConfig(optimizer=optimizer, lr=1e-3 if adamw else 3e-4, weight_decay=0.1 if adamw else 1.0))
    if scale == "paper":
        return (GPTConfig(block_size=1024, vocab_size=50304, n_layer=12, n_head=12, n_embd=768, bias=True),
                TrainConfig(dataset="openwebtext", optimizer=optimizer, lr=6e-4 if adamw else 1e-4, min_lr=0.0, weight_decay=0.1,
                            max_steps=100_000, warmup_steps=2000, batch_size=640, grad_accum=4,
                            eval_interval=1000, eval_batches=10, final_eval_batches=100, log_interval=10,
                            monitor_interval=500, ckpt_interval=5000))
    raise ValueError(f"unknown scale {scale!r}")


def main(argv: list[str] | None = None) -> RunResult:
    """`python -m lionlib.experiments.gpt [--scale cpu] [--optimizer lion] [--lr ...] ...`: every GPTConfig
    and TrainConfig field is a flag; the run writes result.json and checkpoint.pt to --out-dir."""
    ap = cli.Parser(prog="python -m lionlib.experiments.gpt", description=main.__doc__)
    cli.add_run_flags(ap, ("smoke", "cpu", "paper"))
    model_cpu, train_cpu = preset("cpu")
    cli.add_fields(ap, GPTConfig, model_cpu, title="model (the defaults shown are the cpu scale's)")
    cli.add_fields(ap, TrainConfig, train_cpu, skip=("resume",), title="training (the cpu scale's defaults)",
                   choices=dict(optimizer=OPTIMIZERS, dataset=("shakespeare_char", "openwebtext")))
    args = ap.parse_args(cli.kebab(sys.argv[1:] if argv is None else argv))
    master = int(os.environ.get("RANK", "0")) == 0
    with cli.one_line_errors(ap.prog, setup=True):  # bad values stop here, before any work
        cli.set_threads(args.threads)
        model_cfg, cfg = preset(args.scale, args.optimizer or "lion")
        model_cfg = replace(model_cfg, **cli.overrides(args, GPTConfig))
        cfg = replace(cfg, **cli.overrides(args, TrainConfig))
        validate(model_cfg, cfg, int(os.environ.get("WORLD_SIZE", "1")))
        if cfg.out_dir is None:
            digest = hashlib.sha256(json.dumps(identity(model_cfg, cfg), sort_keys=True).encode()).hexdigest()[:10]
            cfg = replace(cfg, out_dir=str(home.runs_dir() / "gpt" / f"{cfg.optimizer}-{digest}"))
        if master:  # the other processes find rank 0's files appearing
            claim_out_dir(cfg.out_dir, args.resume, args.force)
    with cli.one_line_errors(ap.prog):
        data = load_dataset_by_name(cfg.dataset, cfg.data_dir)  # missing data: one line here
        if master:
            print(f"run folder: {cfg.out_dir}", flush=True)
            cli.start_over(cfg.out_dir, args.force)
        result = train(model_cfg, cfg, data)
    if master:
        if math.isnan(result.final_val_loss):
            print(f"stopped at step {cfg.stop_at} of {cfg.max_steps}: continue with --resume")
        else:
            print(f"final val loss {result.final_val_loss:.4f}, {result.tokens_per_s:,.0f} tokens/s, "
                  f"{result.num_params / 1e6:.2f}M parameters")
    return result


if __name__ == "__main__":
    main()
