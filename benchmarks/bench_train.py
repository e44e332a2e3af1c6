"""Training throughput of the experiment trainers, and the settings it chooses per machine.

    PYTHONPATH=$PWD LIONLIB_DATA_DIR=/work/shared/data python benchmarks/bench_train.py [--steps 100] [--rounds 1]

For each net of the notebooks (the ResNet-8 and the ViT of 07 through `cifar_train.train`, the 2x64
GPT of 08 through `gpt_train.train`) at the thread count the notebooks train with (one thread per
run; `--threads`), in rounds that visit every variant in turn (a shared machine's drift hits all
alike), it measures:

- **throughput**: images/s (tokens/s) of the training loop, from the run's own clock around
  `--steps` steps, evaluation and monitor off (`wall_seconds` minus a one-step run's, so data
  loading and model set-up cancel);
- **FLOP/s share**: the model's FLOPs per training step (forward + backward, counted once with
  `torch.utils.flop_counter.FlopCounterMode`) times steps/s, as a share of a dense matmul's FLOP/s
  in the same precision (fp32, or bf16 for the bf16-autocast variant), measured in the same process
  at the same thread count;
- **precision choice**: fp32 against bf16 autocast (+ channels-last for the ResNet); the faster is
  the machine's choice (`choice` in the output), which `engine.measured_precision(model)` returns
  for specs made on this machine. The records carry the precision they ran with (`spec.precision`,
  `env.precision`);
- **pilot**: seconds per 1,000 steps of the ResNet-8 (batch 64 on 4,500 images) and of the 2x64 GPT
  (batch 16 x 64 tokens), single thread, from the fp32 rate; and the seconds of one evaluation of
  the ResNet-8 on the full 10,000-image test set.

Writes `benchmarks/results/train-<cpu>.json`. On a shared machine the numbers are noisy: the
load average is recorded with every row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lionlib.experiments import cifar_train, gpt_train  # noqa: E402
from lionlib.experiments.common import bench_results_dir  # noqa: E402
from lionlib.experiments.engine import bench_file, evaluate_classifier  # noqa: E402
from lionlib.experiments.record import cpu_model  # noqa: E402
from lionlib.experiments.specs import CIFAR_MODELS, GPT_MODELS, cifar_spec, gpt_spec  # noqa: E402

NETS = {"resnet8": "cifar", "vit": "cifar", "gpt_2x64": "gpt"}


def spec(net: str, precision: str, steps: int):
    if NETS[net] == "cifar":
        return cifar_spec("cpu", model=net, steps=steps, eval_every=steps, monitor_every=0, n_test=10, n_val=10,
                          precision=precision, channels_last=precision == "bf16" and net.startswith("resnet"))
    return gpt_spec("cpu", model=net, steps=steps, eval_every=steps, eval_batches=1, final_eval_batches=1, monitor_every=0,
                    precision=precision)


def units_per_step(s) -> int:
    return s.batch_size * (GPT_MODELS[s.model]["block_size"] if s.task == "gpt" else 1)


def run_seconds(s) -> float:
    train = cifar_train.train if s.task == "cifar" else gpt_train.train
    return train(s, device="cpu", show_progress=False).wall_seconds


def step_rate(net: str, precision: str, steps: int) -> float:
    """Training steps per second, set-up and the final evaluation cancelled by a one-step run."""
    long, short = run_seconds(spec(net, precision, steps + 1)), run_seconds(spec(net, precision, 1))
    return steps / max(long - short, 1e-9)


def flops_per_step(net: str) -> float:
    """FLOPs of one forward + backward of the net on one training batch (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    from lionlib.experiments.gpt_model import GPT, GPTConfig
    from lionlib.experiments.nets import build

    s = spec(net, "fp32", 1)
    if s.task == "cifar":
        arch, kw = CIFAR_MODELS[net]
        model, x = build(arch, **kw), torch.randn(s.batch_size, 3, 32, 32)
        loss = lambda: torch.nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))  # noqa: E731
    else:
        cfg = GPTConfig(**{**GPT_MODELS[net], "vocab_size": 65})
        model, x = GPT(cfg), torch.randint(0, 65, (s.batch_size, cfg.block_size))
        loss = lambda: model(x, x)[1]  # noqa: E731
    with FlopCounterMode(display=False) as counter:
        loss().backward()
    return float(counter.get_total_flops())


def matmul_flops(n: int = 1024, repeats: int = 20, dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of a dense n x n matmul in this process (the best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def eval_seconds(net: str = "resnet8") -> float:
    """One evaluation of the net on 10,000 test-sized images (random pixels: the cost, not the accuracy)."""
    arch, kw = CIFAR_MODELS[net]
    from lionlib.experiments.nets import build

    model = build(arch, **kw)
    x, y = torch.randint(0, 256, (10_000, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (10_000,))
    t0 = time.perf_counter()
    evaluate_classifier(model, x, y)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100, help="training steps per measurement")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the notebooks train each run on one)")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--out", default=None, help="output file (default benchmarks/results/train-<cpu>.json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    rows, flops = [], {net: flops_per_step(net) for net in args.nets}
    for rnd in range(args.rounds):
        peak = {"fp32": matmul_flops(), "bf16": matmul_flops(dtype=torch.bfloat16)}
        for variant, value in peak.items():
            rows.append(dict(round=rnd, net="matmul 1024", variant=variant, flops_per_s=value, load=os.getloadavg()[0]))
            print(json.dumps(rows[-1]), flush=True)
        for net in args.nets:
            for precision in ("fp32", "bf16"):
                rate = step_rate(net, precision, args.steps)
                s = spec(net, precision, 1)
                rows.append(dict(round=rnd, net=net, variant=precision, steps_per_s=rate, units_per_s=rate * units_per_step(s),
                                 unit="tokens/s" if s.task == "gpt" else "images/s", flops_per_s=rate * flops[net],
                                 share_of_matmul=rate * flops[net] / peak[precision], load=os.getloadavg()[0]))
                print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows, args.nets)
    summary["eval_10k_seconds"] = {"resnet8": eval_seconds("resnet8")}
    summary["pilot_seconds_per_1000_steps"] = {net: 1000 / summary["nets"][net]["steps_per_s"]["fp32"]
                                               for net in ("resnet8", "gpt_2x64") if net in args.nets}
    print(json.dumps(summary, indent=1))
    out = Path(args.out) if args.out else bench_results_dir() / bench_file()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(cpu=cpu_model(), cores=os.cpu_count(), torch=torch.__version__, args=vars(args),
                                   flops_per_step=flops, summary=summary, rows=rows,
                                   note="shared machine: other jobs ran at the same time (see load)"), indent=1) + "\n")
    print(f"wrote {out}")
    return summary


def summarise(rows: list, nets: list) -> dict:
    med = lambda net, var, key: float(np.median([r[key] for r in rows if r["net"] == net and r["variant"] == var]))  # noqa: E731
    table = {"matmul_flops_per_s": {v: med("matmul 1024", v, "flops_per_s") for v in ("fp32", "bf16")}, "nets": {},
             "choice": {}}
    for net in nets:
        sps = {v: med(net, v, "steps_per_s") for v in ("fp32", "bf16")}
        table["nets"][net] = dict(steps_per_s=sps, units_per_s={v: med(net, v, "units_per_s") for v in sps},
                                  share_of_matmul={v: med(net, v, "share_of_matmul") for v in sps},
                                  bf16_over_fp32=sps["bf16"] / sps["fp32"])
        table["choice"][net] = "bf16" if sps["bf16"] > sps["fp32"] else "fp32"
    return table


if __name__ == "__main__":
    main()
