"""The CIFAR-10 trainer: one `train(spec)` for every CIFAR run (notebooks, command line, benchmarks),
on CPU and CUDA, returning a `RunRecord`.

- **Data**: the first (n_train + n_val) / 10 training images of every class, split by `split_seed`
  into a validation set of `n_val` images and a training set of `n_train` (so tuning never sees the
  test set), and the test set (`n_test` images, the first of every class; None: all 10,000).
- **Steps, not epochs**: step t (0-based) takes batch t mod E of epoch t // E (E = n_train //
  batch_size, the last partial batch dropped), in an order drawn from (seed, epoch); its
  augmentation is drawn from (seed, t). A run resumed at any step therefore continues exactly.
- **Evaluation**: the validation set every `eval_every` steps and at the end, the test set at the end,
  in eval mode (running batch-norm statistics: `engine.evaluate_classifier`).
- **Runtime**: `device`, `compile` and DDP (under `torchrun`, each process takes its slice of the
  global batch) are flags; bf16 autocast and channels-last are spec keys (they change the numbers).
- **Checkpoints** (with `out_dir`): every `ckpt_every` steps, at the end, and on Ctrl-C between two
  steps (mid-epoch); `resume=True` continues one, refusing another spec. The monitor, the curves and
  the optimizer state are in it, so a resumed run records exactly what an uninterrupted one does
  (its `wall_seconds` are the sum of the sittings, and `env.resumed` says how many there were).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lionlib.experiments.checkpoint import (CHECKPOINT, Interrupted, check_same_config, deferred_interrupt,
                                            load_checkpoint, save_checkpoint)
from lionlib.experiments.cifar_data import augment, load_cifar10
from lionlib.experiments.engine import (base_lr_lambda, evaluate_classifier, interrupted_message, lr_factor,
                                        make_optimizers, normalise, progress, runtime)
from lionlib.experiments.nets import build
from lionlib.experiments.record import Curves, RunRecord, environment
from lionlib.experiments.specs import CIFAR_MODELS, CifarSpec, check_spec

__all__ = ["train", "load_data", "split"]

_DATA: dict = {}


def split(n_images: int, n_train: int, n_val: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, validation indices) of `n_images` training images: a permutation drawn from
    `split_seed`, validation first. The same split for every seed of a run."""
    if n_train + n_val > n_images:
        raise ValueError(f"n_train {n_train} + n_val {n_val} > {n_images} training images")
    perm = torch.randperm(n_images, generator=torch.Generator().manual_seed(1_000_000_007 + split_seed))
    return perm[n_val:n_val + n_train].sort().values, perm[:n_val].sort().values


def load_data(spec: CifarSpec, data_dir: str | None = None) -> dict:
    """The spec's train / validation / test tensors (uint8 images, int64 labels), decoded once per process."""
    per_class = math.ceil((spec.n_train + spec.n_val) / 10)
    test_per_class = None if spec.n_test is None else math.ceil(spec.n_test / 10)
    key = (data_dir, per_class, test_per_class, spec.n_train, spec.n_val, spec.split_seed, spec.n_test)
    if key not in _DATA:
        d = load_cifar10(data_dir, per_class, test_per_class)
        (x, y), (tx, ty) = d["train"], d["test"]
        tr, va = split(len(x), spec.n_train, spec.n_val, spec.split_seed)
        n_test = len(tx) if spec.n_test is None else spec.n_test
        _DATA[key] = dict(train=(x[tr], y[tr]), val=(x[va], y[va]), test=(tx[:n_test], ty[:n_test]),
                          info=dict(label=d["label"], sha256=d["sha256"], n_train=len(tr), n_val=len(va), n_test=n_test))
    return _DATA[key]


def _model(spec: CifarSpec) -> torch.nn.Module:
    arch, kw = CIFAR_MODELS[spec.model]
    return build(arch, **kw)


def train(spec: CifarSpec, *, device: str = "auto", compile: bool | None = None, out_dir: str | Path | None = None,
          resume: bool = False, stop_at: int | None = None, ckpt_every: int = 0, show_progress: bool = True,
          data_dir: str | None = None, ddp: bool = True) -> RunRecord | None:
    """Train `spec`; the finished run's record (None when `stop_at` stopped it before the end).

    Ctrl-C stops between two steps, writes the checkpoint (with `out_dir`) and raises `Interrupted`,
    whose message says how to resume. Under `torchrun` (with `ddp`) the processes train one model.
    """
    check_spec(spec)
    rt = runtime(device, spec.precision, compile, ddp)
    with deferred_interrupt(enabled=rt.world == 1) as stop:
        try:
            return _train(spec, rt, Path(out_dir) if out_dir else None, resume, stop_at, ckpt_every, show_progress,
                          data_dir, stop)
        finally:
            rt.close()


