"""CIFAR-10 with Lion, Lion-lp and AdamW: an airbench-style loader, net and training loop.

Small on purpose (airbench, hlb-CIFAR10): the whole data set lives on the device as one uint8 tensor,
augmentation is a few batched tensor ops, the net is a three-block conv net with a fixed whitening
layer, and `train(config)` returns (and writes to `<out_dir>/result.json`) everything a figure needs,
so figures can be redrawn without training. `<out_dir>/checkpoint.pt` is written after every epoch
(see `lionlib.experiments.checkpoint` for the rules on resuming and overwriting).

Data: `lionlib.experiments.cifar_data` (where CIFAR-10 is found, checked, decoded and cached).

Command line (`--help` lists every flag): `python -m lionlib.experiments.cifar --optimizer lion --lr 3e-4
--weight-decay 1 --scale cpu`, and `python -m lionlib.experiments.cifar --grid --scale cpu` for the lr/wd
grid of `GRID` (see `grid`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import InitVar, asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lionlib.experiments import cli, common, home
from lionlib.experiments.checkpoint import (CHECKPOINT, RESULT, Interrupted, check_same_config, claim_out_dir,
                                            deferred_interrupt, load_checkpoint, save_checkpoint)
from lionlib.experiments.cifar_data import MEAN, STD, augment, load_cifar10
from lionlib.experiments.cifar_model import CifarNet  # here too: `cifar.CifarNet` is the name notebooks use
from lionlib.experiments.common import OPTIMIZERS, ConfigError, resolve_device

__all__ = ["CifarNet", "Config", "SCALES", "ADAMW", "LION", "GRID", "config", "validate", "lp_groups",
           "make_optimizer", "evaluate", "train", "load_result", "run", "grid", "main"]

# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    optimizer: str = "lion"  # lion, lion_lp (Lion-lp with `p`) or adamw
    lr: float = 3e-4  # peak learning rate (the paper's epsilon)
    weight_decay: float = 1.0  # decoupled decay lambda, multiplied by lr: Lion's box is ||x||_inf <= 1/lambda
    p: float = 1.0  # Lion-lp exponent (optimizer lion_lp); p = 1 is Lion
    betas: tuple[float, float] | None = None  # momentum factors beta1 beta2; None: (0.9, 0.99) for Lion(-K), (0.9, 0.999) for AdamW
    epochs: int = 4  # passes over the training images
    batch_size: int = 256  # images per step
    warmup: float = 0.1  # fraction of steps with a linear warm-up; then linear decay to 0
    label_smoothing: float = 0.2  # as in airbench
    widths: tuple[int, int, int] = (32, 64, 128)  # channels of the three conv groups
    head_scale: float = 1.0  # airbench's 1/9 suits SGD at a large lr; Lion and Adam move a weight by ~lr per step
    train_per_class: int | None = 1000  # None: all 5,000 per class
    test_per_class: int | None = 500  # None: all 1,000 per class
    seed: int = 0  # initialisation, shuffling and augmentation
    device: str = "auto"  # auto (cuda, mps, cpu) or a torch device such as cuda:1
    data_dir: str | None = None  # see find_source; None: LIONLIB_DATA_DIR, data/, ../shared/data
    monitor: bool = False  # record lionlib.monitor.ConstraintMonitor (about 200 rows per tensor)
    out_dir: str | None = None  # None: runs/cifar10/<optimizer>-<hash of the config>
    resume: bool = False  # continue from out_dir/checkpoint.pt if it exists (same config only)
    stop_at: int | None = None  # stop (with a checkpoint) after this epoch: split long runs
    progress: bool = False  # tqdm bar over batches
    verbose: bool = True  # one summary line per epoch
    compile: bool = False  # torch.compile the model (CUDA only; worth it at the paper scale)
    wd: InitVar[float | None] = None  # the earlier names of weight_decay and out_dir, still accepted
    run_dir: InitVar[str | None] = None

    def __post_init__(self, wd, run_dir):
        self.weight_decay = self.weight_decay if wd is None else wd
        self.out_dir = self.out_dir if run_dir is None else run_dir
        self.optimizer = common.LEGACY_OPTIMIZERS.get(self.optimizer, self.optimizer)


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
ADAMW = dict(lr=3e-3, weight_decay=0.1)
RULE = 10
LION = dict(lr=ADAMW["lr"] / RULE, weight_decay=ADAMW["weight_decay"] * RULE)
# The grid both optimizers are tuned on (`python -m lionlib.experiments.cifar --grid`): multiples of their base values.
GRID = dict(lr=(1 / 3, 1, 3), wd=(1, 10))


def config(scale: str = "cpu", **overrides) -> Config:
    """The Config of a scale with overrides; lr and weight_decay default to the optimizer's base values
    (ADAMW, LION)."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}: choose one of {', '.join(SCALES)}")
    base = ADAMW if overrides.get("optimizer") == "adamw" else LION
    return Config(**{**base, **SCALES[scale], **overrides})


