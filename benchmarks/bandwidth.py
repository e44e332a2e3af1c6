"""The machine's limits, measured in the benchmark's own process: a STREAM-style triad and a
plain OpenMP loop doing Lion's fp32 pass (both in `baselines.cpp`, built like the C++ kernel).

`Baselines(n)` holds three flat fp32 buffers of n elements (the triad reuses them: a = p, b = g,
c = m) and times:
- `triad(nontemporal)`: a = b + s c, 12 bytes per element (STREAM's count);
- `lion_pass()`: Lion's update over the flat buffers, 20 bytes per element;
- `kernel_flat()`: lionlib's C++ kernel (`lionlib.fused.cpu.step`) on the same flat buffers, so
  the difference to `lion_pass` is the kernel's inner loop and thread split, not a tensor list.

Run alone it decomposes a lionlib step at one size (see `decompose`):

    python benchmarks/bandwidth.py --sizes 16 64 --threads 2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # lionlib from this checkout

from lionlib.fused import cpu as fused_cpu  # noqa: E402
from lionlib.fused import _scalars  # noqa: E402
from lionlib import kappa  # noqa: E402

LR, WD, BETAS = 1e-4, 0.1, (0.9, 0.99)
_F = ctypes.c_float
_P = ctypes.c_void_p


def library() -> ctypes.CDLL:
    lib = fused_cpu.build(HERE / "baselines.cpp", prefix="baselines")
    lib.triad.argtypes = [_P, _P, _P, _F, ctypes.c_int64, ctypes.c_int, ctypes.c_int]
    lib.lion_pass.argtypes = [_P, _P, _P, ctypes.c_int64, _F, _F, _F, _F, _F, _F, ctypes.c_int]
    return lib


def hyper() -> list[float]:
    """The kernel's scalars for Lion with the benchmark's settings (explicit decay)."""
    return list(_scalars(kappa.get("l1"), LR, *BETAS, WD, False)["hyper"])


class Baselines:
    def __init__(self, n: int, threads: int | None = None):
        gen = torch.Generator().manual_seed(0)
        self.n = n
        self.threads = threads or torch.get_num_threads()
        self.p = torch.randn(n, generator=gen).mul_(0.02)
        self.g = torch.randn(n, generator=gen).mul_(1e-3)
        self.m = torch.zeros(n)
        self.lib = library()
        self.h = hyper()

    def triad(self, nontemporal: bool) -> None:
        self.lib.triad(self.p.data_ptr(), self.g.data_ptr(), self.m.data_ptr(), 0.5, self.n, self.threads, int(nontemporal))

    def lion_pass(self) -> None:
        d, b1, omb1, neg_lr, _, b2, omb2, _ = self.h
        self.lib.lion_pass(self.p.data_ptr(), self.g.data_ptr(), self.m.data_ptr(), self.n, d, b1, omb1, neg_lr, b2, omb2,
                           self.threads)

    def kernel_flat(self) -> None:
        fused_cpu.step([self.p], [self.g], [self.m], code=0, implicit=False, hyper=self.h, threads=self.threads)

    def runners(self) -> dict:
        """name -> (callable, bytes moved per element as counted)."""
        return {
            "triad": (lambda: self.triad(False), 12),
            "triad_nt": (lambda: self.triad(True), 12),
            "lion_pass": (self.lion_pass, 20),
            "kernel_flat": (self.kernel_flat, 20),
        }


CLOCK = time.perf_counter


def timed(fn) -> float:
    t0 = CLOCK()
    fn()
    return CLOCK() - t0


def decompose(n_target: int, threads: int, rounds: int, repeats: int) -> dict:
    """Where a lionlib step's time goes, at one size, every piece timed in the same rounds:
    plain C pass (flat) -> kernel on the flat buffer -> kernel on the flat buffer cut into the
    list's tensor sizes (the per-tensor cost in C) -> kernel on the transformer tensor list, one
    allocation per tensor (memory placement) -> `fused.cpp_step` (plus the host's grouping) ->
    `Lion.step` (plus validation and state gathering)."""
    from bench_step import transformer_shapes  # noqa: E402
    from lionlib import Lion, fused

    shapes = transformer_shapes(n_target)
    gen = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen).mul_(0.02)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).mul_(1e-3)
    n = sum(p.numel() for p in params)
    base = Baselines(n, threads)
    opt = Lion(params, lr=LR, weight_decay=WD, fused=True)
    opt.step()
    ps, gs = list(params), [p.grad for p in params]
    ms = [opt.state[p]["exp_avg"] for p in params]
    h = base.h
    kw = dict(kappa=kappa.get("l1"), lr=LR, beta1=BETAS[0], beta2=BETAS[1], weight_decay=WD, implicit_decay=False,
              maximize=False)
    stream_a, stream_b = torch.rand(n * 20 // 12), torch.rand(n * 20 // 12)  # add_ moving Lion's 20 bytes/param
    sizes = [p.numel() for p in params]  # the list's tensors as views of the flat buffers: same memory as
    vp, vg, vm = (list(torch.split(x, sizes)) for x in (base.p, base.g, base.m))  # kernel_flat, many tensors
    pieces = {
        **{k: f for k, (f, _) in base.runners().items()},
        "kernel_views": lambda: fused_cpu.step(vp, vg, vm, code=0, implicit=False, hyper=h, threads=threads),
        "kernel_list": lambda: fused_cpu.step(ps, gs, ms, code=0, implicit=False, hyper=h, threads=threads),
        "cpp_step": lambda: fused.cpp_step(ps, gs, ms, threads=threads, **kw),
        "Lion.step": opt.step,
        "add_": lambda: stream_a.add_(stream_b),
    }
    times = {k: [] for k in pieces}
    for _ in range(rounds):
        for k, f in pieces.items():
            f()  # warm
            times[k] += [timed(f) for _ in range(repeats)]
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(n_params=n, n_tensors=len(shapes), threads=threads, median_s=med, all_s=times,
                triad_gb_s=12 * n / med["triad"] / 1e9, triad_nt_gb_s=12 * n / med["triad_nt"] / 1e9,
                lion_pass_gb_s=20 * n / med["lion_pass"] / 1e9, load_avg=os.getloadavg()[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[16, 64], help="millions of parameters")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (default: print only)")
    ap.add_argument("--note", default="", help="free text stored with the results (machine state, ...)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the calling thread's CPU clock (needs --threads 1: every piece then runs on the "
                         "calling thread), so time the OS gives to other processes on a shared machine is not counted")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        if args.threads != 1:
            ap.error("--cpu-time needs --threads 1")
        CLOCK = time.thread_time
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    out = []
    for size in args.sizes:
        r = decompose(int(size * 2**20), threads, args.rounds, args.repeats)
        lp = r["median_s"]["lion_pass"]
        print(f"{size:g}M ({r['n_params']} params, {r['n_tensors']} tensors, {threads} threads, load {r['load_avg']:.2f}): "
              f"triad {r['triad_gb_s']:.1f} GB/s, triad_nt {r['triad_nt_gb_s']:.1f} GB/s, Lion pass {r['lion_pass_gb_s']:.1f} GB/s")
        for k, t in r["median_s"].items():
            q = statistics.quantiles(r["all_s"][k], n=4)
            print(f"  {k:12s} {t * 1e3:8.2f} ms  {lp / t:6.1%} of the C pass   (quartiles {q[0] * 1e3:.2f}-{q[2] * 1e3:.2f} ms)")
        out.append(r)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(dict(note=args.note, clock="thread CPU time" if args.cpu_time else "wall",
                                            lr=LR, weight_decay=WD, runs=out), indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
