"""Does where the tensors live change the C++ kernel's speed? The same tensor list (the
transformer shapes of bench_step.py at one size) updated by `lionlib.fused.cpu.step`, laid out
four ways:

a. allocated one tensor at a time, p_i and g_i interleaved, momenta afterwards (a model's layout,
   and bench_step's);
b. allocated list by list (all p, then all g, then all m);
c. views cut from three flat buffers (one allocation per stream);
d. as c, but the three buffers offset so p, g, m are not 4 KiB-aliased (c is fully aliased).

Same elements, same tensor sizes and boundaries, same kernel: only the addresses differ. Timed on
the calling thread's CPU clock (1 thread), so time the OS gives other processes is not counted.

    python benchmarks/placement.py [--size 64] [--rounds 4] [--out results/bandwidth/placement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from bandwidth import hyper
from bench_step import transformer_shapes
from lionlib.fused import cpu as fused_cpu


def layouts(shapes, gen) -> dict[str, tuple[list, list, list]]:
    sizes = [torch.Size(s).numel() for s in shapes]
    n = sum(sizes)
    pa, ga = [], []
    for s in shapes:
        pa.append(torch.randn(s, generator=gen))
        ga.append(torch.randn(s, generator=gen).mul_(1e-3))
    ma = [torch.zeros(s) for s in shapes]
    pb = [torch.randn(s, generator=gen) for s in shapes]
    gb = [torch.randn(s, generator=gen).mul_(1e-3) for s in shapes]
    mb = [torch.zeros(s) for s in shapes]
    flat = [torch.randn(n, generator=gen), torch.randn(n, generator=gen).mul_(1e-3), torch.zeros(n)]
    padded = [torch.zeros(n + 1024) for _ in range(3)]
    for buf, src, offset in zip(padded, flat, (0, 352, 704)):  # 1408 and 2816 bytes apart mod 4 KiB
        buf[offset:offset + n].copy_(src)
    return {
        "a interleaved": (pa, ga, ma),
        "b list by list": (pb, gb, mb),
        "c flat views": tuple(list(torch.split(x, sizes)) for x in flat),
        "d flat views, offset": tuple(list(torch.split(b[o:o + n], sizes)) for b, o in zip(padded, (0, 352, 704))),
    }


def aliased_share(p_list, g_list, m_list) -> float:
    """Share of elements in tensors whose p, g and m start at the same address mod 4 KiB."""
    total = sum(p.numel() for p in p_list)
    same = sum(p.numel() for p, g, m in zip(p_list, g_list, m_list)
               if (p.data_ptr() - g.data_ptr()) % 4096 == 0 and (p.data_ptr() - m.data_ptr()) % 4096 == 0)
    return same / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=64, help="millions of parameters")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shapes = transformer_shapes(int(args.size * 2**20))
    cases = layouts(shapes, torch.Generator().manual_seed(0))
    h = hyper()
    times = {k: [] for k in cases}
    for _ in range(args.rounds):
        for k, (p, g, m) in cases.items():
            fused_cpu.step(p, g, m, code=0, implicit=False, hyper=h, threads=1)
            for _ in range(args.repeats):
                t0 = time.thread_time()
                fused_cpu.step(p, g, m, code=0, implicit=False, hyper=h, threads=1)
                times[k].append(time.thread_time() - t0)
    rows = []
    for k, v in times.items():
        q = statistics.quantiles(v, n=4)
        rows.append(dict(layout=k, median_s=statistics.median(v), quartiles_s=[q[0], q[2]], all_s=v,
                         aliased_4k_share=aliased_share(*cases[k])))
        print(f"{k:22s} {statistics.median(v) * 1e3:7.2f} ms  (quartiles {q[0] * 1e3:.2f}-{q[2] * 1e3:.2f})  "
              f"4K-aliased share {rows[-1]['aliased_4k_share']:.0%}")
    load = os.getloadavg()
    print(f"load {load}")
    if args.out:
        args.out.write_text(json.dumps(dict(note=args.note, size_m=args.size, n_tensors=len(shapes), load_avg_end=load,
                                            clock="thread CPU time, 1 thread", rows=rows), indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