def validate(cfg: Config) -> None:
    """A ConfigError (one line) for a setting out of range, and the optimizer's own ValueError for a
    bad lr, betas or decay: raised before any work, so a bad run creates nothing."""
    bad = [f"{k} {v!r} (want an integer >= 1)" for k, v in dict(epochs=cfg.epochs, batch_size=cfg.batch_size,
           train_per_class=cfg.train_per_class, test_per_class=cfg.test_per_class, stop_at=cfg.stop_at).items()
           if not (v is None and k not in ("epochs", "batch_size") or isinstance(v, int) and v >= 1)]
    bad += [f"widths {cfg.widths!r} (want three integers >= 1)" for w in [cfg.widths]
            if len(w) != 3 or not all(isinstance(x, int) and x >= 1 for x in w)]
    bad += [f"{k} {v!r} (want 0 <= {k} < 1)" for k, v in dict(warmup=cfg.warmup, label_smoothing=cfg.label_smoothing)
            .items() if not 0 <= v < 1]
    if cfg.optimizer not in OPTIMIZERS:
        bad.append(f"optimizer {cfg.optimizer!r} (choose one of {', '.join(OPTIMIZERS)})")
    if bad:
        raise ConfigError("bad setting: " + "; ".join(bad))
    make_optimizer(torch.nn.Linear(2, 2), cfg)  # the optimizer checks lr, betas, weight_decay and p


def _run_dir(cfg: Config) -> Path:
    if cfg.out_dir is not None:
        return Path(cfg.out_dir)
    h = hashlib.sha256(json.dumps(_identity(cfg), sort_keys=True).encode()).hexdigest()[:10]
    return home.runs_dir() / "cifar10" / f"{cfg.optimizer}-{h}"


def _identity(cfg: Config | dict) -> dict:
    """The fields that determine the result (not how it is run or shown), as after a JSON round trip."""
    d = json.loads(json.dumps(asdict(cfg) if isinstance(cfg, Config) else cfg))
    for old, new in (("wd", "weight_decay"), ("run_dir", "out_dir"), ("stop_after", "stop_at")):  # earlier results
        if old in d:
            d[new] = d.pop(old)
    d["optimizer"] = common.LEGACY_OPTIMIZERS.get(d["optimizer"], d["optimizer"])
    for k in ("out_dir", "resume", "stop_at", "progress", "verbose", "device", "compile"):
        d.pop(k, None)
    return d


# ----------------------------------------------------------------------------------------------
# Optimizers


def lp_groups(model: nn.Module, lr: float, weight_decay: float, p: float) -> list[dict]:
    """One param group per tensor for Lion-lp (`lionlib.experiments.common.lp_groups`): every p takes
    steps of Lion's size and keeps Lion's lr * weight_decay."""
    return common.lp_groups(model.named_parameters(), lr, weight_decay, p)


