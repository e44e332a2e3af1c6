"""What every trainer shares, written once: the runtime (device, precision, `torch.compile`, DDP
under `torchrun`), the one optimizer factory, the learning-rate schedules, evaluation of a
classifier, and the progress bar.

The trainers (`cifar_train`, `gpt.train`, `distributed_train`) run the same code on CPU and CUDA;
the runtime's flags choose bf16 autocast, `torch.compile` and DDP, and are recorded in the run
record's `env`.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lionlib.experiments.common import ConfigError, ExperimentError, bench_results_dir, resolve_device

__all__ = ["Runtime", "runtime", "check_device", "make_optimizers", "lr_factor", "normalise", "evaluate_classifier",
           "progress", "base_lr_lambda"]

MEAN = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train statistics, for input normalisation
STD = (0.2470, 0.2435, 0.2616)


def check_device(device: str) -> torch.device:
    """The device, or one line saying why it cannot be used (`--device cuda` on a CPU-only torch)."""
    try:
        dev = resolve_device(device)
    except RuntimeError as e:
        raise ConfigError(f"--device {device}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this torch has no CUDA device (torch {torch.__version__}, "
                          f"cuda {torch.version.cuda}): use --device cpu, or install a CUDA build of torch")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


@dataclass
class Runtime:
    """How a run executes: device, precision ("fp32" | "bf16" autocast), compile, DDP rank/world."""

    device: torch.device
    precision: str
    compile: bool
    rank: int = 0
    world: int = 1
    own_group: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the training step calls it: compiled and/or wrapped in DDP as asked."""
        fwd = torch.compile(model) if self.compile else model
        if self.world > 1:
            fwd = nn.parallel.DistributedDataParallel(fwd, device_ids=[self.device.index] if self.device.type == "cuda"
                                                      else None)
        return fwd

    def close(self) -> None:
        if self.own_group:
            import torch.distributed as dist

            dist.barrier()  # rank 0's last writes first; see gpt.train for the gloo teardown race
            dist.destroy_process_group()


def runtime(device: str, precision: str, compile: bool | None = None, ddp: bool = False) -> Runtime:
    """The runtime for `device`; with `ddp`, the rank and world size from torchrun's environment
    (NCCL on CUDA, gloo on CPU). `compile` None: on CUDA only."""
    dev = check_device(device)
    comp = dev.type == "cuda" if compile is None else bool(compile)
    world = int(os.environ.get("WORLD_SIZE", "1")) if ddp else 1
    if world == 1:
        return Runtime(dev, precision, comp)
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(dev)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Runtime(dev, precision, comp, dist.get_rank(), world, started)


# --------------------------------------------------------------------------------------------------
# The optimizer factory


def make_optimizers(named, optimizer: str, lr: float, weight_decay: float, betas, p: float | None = None, *,
                    decay=lambda name, prm: prm.dim() >= 2, muon_exact: bool = True, aux_lr: float = 1e-3
                    ) -> list[torch.optim.Optimizer]:
    """The optimizers of a run over `named` (name, tensor) pairs: `lion`, `lion_lp` (Lion-K with K =
    the lp norm, one group per tensor scaled by `lionlib.optim.lp_scale`, so every p takes Lion-sized
    steps with Lion's lr * lambda), `adamw`, or `muon` (the 2-D tensors; the others by AdamW at
    `aux_lr` without decay, a second optimizer). Decay applies where `decay(name, tensor)` (default:
    tensors with >= 2 dims); every group keeps `lr_scale`, the factor of its lr over the schedule's."""
    from lionlib.kappa import get as get_kappa
    from lionlib.muon import Muon
    from lionlib.optim import Lion, LionK, lp_scale

    named = [(n, q) for n, q in named if q.requires_grad]
    mats = [(n, q) for n, q in named if decay(n, q)]
    rest = [(n, q) for n, q in named if not decay(n, q)]
    groups = [dict(params=mats, weight_decay=weight_decay, lr_scale=1.0), dict(params=rest, weight_decay=0.0, lr_scale=1.0)]
    groups = [g for g in groups if g["params"]]
    betas = tuple(betas)
    if optimizer == "adamw":
        return [torch.optim.AdamW(groups, lr=lr, betas=betas)]
    if optimizer == "lion":
        return [Lion(groups, lr=lr, betas=betas)]
    if optimizer == "lion_lp":
        per = []
        for n, q in named:
            s = lp_scale(q.numel(), p)
            per.append(dict(params=[(n, q)], lr=lr * s, weight_decay=weight_decay / s if decay(n, q) else 0.0, lr_scale=s))
        return [LionK(per, kappa=get_kappa("lp", p=p), lr=lr, betas=betas)]
    if optimizer == "muon":
        for n, q in mats:
            if q.dim() != 2:
                raise ConfigError(f"Muon needs 2-D weights; {n} has shape {tuple(q.shape)}")
        opts = [Muon([dict(params=mats, lr_scale=1.0)], lr=lr, weight_decay=weight_decay, momentum=betas[0],
                     exact_svd=muon_exact)]
        if rest:
            opts.append(torch.optim.AdamW([dict(params=rest, lr_scale=aux_lr / lr)], lr=aux_lr, weight_decay=0.0))
        return opts
    raise ConfigError(f"unknown optimizer {optimizer!r}: choose lion, lion_lp, adamw or muon")


