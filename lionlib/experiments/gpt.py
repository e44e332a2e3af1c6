"""A nanoGPT-style decoder and its trainer, for the paper's GPT-2 / Lion-lp experiments.

The model (`lionlib.experiments.gpt_model`) is nanoGPT's `model.py` cut to what the experiments use.
The trainer here is nanoGPT's `train.py` as a function: cosine schedule with linear warmup, gradient clipping, gradient
accumulation, bf16 autocast and `torch.compile` on CUDA only, periodic validation, checkpoint and
resume, and data parallelism through `torchrun` (NCCL on GPUs, gloo on CPU).

Runs are reproducible by construction: the batch of step t is drawn from a generator seeded with
(seed, t), so a resumed run and a run split over several processes see exactly the same global
batches as one uninterrupted single-process run (the tests check both).

Command line (the `paper` scale needs `prepare_openwebtext` first, see `lionlib.experiments.gpt_data`):

    python -m lionlib.experiments.gpt --scale cpu --optimizer lion --out_dir runs/gpt/lion
    torchrun --standalone --nproc_per_node 8 -m lionlib.experiments.gpt --scale paper --optimizer lion_lp --p 1.5 \
        --out_dir runs/gpt/paper/lion_lp1.5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from lionlib import kappa
from lionlib.experiments.gpt_data import TokenData, get_batch, load_dataset_by_name
from lionlib.experiments.gpt_model import GPT, GPTConfig
from lionlib.monitor import ConstraintMonitor
from lionlib.optim import Lion, LionK, lp_scale
from lionlib.experiments.common import resolve_device

__all__ = ["TrainConfig", "RunResult", "param_groups", "make_optimizer", "lr_at", "train", "load_model", "sample_text", "preset", "main"]

# -------------------------------------------------------------------------------------------------
# training configuration, optimizers, schedule


@dataclass
class TrainConfig:
    dataset: str = "shakespeare_char"  # or "openwebtext" (GPT-2 BPE bins, see lionlib.experiments.gpt_data)
    data_dir: str | None = None  # None: $LIONLIB_DATA_DIR, else the repo's data/
    optimizer: str = "lion"  # "lion" | "lion_lp" | "adamw"
    p: float = 1.0  # the p of Lion-lp
    lr: float = 3e-4  # peak learning rate
    min_lr: float | None = None  # end of the cosine; None: lr / 10 (nanoGPT, Chinchilla)
    warmup_steps: int = 100
    max_steps: int = 2000
    weight_decay: float = 1.0  # lambda, on 2-D weights only
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    batch_size: int = 12  # global sequences per optimizer step, over all processes
    grad_accum: int = 1  # micro-steps per optimizer step (per process)
    eval_interval: int = 250
    eval_batches: int = 20  # validation batches at each periodic evaluation
    final_eval_batches: int = 200  # and at the end (the reported validation loss)
    log_interval: int = 10  # record the training loss every this many steps
    monitor_interval: int = 50  # ConstraintMonitor keeps a row every this many steps; 0: off
    seed: int = 0  # model init and batch order
    device: str = "auto"
    compile: bool | None = None  # torch.compile; None: on CUDA only
    out_dir: str | None = None  # checkpoint + result.json; None: keep nothing on disk
    ckpt_interval: int = 0  # also checkpoint every this many steps (0: only at the end)
    resume: bool = False  # continue from out_dir/ckpt.pt
    stop_at: int | None = None  # stop (and checkpoint) before max_steps, e.g. to test resuming
    progress: bool = True  # tqdm bar


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Weight decay on 2-D tensors (matmul weights and embeddings) only, as nanoGPT does: LayerNorm
    gains and biases are not decayed, so Lion's box constraint ||x||_inf <= 1/lambda applies to the
    2-D tensors only.

    Lion-lp gets one group per tensor, its learning rate scaled by s = `lionlib.optim.lp_scale`
    and its decay divided by s, so every p takes steps of Lion's size with Lion's lr * wd. The group
    keeps `lr_scale` for the schedule.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if cfg.optimizer == "lion_lp":
        groups = []
        for name, p in named:
            s = lp_scale(p.numel(), cfg.p)
            wd = cfg.weight_decay / s if p.dim() >= 2 else 0.0
            groups.append({"params": [(name, p)], "weight_decay": wd, "lr_scale": s})
        return groups
    return [  # (name, tensor) pairs: torch keeps the names as `param_names`, the monitor labels by them
        {"params": [(n, p) for n, p in named if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": [(n, p) for n, p in named if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg)
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "lion":
        return Lion(groups, lr=cfg.lr, betas=betas)
    if cfg.optimizer == "lion_lp":
        return LionK(groups, kappa=kappa.get("lp", p=cfg.p), lr=cfg.lr, betas=betas)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr`, then a cosine down to `min_lr` at `max_steps` (nanoGPT's get_lr)."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * (cfg.lr - min_lr)


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
        import pandas as pd

        d = json.loads(Path(path).read_text())
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
    """Train a GPT; under `torchrun` every process calls this and they train one model together."""
    rank, world, device, own_group = _setup_distributed(cfg.device)
    master = rank == 0
    data = data if data is not None else load_dataset_by_name(cfg.dataset, cfg.data_dir)
    if model_cfg.vocab_size is None:
        model_cfg = replace(model_cfg, vocab_size=data.vocab_size)
    assert model_cfg.vocab_size >= data.vocab_size, "the model's vocabulary is smaller than the data's"
    micro = cfg.batch_size // (world * cfg.grad_accum)
    assert micro * world * cfg.grad_accum == cfg.batch_size, "batch_size must split evenly over processes and micro-steps"
    micro_rows = [slice(j * micro, (j + 1) * micro) for j in range(rank * cfg.grad_accum, (rank + 1) * cfg.grad_accum)]
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    torch.manual_seed(cfg.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
    model = GPT(model_cfg).to(device)
    optimizer = make_optimizer(model, cfg)
    start, history, monitor_rows = 0, [], []
    ckpt_path = Path(cfg.out_dir) / "ckpt.pt" if cfg.out_dir else None
    if cfg.resume and ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start, history, monitor_rows = ckpt["step"], ckpt["history"], ckpt["monitor_rows"]
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
            torch.save(state, ckpt_path.with_suffix(".part"))
            ckpt_path.with_suffix(".part").replace(ckpt_path)  # atomic: a crash never leaves half a file

    stop = cfg.max_steps if cfg.stop_at is None else min(cfg.stop_at, cfg.max_steps)
    tokens_per_step = cfg.batch_size * model_cfg.block_size
    seconds, timed_steps = 0.0, 0
    for step in tqdm(range(start, stop), disable=not (master and cfg.progress), desc=cfg.optimizer, initial=start, total=stop):
        if step % cfg.eval_interval == 0:
            history.append({"step": step, "val_loss": evaluate(cfg.eval_batches)})
        if ckpt_path is not None and cfg.ckpt_interval and step > start and step % cfg.ckpt_interval == 0:
            checkpoint(step)
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
    if master and cfg.out_dir:
        (Path(cfg.out_dir) / "result.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    if own_group:
        dist.destroy_process_group()
    return result


def load_model(ckpt_path: str | os.PathLike, device: str = "auto") -> GPT:
    """The model of a checkpoint written by `train` (e.g. a `paper` run), for sampling."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
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


