"""CIFAR-10 with Lion, Lion-lp and AdamW: an airbench-style loader, net and training loop.

Small on purpose (airbench, hlb-CIFAR10): the whole data set lives on the device as one uint8 tensor,
augmentation is a few batched tensor ops, the net is a three-block conv net with a fixed whitening
layer, and `train(config)` returns (and writes to `<run_dir>/result.json`) everything a figure needs,
so figures can be redrawn without training.

Data: `lionlib.experiments.cifar_data` (where CIFAR-10 is found, checked, decoded and cached).

Command line: `python -m lionlib.experiments.cifar --optimizer lion --lr 3e-4 --wd 1 --scale cpu`, and
`python -m lionlib.experiments.cifar --grid --scale cpu` for the lr/wd grid of `GRID` (see `grid`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lionlib.experiments.cifar_data import MEAN, STD, augment, load_cifar10
from lionlib.experiments.common import REPO, resolve_device

__all__ = ["CifarNet", "Config", "SCALES", "ADAMW", "LION", "GRID", "config", "lp_groups", "make_optimizer",
           "evaluate", "train", "load_result", "run", "grid", "main"]

# ----------------------------------------------------------------------------------------------
# Network (airbench94's layout: fixed 2x2 whitening conv, three conv groups, max-pool head)


class BatchNorm(nn.BatchNorm2d):
    """BatchNorm with the scale frozen at 1 (only the shift learns), as in airbench."""

    def __init__(self, width: int):
        super().__init__(width, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


class ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding="same", bias=False), nn.MaxPool2d(2), BatchNorm(c_out), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding="same", bias=False), BatchNorm(c_out), nn.GELU(),
        )


class CifarNet(nn.Module):
    """32x32 -> whiten (2x2, 24 ch) -> 3 x ConvGroup (each halves the size) -> max-pool -> linear.

    The whitening filters are computed from training patches and frozen (airbench): they decorrelate
    the input so the first layer trains fast. Every conv is followed by BatchNorm, so conv weights are
    scale-invariant and only the head's scale matters for the logits (`head_scale`).
    """

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), head_scale: float = 1.0):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, bias=False)
        self.whiten.weight.requires_grad = False
        self.groups = nn.Sequential(ConvGroup(24, widths[0]), ConvGroup(widths[0], widths[1]),
                                    ConvGroup(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], 10, bias=False)
        self.head_scale = head_scale

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Filters = +-eigenvectors of the 2x2-patch covariance of `x` (normalised images), scaled to unit variance."""
        patches = x.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
        eigval, eigvec = torch.linalg.eigh(patches.T @ patches / len(patches))
        w = (eigvec.T / torch.sqrt(eigval[:, None] + eps)).flip(0).reshape(12, 3, 2, 2)
        self.whiten.weight.copy_(torch.cat([w, -w]).to(self.whiten.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(F.gelu(self.whiten(x)))
        x = F.adaptive_max_pool2d(x, 1).flatten(1)
        return self.head(x) * self.head_scale


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    optimizer: str = "lion"  # "lion", "lionk" (Lion-lp with `p`) or "adamw"
    lr: float = 3e-4  # peak learning rate (the paper's epsilon)
    wd: float = 1.0  # decoupled weight decay lambda, multiplied by lr: Lion's box is ||x||_inf <= 1/wd
    p: float = 1.0  # Lion-lp exponent (optimizer="lionk"); p = 1 is Lion
    betas: tuple[float, float] | None = None  # None: (0.9, 0.99) for Lion(-K), (0.9, 0.999) for AdamW
    epochs: int = 4
    batch_size: int = 256
    warmup: float = 0.1  # fraction of steps with a linear warm-up; then linear decay to 0
    label_smoothing: float = 0.2  # as in airbench
    widths: tuple[int, int, int] = (32, 64, 128)
    head_scale: float = 1.0  # airbench's 1/9 suits SGD at a large lr; Lion and Adam move a weight by ~lr per step
    train_per_class: int | None = 1000  # None: all 5,000 per class
    test_per_class: int | None = 500  # None: all 1,000 per class
    seed: int = 0
    device: str = "auto"
    data_dir: str | None = None  # see find_source; None: LIONLIB_DATA_DIR, data/, ../shared/data
    monitor: bool = False  # record lionlib.monitor.ConstraintMonitor (about 200 rows per tensor)
    run_dir: str | None = None  # None: runs/cifar10/<optimizer>-<hash of the config>
    resume: bool = True  # continue from run_dir/checkpoint.pt if it exists
    stop_after: int | None = None  # stop (with a checkpoint) after this many epochs: split long runs
    progress: bool = False  # tqdm bar over batches
    verbose: bool = True  # one summary line per epoch
    compile: bool = False  # torch.compile the model (CUDA only; worth it at the paper scale)


SCALES = {
    # CI: seconds. Learns a little (300 images); its job is to run every code path.
    "smoke": dict(epochs=4, batch_size=20, widths=(16, 32, 32), train_per_class=30, test_per_class=50),
    # `make reproduce` default: 10k training images, 5k test images, about 1.5 minutes per run on 2 cores.
    "cpu": dict(epochs=4, batch_size=256, widths=(32, 64, 128), train_per_class=1000, test_per_class=500),
    # One GPU: full data, airbench94 widths, bf16.
    "paper": dict(epochs=16, batch_size=1024, widths=(64, 256, 256), train_per_class=None, test_per_class=None,
                  compile=True),
}

# The tuning rule of the Lion paper: lr 3-10x smaller and wd 3-10x larger than AdamW, so lr*wd (the
# per-step decay) stays comparable. RULE is the factor used; Lion-lp uses Lion's values (see
# lp_groups for the per-tensor normalisation that makes that meaningful).
ADAMW = dict(lr=3e-3, wd=0.1)
RULE = 10
LION = dict(lr=ADAMW["lr"] / RULE, wd=ADAMW["wd"] * RULE)
# The grid both optimizers are tuned on (`python -m lionlib.experiments.cifar --grid`): multiples of their base values.
GRID = dict(lr=(1 / 3, 1, 3), wd=(1, 10))


def config(scale: str = "cpu", **overrides) -> Config:
    """The Config of a scale with overrides; lr and wd default to the optimizer's base values (ADAMW, LION)."""
    base = ADAMW if overrides.get("optimizer") == "adamw" else LION
    return Config(**{**base, **SCALES[scale], **overrides})


def _run_dir(cfg: Config) -> Path:
    if cfg.run_dir is not None:
        return Path(cfg.run_dir)
    h = hashlib.sha256(json.dumps(_identity(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return REPO / "runs" / "cifar10" / f"{cfg.optimizer}-{h}"


def _identity(cfg: Config | dict) -> dict:
    """The fields that determine the result (not how it is run or shown), as after a JSON round trip."""
    d = json.loads(json.dumps(asdict(cfg) if isinstance(cfg, Config) else cfg))
    for k in ("run_dir", "resume", "stop_after", "progress", "verbose", "device", "compile"):
        d.pop(k)
    return d


# ----------------------------------------------------------------------------------------------
# Optimizers


def lp_groups(model: nn.Module, lr: float, wd: float, p: float) -> list[dict]:
    """One param group per tensor for Lion-lp, scaled by `lionlib.optim.lp_scale` so every p takes
    steps of Lion's size and keeps Lion's lr * wd."""
    from lionlib.optim import lp_scale

    groups = []
    for name, prm in model.named_parameters():
        if prm.requires_grad:
            s = lp_scale(prm.numel(), p)
            groups.append(dict(params=[prm], lr=lr * s, weight_decay=wd / s, name=name))
    return groups


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    trainable = [prm for prm in model.parameters() if prm.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(trainable, lr=cfg.lr, betas=cfg.betas or (0.9, 0.999), weight_decay=cfg.wd)
    from lionlib.kappa import get as get_kappa
    from lionlib.optim import Lion, LionK

    betas = cfg.betas or (0.9, 0.99)
    if cfg.optimizer == "lion":
        return Lion(trainable, lr=cfg.lr, betas=betas, weight_decay=cfg.wd)
    if cfg.optimizer == "lionk":
        return LionK(lp_groups(model, cfg.lr, cfg.wd, cfg.p), kappa=get_kappa("lp", p=cfg.p), betas=betas)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up over the first `warmup` fraction of the steps, then linear decay to 0."""
    w = max(1, round(warmup * total))
    return (step + 1) / w if step < w else max(0.0, (total - step) / (total - w))


# ----------------------------------------------------------------------------------------------
# Training


def _normalise(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return ((x.float() / 255 - mean) / std).to(dtype)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype, bs: int = 2000) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on uint8 images x, in eval mode (BatchNorm running statistics)."""
    model.eval()
    loss = correct = 0.0
    for i in range(0, len(x), bs):
        out = model(_normalise(x[i:i + bs], dtype).contiguous(memory_format=_memory_format(x.device))).float()
        loss += F.cross_entropy(out, y[i:i + bs], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + bs]).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def _memory_format(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def train(cfg: Config, data: dict | None = None) -> dict:
    """Train CifarNet with `cfg`; return the result dict, also written to `<run_dir>/result.json`.

    Deterministic on CPU for a given seed: initialisation from `seed`, and every epoch's shuffle and
    augmentation from a generator seeded with (seed, epoch). A checkpoint is written after every
    epoch; with `resume` a run continues from it and ends bit-identical to an uninterrupted run.
    `data` (from `load_cifar10`) can be passed to share one decoded set between runs.
    """

    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32  # inputs; weights stay fp32 under autocast
    fmt = _memory_format(device)
    run_dir = _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = load_cifar10(cfg.data_dir, cfg.train_per_class, cfg.test_per_class)
    train_x, train_y = (t.to(device) for t in data["train"])
    test_x, test_y = (t.to(device) for t in data["test"])

    torch.manual_seed(cfg.seed)
    model = CifarNet(cfg.widths, cfg.head_scale)
    model.init_whitening(_normalise(train_x[:5000], torch.float32).cpu())
    model = model.to(device, memory_format=fmt)
    opt = make_optimizer(model, cfg)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    fwd = torch.compile(model) if cfg.compile and cuda else model
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    mon = None
    if cfg.monitor:  # under AdamW it watches Lion's box (l1 geometry), without a phase-1 bound
        from lionlib.monitor import ConstraintMonitor

        mon = ConstraintMonitor(opt, model.named_parameters(), every=max(1, total // 200))
    result = dict(config=asdict(cfg), dataset=data["label"], data_sha256=data["sha256"], n_train=len(train_x),
                  n_test=len(test_x), params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                  device=str(device), torch=torch.__version__, history=[], losses=[], monitor=None)
    start, elapsed = 0, 0.0
    ckpt = run_dir / "checkpoint.pt"
    if cfg.resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["identity"] != _identity(cfg):
            raise ValueError(f"{ckpt} was written by a different config; use another run_dir or resume=False")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if mon is not None:
            mon.load_state_dict(state["monitor"])
        start, elapsed = state["epoch"], state["elapsed"]
        result["history"], result["losses"] = state["history"], state["losses"]

    from tqdm import tqdm  # the plain bar: the widget one needs ipywidgets in notebooks

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_x), generator=gen).to(device)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", disable=not cfg.progress, leave=False)
        for i in bar:
            step = epoch * steps_per_epoch + i
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * lr_factor(step, total, cfg.warmup)
            idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = augment(train_x[idx], gen)
            x = _normalise(x, dtype).contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(fwd(x).float(), train_y[idx], label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if mon is not None:
                mon.record(step)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        elapsed += time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, test_x, test_y, dtype)
        result["losses"] += losses
        result["history"].append(dict(epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch,
                                      train_loss=float(np.mean(losses)), test_loss=test_loss,
                                      test_acc=test_acc, time=elapsed))
        if cfg.verbose:
            print(f"{cfg.optimizer} epoch {epoch + 1}/{cfg.epochs}  train_loss {np.mean(losses):.4f}  "
                  f"test_loss {test_loss:.4f}  test_acc {test_acc:.4f}  time {elapsed:.1f}s")
        state = dict(epoch=epoch + 1, elapsed=elapsed, identity=_identity(cfg), model=model.state_dict(),
                     optimizer=opt.state_dict(), history=result["history"], losses=result["losses"],
                     monitor=None if mon is None else mon.state_dict())
        torch.save(state, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)  # atomic: an interrupted save keeps the last checkpoint
        if cfg.stop_after is not None and epoch + 1 - start >= cfg.stop_after and epoch + 1 < cfg.epochs:
            result["stopped"] = True
            return result

    last = result["history"][-1]
    # The 1-minute load average: wall times on a shared machine mean little without it.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result.update(final_test_acc=last["test_acc"], final_test_loss=last["test_loss"], time=elapsed, load=load)
    if mon is not None:
        result["monitor"] = mon.frame().to_dict(orient="list")
    (run_dir / "result.json").write_text(json.dumps(result, indent=1))
    result["model"] = model
    return result


def load_result(run_dir: str | Path) -> dict:
    """A finished run's result.json (to redraw figures without training)."""
    return json.loads((Path(run_dir) / "result.json").read_text())


def run(cfg: Config, data: dict | None = None, reuse: bool = False) -> dict:
    """`train(cfg)`, or with `reuse` the stored result of a finished run with the same config."""
    path = _run_dir(cfg) / "result.json"
    if reuse and path.is_file():
        res = json.loads(path.read_text())
        if _identity(res["config"]) == _identity(cfg):
            return res
    return train(cfg, data)


# ----------------------------------------------------------------------------------------------
# The tuning grid and the command line


def grid(scale: str = "cpu", seed: int = 0, **overrides) -> list[dict]:
    """Lion and AdamW on the same grid: base lr x GRID["lr"], base wd x GRID["wd"] (base: ADAMW, LION)."""
    rows, data = [], None
    for b in GRID["wd"]:  # the base wd first: an interrupted grid still has the lr scan of both
        for name, base in (("lion", LION), ("adamw", ADAMW)):
            for a in GRID["lr"]:
                cfg = config(scale, optimizer=name, lr=base["lr"] * a, wd=base["wd"] * b, seed=seed, **overrides)
                data = data or load_cifar10(cfg.data_dir, cfg.train_per_class, cfg.test_per_class)
                res = run(cfg, data, reuse=True)  # finished runs are read back: the grid can be resumed
                rows.append(dict(optimizer=name, lr=cfg.lr, wd=cfg.wd, test_acc=res["final_test_acc"], time=res["time"]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="cpu", choices=SCALES)
    ap.add_argument("--grid", action="store_true", help="tune Lion and AdamW on GRID; print and save a table")
    ap.add_argument("--optimizer", default="lion", choices=("lion", "lionk", "adamw"))
    ap.add_argument("--lr", type=float)
    ap.add_argument("--wd", type=float)
    ap.add_argument("--p", type=float, default=1.0)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-dir")
    ap.add_argument("--run-dir")
    ap.add_argument("--monitor", action="store_true")
    ap.add_argument("--threads", type=int, help="torch threads (1 is faster on a shared, oversubscribed CPU)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    over = {k: v for k, v in dict(epochs=args.epochs, device=args.device, data_dir=args.data_dir).items() if v is not None}
    if args.grid:
        rows = grid(args.scale, args.seed, **over)
        out = REPO / "runs" / "cifar10" / f"grid-{args.scale}-seed{args.seed}.json"
        out.write_text(json.dumps(dict(grid=GRID, adamw=ADAMW, lion=LION, rows=rows), indent=1))
        for name in ("lion", "adamw"):
            best = max((r for r in rows if r["optimizer"] == name), key=lambda r: r["test_acc"])
            print(f"best {name}: lr {best['lr']:.3g} wd {best['wd']:.3g} test_acc {best['test_acc']:.4f}")
        return
    over.update({k: v for k, v in dict(lr=args.lr, wd=args.wd, run_dir=args.run_dir).items() if v is not None})
    cfg = config(args.scale, optimizer=args.optimizer, p=args.p, seed=args.seed, monitor=args.monitor,
                 progress=True, **over)
    res = train(cfg)
    print(f"{res['dataset']}: test accuracy {res['final_test_acc']:.4f} in {res['time']:.1f}s ({res['device']})")


if __name__ == "__main__":
    main()