def base_lr_lambda(spec, factor: float) -> float:
    """lr_t * lambda of the spec's decayed tensors at schedule factor `factor` (the same for every
    Lion-lp tensor: its lr is multiplied and its decay divided by the same scale)."""
    return spec.lr * factor * spec.weight_decay


def lr_factor(schedule: str, step: int, steps: int, warmup: int, min_ratio: float = 0.0) -> float:
    """The schedule's multiplier of the peak lr at step `step` (0-based): linear warm-up over `warmup`
    steps, then constant, linear decay to 0, or a cosine to `min_ratio` at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    frac = min(1.0, (step - warmup) / max(1, steps - warmup))
    if schedule == "linear":
        return max(0.0, 1.0 - frac)
    return min_ratio + 0.5 * (1 + math.cos(math.pi * frac)) * (1 - min_ratio)


# --------------------------------------------------------------------------------------------------
# Evaluation and progress


def normalise(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32, normalised by the CIFAR-10 channel statistics."""
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x.float() / 255 - mean) / std


@torch.no_grad()
def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
                        rt: Runtime | None = None, channels_last: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `model` on uint8 images `x`, in eval mode: batch norm uses its
    running statistics, so the result does not depend on how the images are ordered or batched."""
    was = model.training
    model.eval()
    loss = correct = 0.0
    ctx = rt.autocast if rt is not None else nullcontext
    for i in range(0, len(x), batch_size):
        xb = normalise(x[i:i + batch_size])
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with ctx():
            out = model(xb).float()
        loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was)
    return loss / len(x), correct / len(x)


def progress(total: int, initial: int = 0, desc: str = "", enabled: bool = True):
    """A tqdm bar over training steps: a widget in a notebook, a text bar on the console."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False, mininterval=1.0)


def interrupted_message(step: int, steps: int, ckpt) -> str:
    if ckpt is None:
        return f"interrupted at step {step} of {steps}: nothing saved (no out_dir)"
    return f"interrupted at step {step} of {steps}: {ckpt} saved; continue with --resume (resume=True)"


def bench_file() -> str:
    """The name `benchmarks/bench_train.py` gives this machine's results: train-<cpu model>-<cores>c.json."""
    import re

    from lionlib.experiments.record import cpu_model

    return "train-" + re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-") + f"-{os.cpu_count()}c.json"


def measured_precision(model: str, device: str = "cpu") -> str:
    """The precision to give a spec of `model` on this machine, as measured: bf16 autocast on CUDA; on
    the CPU the faster of fp32 and bf16 in this machine's `bench_train.py` results (its `choice`),
    fp32 where the machine was not measured. The choice is a spec key, so every record says it."""
    import json

    if str(device).startswith("cuda"):
        return "bf16"
    path = bench_results_dir() / bench_file()
    try:
        return json.loads(path.read_text())["summary"]["choice"].get(model, "fp32")
    except (OSError, ValueError, KeyError):
        return "fp32"


__all__ += ["interrupted_message", "ExperimentError", "bench_file", "measured_precision"]
