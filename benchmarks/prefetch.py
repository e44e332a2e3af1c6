"""How far ahead should the C++ kernel prefetch? `lionlib/fused/cpu.cpp` built with several
PREFETCH_AHEAD values (and none), each run on the layouts of `placement.py`, in rounds.

    python benchmarks/prefetch.py --size 64 --threads 1 --rounds 4      # thread CPU clock
    python benchmarks/prefetch.py --size 64 --threads 2 --rounds 8      # wall clock

Prints medians and quartiles; results/bandwidth/prefetch-*.txt keep what it printed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time
from pathlib import Path
import tempfile

import torch

from bandwidth import hyper
from bench_step import transformer_shapes
from lionlib.fused import contract
from lionlib.fused import cpu as fused_cpu
from placement import layouts

ORIGINAL = "constexpr int64_t BLOCK = 128, PREFETCH_AHEAD = "
VARIANTS = {"12 blocks (6 KiB fp32)": "12 * BLOCK", "8 blocks (4 KiB)": "8 * BLOCK", "6 blocks (3 KiB)": "6 * BLOCK",
            "4 blocks (2 KiB)": "4 * BLOCK", "no prefetch": "(int64_t{1} << 62)", "plain simd loop (default)": "PLAIN"}
_I64P = ctypes.POINTER(ctypes.c_int64)


def build(expr: str, folder: Path) -> ctypes.CDLL:
    src = fused_cpu.SOURCE.read_text()
    line = next(ln for ln in src.splitlines() if ln.startswith(ORIGINAL))
    path = folder / f"cpu_{abs(hash(expr))}.cpp"
    path.write_text(src.replace(line, f"{ORIGINAL}{expr};"))
    lib = fused_cpu.build(path, headers={fused_cpu.HEADER: contract.c_header()}, prefix="prefetch")
    lib.lionk_step.argtypes = fused_cpu.library().lionk_step.argtypes
    return lib


def call(lib, p, g, m, hyper_arr, threads) -> None:
    k = len(p)
    table = torch.tensor([t.data_ptr() for t in (*p, *g, *m)] + [0] * (2 * k) + [t.numel() for t in p], dtype=torch.int64)
    base = table.data_ptr()
    row = lambda i: ctypes.cast(base + 8 * i * k, _I64P)  # noqa: E731  (rows: p, g, m, comps, keys, sizes)
    assert lib.lionk_step(k, row(0), row(1), row(2), row(3), row(4), row(5), 0, 0, contract.STORE["nearest"],
                          contract.CODE["l1"], 0, hyper_arr, threads) == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--layouts", default="acd", help="letters of placement.py's layouts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    with tempfile.TemporaryDirectory() as folder:
        libs = {label: build(expr, Path(folder)) for label, expr in VARIANTS.items()}
    cases = {k: v for k, v in layouts(transformer_shapes(int(args.size * 2**20)), torch.Generator().manual_seed(0)).items()
             if k[0] in args.layouts}
    hyper_arr = (ctypes.c_double * len(contract.SLOTS))(*hyper())
    times = {(v, c): [] for v in libs for c in cases}
    for _ in range(args.rounds):
        for v, lib in libs.items():
            for c, tensors in cases.items():
                call(lib, *tensors, hyper_arr, args.threads)
                for _ in range(3):
                    t0 = clock()
                    call(lib, *tensors, hyper_arr, args.threads)
                    times[(v, c)].append(clock() - t0)
    print(f"{args.size:g}M, {args.threads} thread(s), {'thread CPU' if args.threads == 1 else 'wall'} clock")
    for c in cases:
        for v in libs:
            x = times[(v, c)]
            q = statistics.quantiles(x, n=4)
            print(f"{c:22s} {v:24s} {statistics.median(x) * 1e3:7.2f} ms ({q[0] * 1e3:.2f}-{q[2] * 1e3:.2f})")
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
