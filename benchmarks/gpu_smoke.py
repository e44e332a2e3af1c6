"""GPU smoke check (a few minutes on one GPU): does the paper-scale path run, and does it compute what
the CPU path computes?

    PYTHONPATH=$PWD python benchmarks/gpu_smoke.py                  # on a machine with CUDA
    PYTHONPATH=$PWD python benchmarks/gpu_smoke.py --device cpu --steps 5   # the CPU fallback (tests)

Checks, each printed as PASS/FAIL with its numbers (exit status 1 if any fails):

1. **fused step**: Lion's fused (Triton on CUDA) step against the for-loop reference on the same
   tensors and gradients, over several steps (on CPU: the foreach path against the for-loop);
2. **trainers**: `--steps` steps of the CIFAR trainer (ResNet-18 and ViT-S shapes at a small width),
   the GPT trainer (GPT-2 124M's shape with fewer layers) and the Distributed Lion simulation, with
   bf16 autocast and `torch.compile` on CUDA (fp32 eager on CPU): finite losses, the training loss
   falls, a valid run record;
3. **DDP with one process**: the CIFAR and GPT command lines under `torchrun --nproc_per_node 1`
   write a record equal (to bf16 tolerance) to the in-process run of the same spec.

Writes `<out>/gpu_smoke.json` (the checks and the records' final numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lionlib import Lion  # noqa: E402
from lionlib.experiments import cifar_train, distributed_train, gpt_train  # noqa: E402
from lionlib.experiments.record import RunRecord  # noqa: E402
from lionlib.experiments.specs import cifar_spec, distributed_spec, gpt_spec  # noqa: E402

RESULTS: list[dict] = []


def check(name: str, ok: bool, **numbers) -> bool:
    RESULTS.append(dict(check=name, ok=bool(ok), **numbers))
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {json.dumps(numbers, default=str)}", flush=True)
    return ok


def fused_step(device: str, steps: int = 5) -> None:
    """Lion's fast path against the for-loop on identical inputs."""
    torch.manual_seed(0)
    shapes = [(1024, 1024), (4097,), (3, 33, 17)]
    ref = [torch.randn(s, device=device) for s in shapes]
    fast = [p.clone() for p in ref]
    kw = dict(lr=1e-3, weight_decay=0.1)
    slow_opt = Lion(ref, foreach=False, fused=False, **kw)
    fast_opt = Lion(fast, **({"fused": True} if device.startswith("cuda") else {"foreach": True}), **kw)
    for _ in range(steps):
        for a, b in zip(ref, fast):
            g = torch.randn_like(a)
            a.grad, b.grad = g, g.clone()
        slow_opt.step()
        fast_opt.step()
    diff = max((a - b).abs().max().item() for a, b in zip(ref, fast))
    check(f"fused step = for-loop ({'Triton' if device.startswith('cuda') else 'foreach'}, {steps} steps)",
          diff <= 1e-6, max_abs_diff=diff)