def _parse_value(text: str, default):
    if text.lower() == "none":
        return None
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _overrides(args: dict, obj) -> dict:
    return {f.name: _parse_value(args[f.name], getattr(obj, f.name)) for f in fields(obj) if args[f.name] is not None}


def main(argv: list[str] | None = None) -> RunResult:
    """`python -m lionlib.experiments.gpt --scale cpu --optimizer lion --lr 3e-4 ...`: any GPTConfig or
    TrainConfig field can be overridden; the result goes to `--out_dir` (result.json, ckpt.pt)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--scale", default="cpu", choices=["smoke", "cpu", "paper"])
    for f in fields(GPTConfig) + fields(TrainConfig):
        parser.add_argument(f"--{f.name}", type=str, default=None)
    args = vars(parser.parse_args(argv))
    model_cfg, cfg = preset(args.pop("scale"), args["optimizer"] or "lion")
    model_cfg = replace(model_cfg, **_overrides(args, model_cfg))
    cfg = replace(cfg, **_overrides(args, cfg))
    result = train(model_cfg, cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"final val loss {result.final_val_loss:.4f}, {result.tokens_per_s:,.0f} tokens/s, "
              f"{result.num_params / 1e6:.2f}M parameters")
    return result


if __name__ == "__main__":
    main()
