"""Sharded Newton-Schulz against gather-everything: bytes moved and time per Muon step (gloo, CPU).

Each of `--world` processes holds its FSDP2-style row shard (Shard(0)) of `--matrices` matrices of
`--shape`, the momentum blend c of one step, and computes the local shard of msign(c) by

- "gather-everything" (`lionlib.distributed.gathered_directions`): every rank all-gathers every c
  and runs Newton-Schulz on every matrix;
- "owner" (`lionlib.distributed.owner_directions`): matrix i's shards go to rank i mod N (gather),
  which alone runs Newton-Schulz and scatters the slices back.

For DDP replicas (`--mode ddp`: every rank holds the whole c) the two are every rank computing
every matrix (no traffic) against `lionlib.distributed.replicated_step`'s owner-and-broadcast.

Bytes are counted in the process, from the tensors each collective hands over: a wrapper around
torch.distributed's gather / scatter / broadcast and the functional all-gather that DTensor uses
adds what this rank receives (the payload; the sum over ranks is the same for any algorithm
that moves each piece once). Time is the median wall time of `--repeats` calls, after a warm-up,
with a barrier before each. The outputs of the two schemes are checked equal (bit for bit).

    python benchmarks/bench_sharded_ns.py --world 2 4 --shape 512 512 --matrices 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # lionlib from this checkout

from lionlib import distributed, kappa  # noqa: E402

RECEIVED = [0]


def _nbytes(t) -> int:
    return t.numel() * t.element_size()


def count_bytes(world: int, rank: int) -> None:
    """Wrap the collectives the two schemes use so each adds the bytes this rank receives."""
    import torch.distributed._functional_collectives as funcol

    gather, scatter, broadcast, all_gather = dist.gather, dist.scatter, dist.broadcast, funcol.all_gather_single

    def gather_(t, gather_list=None, dst=0, **kw):
        RECEIVED[0] += _nbytes(t) * (world - 1) if gather_list is not None else 0
        return gather(t, gather_list, dst=dst, **kw)

    def scatter_(t, scatter_list=None, src=0, **kw):
        RECEIVED[0] += _nbytes(t) if scatter_list is None else 0
        return scatter(t, scatter_list, src=src, **kw)

    def broadcast_(t, src, **kw):
        RECEIVED[0] += _nbytes(t) if src != rank else 0
        return broadcast(t, src, **kw)

    def all_gather_(t, *args, **kw):
        RECEIVED[0] += _nbytes(t) * (world - 1)
        return all_gather(t, *args, **kw)

    dist.gather, dist.scatter, dist.broadcast, funcol.all_gather_single = gather_, scatter_, broadcast_, all_gather_


def timed(fn, repeats: int) -> tuple[float, int, list]:
    """(median seconds, bytes received per call, last output) of fn() over `repeats` calls."""
    fn()  # warm-up
    times, before = [], RECEIVED[0]
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), (RECEIVED[0] - before) // repeats, out


def worker(rank: int, world: int, port: int, args, out: str) -> None:
    torch.set_num_threads(args.threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

    count_bytes(world, rank)
    K = kappa.get("nuclear", method="newton_schulz", ns_steps=5)
    gen = torch.Generator().manual_seed(0)
    full = [torch.randn(*args.shape, generator=gen) for _ in range(args.matrices)]
    result = dict(world=world, shape=list(args.shape), matrices=args.matrices, mode=args.mode, threads=args.threads)
    if args.mode == "fsdp":
        mesh = init_device_mesh("cpu", (world,))
        likes = [distribute_tensor(c, mesh, [Shard(0)], src_data_rank=None) for c in full]
        cs = [c.to_local() for c in likes]
        t_all, b_all, ref = timed(lambda: distributed.gathered_directions(K, likes, cs), args.repeats)
        t_own, b_own, got = timed(lambda: distributed.owner_directions(K, likes, cs), args.repeats)
    else:
        def every():
            return [K.grad(c) for c in full]

        def owner():  # replicated_step's exchange, with the direction as the "step"
            seen = []
            distributed.replicated_step(full, full, [torch.zeros_like(c) for c in full], kappa=K, process_group=None,
                                        beta1=0.0, maximize=False,
                                        step=lambda p, g, m, kappa, **kw: seen.append(kappa.grad(p[0])))
            return seen

        t_all, b_all, ref = timed(every, args.repeats)
        t_own, b_own, got = timed(owner, args.repeats)
    same = all(torch.equal(a, b) for a, b in zip(ref, got))
    sums = torch.tensor([b_all, b_own], dtype=torch.float64)
    dist.all_reduce(sums)
    times = torch.tensor([t_all, t_own], dtype=torch.float64)
    dist.all_reduce(times, op=dist.ReduceOp.MAX)  # a step ends when its slowest rank is done
    result.update(equal=same, gather_everything=dict(seconds=float(times[0]), bytes_received_all_ranks=int(sums[0])),
                  owner=dict(seconds=float(times[1]), bytes_received_all_ranks=int(sums[1])))
    if rank == 0:
        Path(out).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--shape", type=int, nargs=2, default=[256, 256])
    parser.add_argument("--matrices", type=int, default=8)
    parser.add_argument("--mode", choices=["fsdp", "ddp"], nargs="+", default=["fsdp", "ddp"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    rows = []
    for mode in args.mode:
        for world in args.world:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            out = Path(f"/tmp/bench_sharded_ns_{os.getpid()}_{mode}_{world}.json")
            run = argparse.Namespace(**{**vars(args), "mode": mode})
            mp.start_processes(worker, args=(world, port, run, str(out)), nprocs=world, start_method="spawn")
            row = json.loads(out.read_text())
            out.unlink()
            rows.append(row)
            a, o = row["gather_everything"], row["owner"]
            print(f"{mode} world={world} {row['matrices']} x {tuple(row['shape'])}: gather-everything "
                  f"{a['seconds'] * 1e3:.1f} ms, {a['bytes_received_all_ranks'] / 2**20:.2f} MiB; owner "
                  f"{o['seconds'] * 1e3:.1f} ms, {o['bytes_received_all_ranks'] / 2**20:.2f} MiB; equal={row['equal']}")
    if args.json:
        args.json.write_text(json.dumps(dict(cpu=os.cpu_count(), torch=torch.__version__, rows=rows), indent=1))


if __name__ == "__main__":
    main()
