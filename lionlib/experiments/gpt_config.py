"""What a GPT run is: its training configuration, the optimizers and their param groups, the
learning-rate schedule, and the checks of a configuration before any work (`validate`).

The trainer (`lionlib.experiments.gpt`) imports everything here; `gpt.TrainConfig`, `gpt.param_groups`,
`gpt.make_optimizer`, `gpt.lr_at` and `gpt.validate` remain the names the notebooks use.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from lionlib.experiments import common
from lionlib.experiments.common import OPTIMIZERS, ConfigError
from lionlib.experiments.gpt_model import GPTConfig

__all__ = ["TrainConfig", "RUN_KEYS", "param_groups", "make_optimizer", "lr_at", "validate", "identity"]

# -------------------------------------------------------------------------------------------------
# training configuration, optimizers, schedule


@dataclass
class TrainConfig:
    dataset: str = "shakespeare_char"  # or "openwebtext" (GPT-2 BPE bins, see lionlib.experiments.gpt_data)
    data_dir: str | None = None  # None: $LIONLIB_DATA_DIR, else the repo's data/
    optimizer: str = "lion"  # lion, lion_lp (Lion-lp with `p`) or adamw
    p: float = 1.0  # the p of Lion-lp
    lr: float = 3e-4  # peak learning rate
    min_lr: float | None = None  # end of the cosine; None: lr / 10 (nanoGPT, Chinchilla)
    warmup_steps: int = 100  # linear warm-up to lr over these steps
    max_steps: int = 2000  # optimizer steps (the cosine ends here)
    weight_decay: float = 1.0  # lambda, on 2-D weights only
    beta1: float = 0.9  # momentum factors
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
    device: str = "auto"  # auto (cuda, mps, cpu) or a torch device such as cuda:1
    compile: bool | None = None  # torch.compile; None: on CUDA only
    out_dir: str | None = None  # checkpoint.pt + result.json; None: nothing on disk (command line: runs/gpt/<optimizer>-<hash>)
    ckpt_interval: int = 250  # also checkpoint every this many steps (0: only at the end and on Ctrl-C)
    resume: bool = False  # continue from out_dir/checkpoint.pt (same config only)
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
        return common.lp_groups(named, cfg.lr, cfg.weight_decay, cfg.p, decay=lambda name, p: p.dim() >= 2)
    return [  # (name, tensor) pairs: torch keeps the names as `param_names`, the monitor labels by them
        {"params": [(n, p) for n, p in named if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": [(n, p) for n, p in named if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
    ]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """`lion`, `lion_lp` or `adamw` (`lionlib.experiments.common.make_optimizer`) over `param_groups`."""
    return common.make_optimizer(param_groups(model, cfg), cfg.optimizer, cfg.lr, betas=(cfg.beta1, cfg.beta2), p=cfg.p)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr`, then a cosine down to `min_lr` at `max_steps` (nanoGPT's get_lr)."""
    min_lr = cfg.lr / 10 if cfg.min_lr is None else cfg.min_lr
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))) * (cfg.lr - min_lr)


# What may change between a checkpoint and its resume: how the run is executed, not what it computes.
RUN_KEYS = ("data_dir", "device", "compile", "out_dir", "ckpt_interval", "resume", "stop_at", "progress")


def validate(model_cfg: GPTConfig, cfg: TrainConfig, world: int = 1) -> None:
    """A ConfigError (one line) for a setting out of range, and the optimizer's own ValueError for a
    bad lr, betas or decay: raised before any work, so a bad run creates nothing."""
    ints = dict(n_layer=model_cfg.n_layer, n_head=model_cfg.n_head, n_embd=model_cfg.n_embd,
                block_size=model_cfg.block_size, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                grad_accum=cfg.grad_accum, eval_interval=cfg.eval_interval, eval_batches=cfg.eval_batches,
                final_eval_batches=cfg.final_eval_batches, log_interval=cfg.log_interval)
    bad = [f"{k} {v!r} (want an integer >= 1)" for k, v in ints.items() if not (isinstance(v, int) and v >= 1)]
    bad += [f"{k} {v!r} (want an integer >= 0)" for k, v in dict(warmup_steps=cfg.warmup_steps,
            ckpt_interval=cfg.ckpt_interval, monitor_interval=cfg.monitor_interval).items() if not v >= 0]
    if cfg.stop_at is not None and cfg.stop_at < 1:
        bad.append(f"stop_at {cfg.stop_at} (want >= 1)")
    if not bad and model_cfg.n_embd % model_cfg.n_head:
        bad.append(f"n_head {model_cfg.n_head} does not divide n_embd {model_cfg.n_embd}")
    if not bad and cfg.batch_size % (world * cfg.grad_accum):
        bad.append(f"batch_size {cfg.batch_size} does not split evenly over {world} process(es) x grad_accum "
                   f"{cfg.grad_accum}")
    if not 0 <= model_cfg.dropout < 1 or cfg.grad_clip < 0:
        bad.append(f"dropout {model_cfg.dropout} (want [0, 1)) or grad_clip {cfg.grad_clip} (want >= 0)")
    if cfg.dataset not in ("shakespeare_char", "openwebtext"):
        bad.append(f"dataset {cfg.dataset!r} (choose shakespeare_char or openwebtext)")
    if cfg.optimizer not in OPTIMIZERS:
        bad.append(f"optimizer {cfg.optimizer!r} (choose one of {', '.join(OPTIMIZERS)})")
    if bad:
        raise ConfigError("bad setting: " + "; ".join(bad))
    make_optimizer(nn.Linear(2, 2), cfg)  # the optimizer checks lr, betas, weight_decay and p


def identity(model_cfg: GPTConfig | dict, cfg: TrainConfig | dict) -> dict:
    """The settings that determine a run's result (a resume must match them), as after a JSON round trip."""
    as_dict = lambda c: c if isinstance(c, dict) else asdict(c)  # noqa: E731
    return json.loads(json.dumps({k: v for k, v in {**as_dict(model_cfg), **as_dict(cfg)}.items() if k not in RUN_KEYS}))
