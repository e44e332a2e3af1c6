"""Time one optimizer step against parameter count, for every Lion path and the usual baselines.

Lion's step only streams memory: it reads p, g, m and writes p, m (20 bytes per fp32 parameter;
AdamW moves 28). So every step is also reported as a fraction of the memory-bandwidth limit,
measured in the same process as the time an in-place `torch.add_` takes to stream the same number
of bytes (`a.add_(b)` moves 12 bytes per element). `add_` is not the machine's limit (lionlib's
kernel beats it), so on CPU every step is also reported against two baselines measured in the same
rounds (`bandwidth.py`, `baselines.cpp`): a STREAM-style triad (ordinary and non-temporal stores;
the faster one is the bandwidth) and a plain OpenMP C loop doing Lion's fp32 pass over one flat
buffer of the same size (`fraction_of_lion_pass`; AdamW's rows are scaled by its 28/20 bytes).

The parameters are a transformer-like list (token embedding, per layer q/k/v/o and MLP matrices,
biases and norm weights), scaled to the requested total. The implementations are measured in
`--rounds` rounds that visit each in turn; in each round an implementation gets fresh state,
`--warmup` untimed steps (compilation happens there; the first step's time is recorded apart) and
`--repeats` timed steps, each right after one timed stream of the same bytes. Reported: medians.

Issue 19's targets are printed as `ratios` of medians from the same alternating rounds (and stored
per size): the default fp32 step against the plain C pass (>= 95 %), and bf16 steps (parameters,
gradients and momentum in bf16; rounded to nearest, and with Kahan's buffer) against the fp32 step
(<= 0.55x, <= 0.70x). With `--threads 1` every time is the calling thread's CPU time (robust on a
shared machine); otherwise wall time.

    python benchmarks/bench_step.py --sizes 64 --threads 1 --rounds 5 \
        --impls lionlib.default lionlib.bf16 lionlib.bf16_kahan   # the ratios at 64M parameters
    python benchmarks/bench_step.py                       # 1M ... 256M parameters (CPU: ~10 min)
    python benchmarks/bench_step.py --threads 1            # one CPU thread (robust on a loaded box)
    python benchmarks/bench_step.py --device cuda --sizes 1 4 16 64 256

Writes benchmarks/results/<machine>-<device>.json (see `machine_description`).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from lionlib.companion.manifest import cpu_model  # one CPU description for results and manifests

RESULTS = Path(__file__).resolve().parent / "results"
LR, WD = 1e-4, 0.1


@dataclass(frozen=True)
class Impl:
    name: str  # "<library>.<path>"
    family: str  # "lion" or "adamw": sets bytes per parameter
    make: Callable  # params -> optimizer
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtype: torch.dtype = torch.float32  # of the parameters, gradients and momentum


def _lionlib(**kw):
    def make(params):
        from lionlib import Lion

        return Lion(params, lr=LR, weight_decay=WD, **kw)

    return make


def _lion_pytorch(use_triton=False, foreach=False):
    def make(params):
        if foreach:
            from lion_pytorch.foreach import Lion
        else:
            from lion_pytorch import Lion
        return Lion(params, lr=LR, weight_decay=WD, **({"use_triton": True} if use_triton else {}))

    return make


def _pytorch_optimizer(params):
    from pytorch_optimizer import Lion

    return Lion(params, lr=LR, weight_decay=WD)


def _adamw(**kw):
    return lambda params: torch.optim.AdamW(params, lr=LR, weight_decay=WD, **kw)


IMPLS = [
    Impl("lionlib.default", "lion", _lionlib()),
    Impl("lionlib.forloop", "lion", _lionlib(foreach=False)),
    Impl("lionlib.foreach", "lion", _lionlib(foreach=True)),
    Impl("lionlib.cpp", "lion", _lionlib(fused=True), ("cpu",)),
    # bf16 parameters, gradients and momentum (half the bytes): rounded to nearest, and with Kahan's
    # compensation buffer (one more bf16 read and write per parameter: 14 of fp32's 20 bytes)
    Impl("lionlib.bf16", "lion", _lionlib(kahan_sum=False), dtype=torch.bfloat16),
    Impl("lionlib.bf16_kahan", "lion", _lionlib(), dtype=torch.bfloat16),
    Impl("lionlib.bf16_stochastic", "lion", _lionlib(stochastic_rounding=True), dtype=torch.bfloat16),
    Impl("lionlib.triton", "lion", _lionlib(fused=True), ("cuda",)),
    Impl("lion_pytorch.default", "lion", _lion_pytorch()),
    Impl("lion_pytorch.foreach", "lion", _lion_pytorch(foreach=True)),
    Impl("lion_pytorch.triton", "lion", _lion_pytorch(use_triton=True), ("cuda",)),
    Impl("pytorch_optimizer.default", "lion", _pytorch_optimizer),
    Impl("torch.AdamW.foreach", "adamw", _adamw(foreach=True)),
    Impl("torch.AdamW.fused", "adamw", _adamw(fused=True)),
]
BYTES_PER_PARAM = {"lion": 20, "adamw": 28}  # fp32: read p, g, m (, v); write p, m (, v)
# The step-time ratios the issue sets targets for (numerator, denominator, target, "<=" or ">="),
# each from medians of the same alternating rounds; "lion_pass" is the plain C pass.
RATIOS = [("lion_pass", "lionlib.default", 0.95, ">="), ("lionlib.bf16", "lionlib.default", 0.55, "<="),
          ("lionlib.bf16_kahan", "lionlib.default", 0.70, "<=")]


def transformer_shapes(n_params: int, vocab: int = 8192) -> list[tuple[int, ...]]:
    """A GPT-like parameter list with about n_params elements: width d (a multiple of 32) and
    depth chosen so that the per-layer matrices dominate, as in real models."""
    layers = max(2, round(2 * math.log2(max(n_params, 1 << 20) / (1 << 20))) + 2)
    a, b = 12 * layers, vocab + 1024 + 13 * layers + 2  # n_params = a d^2 + b d
    d = max(32, 32 * round((math.sqrt(b * b + 4 * a * n_params) - b) / (2 * a) / 32))
    shapes: list[tuple[int, ...]] = [(vocab, d), (1024, d)]  # token and position embeddings
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# With one CPU thread every step and baseline runs in the calling thread, so its CPU clock times
# them without the waits of a shared machine's other processes (`--threads 1`); else wall time.
CLOCK = {"clock": time.perf_counter}


def timed(fn: Callable[[], None], device: str) -> float:
    clock = CLOCK["clock"]
    sync(device)
    t0 = clock()
    fn()
    sync(device)
    return clock() - t0


class Stream:
    """The bandwidth limit: an in-place `a.add_(b)` over a prefix of two buffers, moving 12 bytes
    per element (read a and b, write a), sized to move the requested number of bytes."""

    def __init__(self, max_bytes: int, device: str):
        self.a = torch.rand(max_bytes // 12, device=device)
        self.b = torch.rand(max_bytes // 12, device=device)

    def runner(self, n_bytes: int) -> Callable[[], None]:
        a, b = self.a[: n_bytes // 12], self.b[: n_bytes // 12]
        return lambda: a.add_(b)


def measure(impl: Impl, params, run_stream, device: str, warmup: int, repeats: int) -> tuple[dict, list, list] | None:
    """One round for one implementation: a fresh optimizer, `warmup` untimed steps, then `repeats`
    pairs of (stream, step) timings. Interleaving the stream with the steps makes each fraction of
    the limit compare times taken under the same machine load. None if the implementation cannot
    run here (a missing optional backend must not stop the benchmark)."""
    try:
        opt = impl.make(params)
        info = dict(first_step_s=timed(opt.step, device))
        for _ in range(warmup - 1):
            timed(opt.step, device)
    except Exception as e:
        print(f"  {impl.name:28s} skipped: {type(e).__name__}: {e}")
        return None
    if impl.name.startswith("lionlib"):
        from lionlib.optim import _resolve_backend

        group = opt.param_groups[0]
        info["backend"] = _resolve_backend(group["params"], group["kappa"], group["foreach"], group["fused"])
    timed(run_stream, device)
    pairs = [(timed(run_stream, device), timed(opt.step, device)) for _ in range(repeats)]
    del opt
    gc.collect()
    return info, [s for s, _ in pairs], [t for _, t in pairs]


def bench_size(n_target: int, device: str, impls: list[Impl], warmup: int, repeats: int, rounds: int) -> tuple[dict, list[dict]]:
    """Every implementation, in `rounds` rounds that each visit all implementations in turn.

    The machine's speed drifts (a shared VM's neighbours come and go); spreading each
    implementation's timings over the whole run lets the drift hit every implementation alike,
    so the ratios between them are steadier than with one block of timings each."""
    shapes = transformer_shapes(n_target)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).mul_(0.02).to(device)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).mul_(1e-3).to(device)
    by_dtype = {torch.float32: params}
    for dtype in {i.dtype for i in impls} - {torch.float32}:  # the same values, stored in `dtype`
        by_dtype[dtype] = [torch.nn.Parameter(p.detach().to(dtype)) for p in params]
        for q, p in zip(by_dtype[dtype], params):
            q.grad = p.grad.to(dtype)
    n = sum(p.numel() for p in params)
    stream = Stream(max(BYTES_PER_PARAM.values()) * n, device)
    base = _baselines(n, device)
    base_times: dict[str, list[float]] = {}
    runs: dict[str, tuple[dict, list, list]] = {}
    for _ in range(rounds):
        for name, (fn, _) in (base.runners().items() if base else ()):
            fn()  # first touch / warm
            base_times.setdefault(name, []).extend(timed(fn, device) for _ in range(repeats))
        for impl in impls:
            if device not in impl.devices or (impl.name in runs and runs[impl.name] is None):
                continue
            result = measure(impl, by_dtype[impl.dtype], stream.runner(BYTES_PER_PARAM[impl.family] * n), device, warmup,
                             repeats)
            if impl.name not in runs or result is None:
                runs[impl.name] = result
            else:
                runs[impl.name][1].extend(result[1])
                runs[impl.name][2].extend(result[2])
    med = {k: statistics.median(v) for k, v in base_times.items()}
    triad_gb_s = max(12 * n / med["triad"], 12 * n / med["triad_nt"]) / 1e9 if med else None
    rows = []
    for impl in impls:
        if runs.get(impl.name) is None:
            continue
        info, streams, times = runs[impl.name]
        step, limit = statistics.median(times), statistics.median(streams)
        bpp = BYTES_PER_PARAM[impl.family]
        row = dict(
            impl=impl.name, family=impl.family, backend=info.get("backend"), n_params=n, n_tensors=len(params),
            bytes_per_param=bpp, step_s=step, step_s_all=times, first_step_s=info["first_step_s"],
            stream_s=limit, stream_s_all=streams, fraction_of_stream=limit / step, load_avg=os.getloadavg()[0],
        )
        if med:  # shares of the machine's limits, measured in these same rounds
            row["fraction_of_triad"] = bpp * n / (triad_gb_s * 1e9) / step
            row["fraction_of_lion_pass"] = med["lion_pass"] * bpp / 20 / step
        rows.append(row)
        extra = (f"  {row['fraction_of_lion_pass']:6.1%} of the C pass  {row['fraction_of_triad']:6.1%} of the triad"
                 if med else "")
        print(f"  {impl.name:28s} {step * 1e3:9.2f} ms  {limit / step:6.1%} of stream ({limit * 1e3:.2f} ms){extra}"
              f"  first step {info['first_step_s']:.2f} s", flush=True)
    del params, by_dtype, stream, base
    gc.collect()
    lion = [r["stream_s"] for r in rows if r["family"] == "lion"]
    info = dict(n_params=n, n_tensors=len(shapes), stream_lion_s=statistics.median(lion) if lion else None,
                load_avg=list(os.getloadavg()), ratios=ratios(rows, med))
    if med:
        info |= dict(baselines_s=med, baselines_s_all=base_times, triad_gb_s=triad_gb_s,
                     lion_pass_gb_s=20 * n / med["lion_pass"] / 1e9)
        print(f"  baselines: triad {12 * n / med['triad'] / 1e9:.1f} GB/s, non-temporal triad "
              f"{12 * n / med['triad_nt'] / 1e9:.1f} GB/s, C Lion pass {med['lion_pass'] * 1e3:.2f} ms "
              f"({info['lion_pass_gb_s']:.1f} GB/s), kernel on one flat buffer {med['kernel_flat'] * 1e3:.2f} ms", flush=True)
    return info, rows


def ratios(rows: list[dict], baselines: dict) -> list[dict]:
    """The `RATIOS` this run can compute: time(numerator) / time(denominator), and whether the
    target holds (for the C pass, the ratio is C pass time / step time: the step's share of it)."""
    times = {r["impl"]: r["step_s"] for r in rows} | ({"lion_pass": baselines["lion_pass"]} if baselines else {})
    out = []
    for num, den, target, sense in RATIOS:
        if num in times and den in times:
            value = times[num] / times[den]
            out.append(dict(ratio=f"{num} / {den}", value=value, target=f"{sense} {target}",
                            met=value >= target if sense == ">=" else value <= target))
            print(f"  {num} / {den}: {value:.3f} (target {sense} {target}: {'met' if out[-1]['met'] else 'NOT met'})")
    return out


def _baselines(n: int, device: str):
    """The triad and C-pass baselines (CPU only; None where they cannot be built)."""
    if device != "cpu":
        return None
    try:
        from bandwidth import Baselines  # benchmarks/ is on sys.path when this file runs as a script

        return Baselines(n)
    except Exception as e:  # a missing compiler must not stop the benchmark
        print(f"  baselines skipped: {type(e).__name__}: {e}")
        return None


def machine_description(device: str) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    desc = dict(
        cpu=cpu_model(), cores=os.cpu_count(), torch_threads=torch.get_num_threads(),
        memory_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        platform=platform.platform(), python=platform.python_version(), torch=torch.__version__, triton=triton_version,
        gpu=torch.cuda.get_device_name() if device == "cuda" else None,
        load_avg_start=list(os.getloadavg()),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )
    return desc


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=float, nargs="+", default=None, help="millions of parameters")
    ap.add_argument("--impls", nargs="+", default=None, help="subset of implementation names")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=4, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all implementations")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--out", type=Path, default=None, help="output JSON (default benchmarks/results/<machine>-<device>.json)")
    ap.add_argument("--note", default="", help="free text stored in the results (e.g. how loaded the machine was)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.threads == 1 and args.device == "cpu":
        CLOCK["clock"] = time.thread_time
    sizes = args.sizes or [1, 4, 16, 64, 256]
    impls = [i for i in IMPLS if args.impls is None or i.name in args.impls]
    machine = machine_description(args.device)
    name = slug(machine["gpu"] if args.device == "cuda" else f"{machine['cpu']}-{machine['cores']}c")
    threads = f"-{args.threads}thread" if args.threads else ""
    out = args.out or RESULTS / f"{name}-{args.device}{threads}.json"
    print(f"{machine['cpu']} ({machine['cores']} cores), torch {machine['torch']}, load {machine['load_avg_start']}")
    streams, rows = [], []
    for size in sizes:
        n_target = int(size * 2**20)
        print(f"{size:g}M parameters:", flush=True)
        info, size_rows = bench_size(n_target, args.device, impls, args.warmup, args.repeats, args.rounds)
        streams.append(info)
        rows += size_rows
    machine["load_avg_end"] = list(os.getloadavg())
    result = dict(machine=machine, note=args.note, device=args.device, clock=CLOCK["clock"].__name__, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds,
                  lr=LR, weight_decay=WD, stream=streams, results=rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
