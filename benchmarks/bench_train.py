"""Training throughput of the experiment nets, before and after `lionlib.experiments.seeds`.

    PYTHONPATH=$PWD LIONLIB_DATA_DIR=/work/shared/data python benchmarks/bench_train.py [--rounds 2]

For each net (the ResNet and the ViT of notebook 07, the GPT of notebook 08) it trains `--runs`
seeds and reports aggregate images/s (tokens/s), all in this one process tree, in rounds that
visit every variant in turn (so a shared machine's drift hits all alike):

- `before`: today's trainer loop (`seeds.train_cifar` with fp32, contiguous memory), the seeds one
  after the other in this process on torch's default thread count, as notebook 07 ran it (CIFAR only);
- `before-1thread`: the same on one thread; for the GPT (`gpt.train`) this is today's setting
  (notebook 08 ran on one thread);
- `after`: `seeds.run_many` with `--workers` single-thread processes side by side, and for the
  CIFAR nets the per-net precision/memory format the notebooks use (bf16 autocast + channels-last
  for the ResNet; the ViT stays fp32: bf16 was slower for it here);
- `vmap`: the seeds stacked into one batched model (`torch.func.stack_module_state` + `vmap`),
  forward and backward only (an upper bound on its speed), measured to show why it is not used.

Final accuracies / losses are printed with the speeds, to show the results are equal within seed
noise. Writes `benchmarks/results/train-<cpu>.json`. On a shared machine the numbers are noisy: the
load average is recorded with every round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lionlib.experiments import seeds  # noqa: E402
from lionlib.experiments.gpt_seeds import GptRun, train_gpt  # noqa: E402
from lionlib.experiments.nets import build  # noqa: E402

RESNET = (("widths", (8, 16, 32)),)
VIT = (("depth", 2), ("dim", 32), ("heads", 4))


def cifar_runs(arch: str, kw, n: int, after: bool) -> list:
    base = seeds.CifarRun(arch=arch, arch_kw=kw, epochs=1, train_per_class=100, test_per_class=50,
                          bf16=False, channels_last=False)
    if after and arch == "resnet":
        base = replace(base, bf16=True, channels_last=True)
    return [replace(base, seed=s) for s in range(n)]


def gpt_runs(n: int) -> list:
    return [GptRun(max_steps=100, warmup_steps=10, evals=1, eval_batches=2, final_eval_batches=10, seed=s) for s in range(n)]


def sequential(runs: list, threads: int) -> tuple[float, list]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = [seeds._trainer(r)(r) for r in runs]
    torch.set_num_threads(old)
    return time.perf_counter() - t0, res


def parallel(runs: list, workers: int) -> tuple[float, list]:
    t0 = time.perf_counter()
    res = seeds.run_many(runs, workers=workers, refresh=True, cache_dir="build/bench_cache", progress=False)
    return time.perf_counter() - t0, res


def vmap_rate(arch: str, kw, n: int, steps: int = 4, batch: int = 64) -> float:
    """Images/s of forward+backward of n stacked copies (no optimizer, no data pipeline)."""
    from torch.func import functional_call, stack_module_state, vmap

    models = [build(arch, **dict(kw)) for _ in range(n)]
    params, _ = stack_module_state(models)
    base = build(arch, **dict(kw)).to("meta")
    fwd = vmap(lambda p, x: functional_call(base, p, (x,)))
    x, y = torch.randn(n, batch, 3, 32, 32), torch.randint(0, 10, (n * batch,))
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = F.cross_entropy(fwd(params, x).flatten(0, 1), y)
        grads = torch.autograd.grad(loss, list(params.values()))
        del grads
    return steps * n * batch / (time.perf_counter() - t0)


def units(res: list) -> float:
    return sum(r["steps"] * r["run"]["batch_size"] if r["kind"] == "CifarRun" else
               r["run"]["max_steps"] * r["run"]["batch_size"] * r["run"]["block_size"] for r in res)


def metric(res: list) -> float:
    return float(np.mean([r["final_test_acc"] if r["kind"] == "CifarRun" else r["final_val_loss"] for r in res]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2, help="seeds per variant")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = []
    for rnd in range(args.rounds):
        for net in ("resnet", "vit", "gpt"):
            kw = RESNET if net == "resnet" else VIT
            mk = (lambda after: gpt_runs(args.runs)) if net == "gpt" else (lambda after: cifar_runs(net, kw, args.runs, after))
            variants = {"before-1thread": lambda: sequential(mk(False), 1),
                        "after": lambda: parallel(mk(True), args.workers)}
            if net != "gpt":  # 08 already ran the GPT on one thread; 07 ran on torch's default count
                variants = {"before": lambda: sequential(mk(False), torch.get_num_threads()), **variants}
            for name, fn in variants.items():
                seconds, res = fn()
                rows.append(dict(round=rnd, net=net, variant=name, seconds=seconds, rate=units(res) / seconds,
                                 metric=metric(res), load=os.getloadavg()[0]))
                print(json.dumps(rows[-1]), flush=True)
            if net != "gpt":
                rate = vmap_rate(net, kw, args.runs)
                rows.append(dict(round=rnd, net=net, variant="vmap (fwd+bwd only)", seconds=None, rate=rate,
                                 metric=None, load=os.getloadavg()[0]))
                print(json.dumps(rows[-1]), flush=True)
        write(rows, {}, args)
    write(rows, summarise(rows), args)


def summarise(rows: list) -> dict:
    table = {}
    for net in ("resnet", "vit", "gpt"):
        rate = {v: float(np.median([r["rate"] for r in rows if r["net"] == net and r["variant"] == v]))
                for v in dict.fromkeys(r["variant"] for r in rows if r["net"] == net)}
        before = rate.get("before", rate["before-1thread"])  # today's setting: 07 default threads, 08 one
        table[net] = dict(unit="tokens/s" if net == "gpt" else "images/s", median_rate=rate,
                          speedup_after_vs_todays=rate["after"] / before,
                          speedup_after_vs_1thread=rate["after"] / rate["before-1thread"])
        print(f"{net}: " + ", ".join(f"{v} {x:,.0f}" for v, x in rate.items()) +
              f" {table[net]['unit']}; after / today's = {table[net]['speedup_after_vs_todays']:.2f}x, "
              f"after / one thread = {table[net]['speedup_after_vs_1thread']:.2f}x")
    return table


def write(rows: list, table: dict, args) -> None:
    """Written after every round, so an interrupted benchmark keeps what it measured."""
    env = seeds.environment()
    name = re.sub(r"[^a-z0-9]+", "-", env["cpu"].lower()).strip("-") + f"-{os.cpu_count()}c"
    out = Path(__file__).parent / "results" / f"train-{name}.json"
    out.write_text(json.dumps(dict(environment=env, args=vars(args), summary=table, rows=rows,
                                   note="shared machine: other jobs ran at the same time (see load)"), indent=1) + "\n")
    if table:
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