def make_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    trainable = [prm for prm in model.parameters() if prm.requires_grad]
    params = lp_groups(model, cfg.lr, cfg.weight_decay, cfg.p) if cfg.optimizer == "lion_lp" else trainable
    return common.make_optimizer(params, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.betas, cfg.p)


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
    """Train CifarNet with `cfg`; return the result dict, also written to `<out_dir>/result.json`.

    Deterministic on CPU for a given seed: initialisation from `seed`, and every epoch's shuffle and
    augmentation from a generator seeded with (seed, epoch). A checkpoint is written after every
    epoch; with `resume` a run continues from it (same config only) and ends bit-identical to an
    uninterrupted run. Ctrl-C stops between two steps and raises `Interrupted`, whose message says
    where the last epoch's checkpoint is. `data` (from `load_cifar10`) can be passed to share one
    decoded set between runs.
    """
    validate(cfg)
    with deferred_interrupt() as stop:
        return _train(cfg, data, stop)


def _train(cfg: Config, data: dict | None, stop) -> dict:
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32  # inputs; weights stay fp32 under autocast
    fmt = _memory_format(device)
    run_dir = _run_dir(cfg)  # created by the first checkpoint: a run that fails early leaves no folder
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
    ckpt = run_dir / CHECKPOINT
    if cfg.resume and ckpt.is_file():
        state = load_checkpoint(ckpt, device, keys=("epoch", "identity", "model", "optimizer", "history"))
        check_same_config(ckpt, _identity(state["identity"]), _identity(cfg))
        print(f"resuming {ckpt}: {state['epoch']} of {cfg.epochs} epochs done", flush=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if mon is not None:
            mon.load_state_dict(state["monitor"])
        start, elapsed = state["epoch"], state["elapsed"]
        result["history"], result["losses"] = state["history"], state["losses"]
    elif cfg.resume and cfg.verbose:
        print(f"no checkpoint in {run_dir}: starting the run", flush=True)

    from tqdm import tqdm  # the plain bar: the widget one needs ipywidgets in notebooks

    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_x), generator=gen).to(device)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", disable=not cfg.progress, leave=False)
        for i in bar:
            if stop():  # Ctrl-C, between two steps
                raise Interrupted(f"interrupted in epoch {epoch + 1} of {cfg.epochs}: " + (
                    f"{ckpt} holds epoch {epoch}; continue with --resume (resume=True)" if epoch else "nothing saved"))
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
        save_checkpoint(ckpt, state)  # atomic: an interrupted save keeps the last checkpoint
        if cfg.stop_at is not None and epoch + 1 >= cfg.stop_at and epoch + 1 < cfg.epochs:
            result["stopped"] = True
            return result

    last = result["history"][-1]
    # The 1-minute load average: wall times on a shared machine mean little without it.
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result.update(final_test_acc=last["test_acc"], final_test_loss=last["test_loss"], time=elapsed, load=load)
    if mon is not None:
        result["monitor"] = mon.frame().to_dict(orient="list")
    common.atomic_write_text(run_dir / RESULT, json.dumps(result, indent=1))
    result["model"] = model
    return result


def load_result(run_dir: str | Path) -> dict:
    """A finished run's result.json (to redraw figures without training)."""
    return json.loads((Path(run_dir) / "result.json").read_text())


def run(cfg: Config, data: dict | None = None, reuse: bool = False) -> dict:
    """`train(cfg)`, or with `reuse` the stored result of a finished run with the same config."""
    path = _run_dir(cfg) / RESULT
    if reuse and path.is_file():
        res = json.loads(path.read_text())
        if _identity(res["config"]) == _identity(cfg):
            return res
    return train(cfg, data)


# ----------------------------------------------------------------------------------------------
# The tuning grid and the command line