def specs_for(device: str, steps: int) -> dict:
    cuda = device.startswith("cuda")
    prec = "bf16" if cuda else "fp32"
    ev = max(1, steps // 2)
    cifar = dict(steps=steps, batch_size=64 if cuda else 16, n_train=640 if cuda else 64, n_val=64 if cuda else 16,
                 n_test=1000 if cuda else 50, eval_every=ev, monitor_every=max(1, steps // 5), precision=prec)
    return {
        "cifar resnet18": cifar_spec("paper", **{**cifar, "model": "resnet18" if cuda else "resnet_tiny",
                                                 "channels_last": cuda, "warmup": 1}),
        "cifar vit_s": cifar_spec("paper", **{**cifar, "model": "vit_s" if cuda else "vit_tiny", "channels_last": False,
                                              "warmup": 1}),
        "gpt": gpt_spec("smoke", model="gpt_smoke", steps=steps, warmup=1, batch_size=8, eval_every=ev, eval_batches=2,
                        final_eval_batches=2, monitor_every=max(1, steps // 5), precision=prec, lr=3e-3),
        "distributed": distributed_spec("smoke", optimizer="distributed_lion", steps=steps, eval_every=ev, warmup=1,
                                        lr=3e-3),
    }


def trainers(device: str, steps: int, data_dir: str | None) -> dict:
    cuda = device.startswith("cuda")
    records = {}
    for name, spec in specs_for(device, steps).items():
        t0 = time.perf_counter()
        if spec.task == "distributed":  # a simulation of N workers: CPU only
            rec = distributed_train.train(spec, device="cpu", data_dir=data_dir, show_progress=False)
        else:
            train = cifar_train.train if spec.task == "cifar" else gpt_train.train
            rec = train(spec, device=device, compile=cuda, data_dir=data_dir, show_progress=False)
        loss = rec.train["loss"]
        again = RunRecord.loads(rec.dumps())
        head, tail = sum(loss[:3]) / 3, sum(loss[-3:]) / 3
        check(f"{name}: {steps} steps ({rec.env['precision']}, compile={rec.env['compile']}, {rec.env['device']})",
              all(math.isfinite(x) for x in loss) and tail < head and again.numbers() == rec.numbers()
              and all(v is None or math.isfinite(v) for v in rec.final.values()),
              first_loss=head, last_loss=tail, final=rec.final, seconds=round(time.perf_counter() - t0, 1))
        records[name] = rec
    return records


def ddp_one_process(device: str, steps: int, data_dir: str | None, records: dict) -> None:
    """The command lines under torchrun with one process: the same record as in-process."""
    tol = 0.05 if device.startswith("cuda") else 1e-6  # bf16 + compile: kernels may differ between processes
    for name, module in (("cifar resnet18", "lionlib.experiments.cifar"), ("gpt", "lionlib.experiments.gpt")):
        spec = records[name].spec
        flags = []
        for key, value in json.loads(json.dumps(spec.__dict__)).items():
            if key in ("task", "scale"):
                continue
            flag = "--" + key.replace("_", "-")
            if isinstance(value, bool):
                flags.append(flag if value else "--no-" + key.replace("_", "-"))
            elif isinstance(value, list):
                flags += [flag, *map(str, value)]
            elif value is not None:
                flags += [flag, str(value)]
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", module,
                   "--scale", spec.scale, *flags, "--device", device, "--out-dir", tmp, "--no-progress", "--no-store",
                   *(["--compile"] if device.startswith("cuda") else ["--no-compile"]),
                   *(["--data-dir", data_dir] if data_dir else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"})
            ok = proc.returncode == 0 and (Path(tmp) / "result.json").is_file()
            diff = math.inf
            if ok:
                rec = RunRecord.loads((Path(tmp) / "result.json").read_text())
                ok = rec.spec == spec
                diff = max(abs(a - b) for a, b in zip(rec.train["loss"], records[name].train["loss"]))
            check(f"{name}: torchrun --nproc_per_node 1 = in-process", ok and diff <= tol, max_loss_diff=diff,
                  stderr=proc.stderr[-500:] if not ok else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="folder for gpu_smoke.json (default: $OUT or benchmarks/results)")
    ap.add_argument("--skip-ddp", action="store_true")
    args = ap.parse_args(argv)
    RESULTS.clear()
    print(f"torch {torch.__version__}, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""), flush=True)
    if args.device == "cpu":
        torch.set_num_threads(1)
    fused_step(args.device)
    records = trainers(args.device, args.steps, args.data_dir)
    if not args.skip_ddp:
        ddp_one_process(args.device, args.steps, args.data_dir, records)
    out = Path(args.out or os.environ.get("OUT") or Path(__file__).parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_smoke.json").write_text(json.dumps(dict(device=args.device, torch=torch.__version__, checks=RESULTS),
                                                   indent=1, default=str) + "\n")
    failed = [r["check"] for r in RESULTS if not r["ok"]]
    print(f"{len(RESULTS) - len(failed)}/{len(RESULTS)} checks pass" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