def _train(spec, rt, out_dir, resume, stop_at, ckpt_every, show, data_dir, interrupted) -> RunRecord | None:
    data = load_data(spec, data_dir)
    dev = rt.device
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = ((t.to(dev) for t in data[k]) for k in ("train", "val", "test"))
    per_epoch = spec.n_train // spec.batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size {spec.batch_size} > n_train {spec.n_train}")
    fmt = torch.channels_last if spec.channels_last else torch.contiguous_format
    torch.manual_seed(spec.seed)
    model = _model(spec).to(dev, memory_format=fmt)
    opts = make_optimizers(model.named_parameters(), spec.optimizer, spec.lr, spec.weight_decay, spec.betas, spec.p,
                           muon_exact=spec.muon_exact, aux_lr=spec.aux_lr)
    for o in opts:
        for g in o.param_groups:
            g["initial_lr"] = g["lr"]
    mon = None
    if spec.monitor_every and rt.master:  # under AdamW it watches Lion's box (l1 geometry), without a bound
        from lionlib.monitor import ConstraintMonitor

        mon = ConstraintMonitor(opts[0], model.named_parameters(), every=spec.monitor_every)
    curves, start, elapsed, sittings = Curves(), 0, 0.0, 1
    ckpt = out_dir / CHECKPOINT if out_dir else None
    from lionlib.experiments.specs import canonical

    identity = canonical(spec)
    if resume and ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt, dev, keys=("step", "spec", "model", "optimizers", "curves", "monitor"))
        check_same_config(ckpt, _spec_dict(state["spec"]), _spec_dict(identity))
        print(f"resuming {ckpt}: {state['step']} of {spec.steps} steps done", flush=True)
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optimizers"]):
            o.load_state_dict(s)
        curves = Curves(**state["curves"])
        if mon is not None:
            mon.load_state_dict(state["monitor"])
        start, elapsed, sittings = state["step"], state["elapsed"], state["sittings"] + 1
    elif resume and ckpt is not None:
        print(f"no checkpoint in {out_dir}: starting the run", flush=True)

    def save(step: int) -> None:
        if ckpt is not None and rt.master:
            save_checkpoint(ckpt, dict(step=step, spec=identity, model=model.state_dict(), curves=curves.state(),
                                       optimizers=[o.state_dict() for o in opts], elapsed=elapsed + time.perf_counter() - t0,
                                       sittings=sittings, monitor=None if mon is None else mon.state_dict()))

    def evaluate(step: int, final: bool) -> None:
        row = {"step": step}
        if spec.n_val:
            row["val_loss"], row["val_acc"] = evaluate_classifier(model, val_x, val_y, rt=rt, channels_last=spec.channels_last)
        if final:
            row["test_loss"], row["test_acc"] = evaluate_classifier(model, test_x, test_y, rt=rt,
                                                                    channels_last=spec.channels_last)
        curves.evals.append(row)

    fwd = rt.wrap(model)
    rows = slice(rt.rank * spec.batch_size // rt.world, (rt.rank + 1) * spec.batch_size // rt.world)
    end = spec.steps if stop_at is None else min(stop_at, spec.steps)
    bar = progress(spec.steps, start, f"{spec.model} {spec.optimizer}", show and rt.master)
    t0 = time.perf_counter()
    order, order_epoch = None, -1
    for step in range(start, end):
        if interrupted():  # Ctrl-C, between two steps: keep the work done, mid-epoch included
            save(step)
            bar.close()
            raise Interrupted(interrupted_message(step, spec.steps, ckpt))
        if ckpt_every and step > start and step % ckpt_every == 0:
            save(step)
        epoch = step // per_epoch
        if epoch != order_epoch:
            order = torch.randperm(spec.n_train, generator=torch.Generator().manual_seed(spec.seed * 1_000_003 + epoch))
            order_epoch = epoch
        factor = lr_factor(spec.schedule, step, spec.steps, spec.warmup)
        for o in opts:
            for g in o.param_groups:
                g["lr"] = g["initial_lr"] * factor
        i = step % per_epoch
        idx = order[i * spec.batch_size:(i + 1) * spec.batch_size][rows].to(dev)
        gen = torch.Generator().manual_seed(spec.seed * 2**32 + step)
        x = normalise(augment(train_x[idx], gen)).contiguous(memory_format=fmt)
        with rt.autocast():
            out = fwd(x)
        loss = F.cross_entropy(out.float(), train_y[idx], label_smoothing=spec.label_smoothing)
        for o in opts:
            o.zero_grad(set_to_none=True)
        loss.backward()
        for o in opts:
            o.step()
        if mon is not None:
            mon.record(step + 1)
        curves.loss.append(_mean_over_ranks(loss.detach(), rt))
        curves.lr_lambda.append(base_lr_lambda(spec, factor))
        if (step + 1) % spec.eval_every == 0 and step + 1 < spec.steps:
            evaluate(step + 1, final=False)
        bar.update()
        bar.set_postfix(loss=f"{curves.loss[-1]:.3f}", refresh=False)
    bar.close()
    if end < spec.steps:
        save(end)
        return None
    evaluate(spec.steps, final=True)
    if mon is not None:
        curves.monitor_rows = mon.rows
    save(spec.steps)
    wall = elapsed + time.perf_counter() - t0
    env = environment(dev, spec.precision, rt.compile, rt.world, resumed=sittings - 1)
    return RunRecord.build(spec, curves, env, wall, data["info"], model=model)


def _mean_over_ranks(x: torch.Tensor, rt) -> float:
    if rt.world > 1:
        import torch.distributed as dist

        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        x = x / rt.world
    return x.item()


def _spec_dict(text: str) -> dict:
    import json

    return json.loads(text)