def grid(scale: str = "cpu", seed: int = 0, out_dir: str | Path | None = None, **overrides) -> list[dict]:
    """Lion and AdamW on the same grid: base lr x GRID["lr"], base weight_decay x GRID["wd"] (base:
    ADAMW, LION). Finished runs are read back and unfinished ones resumed, so a grid can be resumed.
    Each run has its folder `<out_dir>/<optimizer>-<hash>` (default out_dir: runs/cifar10)."""
    rows, data = [], None
    for b in GRID["wd"]:  # the base decay first: an interrupted grid still has the lr scan of both
        for name, base in (("lion", LION), ("adamw", ADAMW)):
            for a in GRID["lr"]:
                cfg = config(scale, **{**overrides, "optimizer": name, "lr": base["lr"] * a,
                                       "weight_decay": base["weight_decay"] * b, "seed": seed, "resume": True})
                if out_dir is not None:
                    cfg = replace(cfg, out_dir=str(Path(out_dir) / _run_dir(cfg).name))
                data = data or load_cifar10(cfg.data_dir, cfg.train_per_class, cfg.test_per_class)
                res = run(cfg, data, reuse=True)
                rows.append(dict(optimizer=name, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                 test_acc=res["final_test_acc"], time=res["time"]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> dict | list[dict]:
    """`python -m lionlib.experiments.cifar [--scale cpu] [--optimizer lion] [--lr ...] ...`: one run
    (its result.json and checkpoint.pt in --out-dir), or `--grid` (see `grid`)."""
    ap = cli.Parser(prog="python -m lionlib.experiments.cifar", description=main.__doc__)
    cli.add_run_flags(ap, SCALES)
    ap.add_argument("--grid", action="store_true", help="tune Lion and AdamW on GRID; print and save a table")
    cli.add_fields(ap, Config, config("cpu"), skip=("resume",), choices=dict(optimizer=OPTIMIZERS),
                   title="settings (the defaults shown are the cpu scale's)")
    args = ap.parse_args(cli.kebab(sys.argv[1:] if argv is None else argv))
    with cli.one_line_errors(ap.prog, setup=True):  # bad values stop here, before any work
        cli.set_threads(args.threads)
        over = {"progress": True, **cli.overrides(args, Config)}
        cfg = config(args.scale, **over)
        validate(cfg)
        if not args.grid:
            cfg = replace(cfg, out_dir=str(_run_dir(cfg)))
            claim_out_dir(cfg.out_dir, args.resume, args.force)
    with cli.one_line_errors(ap.prog):
        if args.grid:
            root = Path(cfg.out_dir) if cfg.out_dir else home.runs_dir() / "cifar10"
            rows = grid(args.scale, cfg.seed, root, **{k: v for k, v in over.items()
                                                       if k not in ("lr", "weight_decay", "out_dir", "resume")})
            out = root / f"grid-{args.scale}-seed{cfg.seed}.json"
            common.atomic_write_text(out, json.dumps(dict(grid=GRID, adamw=ADAMW, lion=LION, rows=rows), indent=1))
            for name in ("lion", "adamw"):
                best = max((r for r in rows if r["optimizer"] == name), key=lambda r: r["test_acc"])
                print(f"best {name}: lr {best['lr']:.3g} weight_decay {best['weight_decay']:.3g} "
                      f"test_acc {best['test_acc']:.4f}")
            return rows
        data = load_cifar10(cfg.data_dir, cfg.train_per_class, cfg.test_per_class)  # missing data: one line here
        print(f"run folder: {cfg.out_dir}", flush=True)
        cli.start_over(cfg.out_dir, args.force)
        res = train(cfg, data)
    if res.get("stopped"):
        print(f"stopped after epoch {cfg.stop_at} of {cfg.epochs}: continue with --resume")
    else:
        print(f"{res['dataset']}: test accuracy {res['final_test_acc']:.4f} in {res['time']:.1f}s ({res['device']})")
    return res


if __name__ == "__main__":
    main()
