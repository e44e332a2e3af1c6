"""DistributedLion on 2 and 4 gloo processes against a single-process simulation of the same workers.

The simulation below is written independently of `lionlib.distributed` (plain torch, one worker
after another, votes summed as integers), with the same floating-point operations, so the
comparison is bit for bit. Bytes per step: what the optimizer hands to the all-gather, and what
the process actually wrote to its sockets (`wchar` of /proc/self/io, which counts gloo's writes),
against an fp32 all-reduce of the same gradient.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from test_distributed_common import GROUP, results

from lionlib.distributed import DistributedLion

pytestmark = GROUP

LR, BETAS, WD = 1e-2, (0.9, 0.99), 0.5
SIM_STEPS, LONG_STEPS = 5, 50


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 24), nn.Tanh(), nn.Linear(24, 5))


def local_batch(rank: int, step: int):
    g = torch.Generator().manual_seed(1000 * rank + step)
    return torch.randn(4, 12, generator=g), torch.randn(4, 5, generator=g)


def local_grads(net: nn.Module, rank: int, step: int) -> None:
    x, y = local_batch(rank, step)
    F.mse_loss(net(x), y).backward()


def wchar() -> int:
    """Bytes this process passed to write-type system calls so far (sockets included)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return -1


def worker(rank: int, world: int, vote: str) -> dict:
    net = build()
    if rank != 0:  # replicas start apart: the optimizer's broadcast must make them equal
        with torch.no_grad():
            for p in net.parameters():
                p.add_(1.0)
    idle = nn.Parameter(torch.ones(3))  # never gets a gradient: c = 0 on every worker
    opt = DistributedLion([{"params": list(net.parameters())}, {"params": [idle], "weight_decay": 0.0}],
                          lr=LR, betas=BETAS, weight_decay=WD, vote=vote)
    snapshots, saved = [], None
    for step in range(LONG_STEPS):
        local_grads(net, rank, step)
        opt.step()
        opt.zero_grad()
        if step < SIM_STEPS:
            snapshots.append([p.detach().clone() for p in net.parameters()])
        if step == 2:
            saved = (copy.deepcopy(opt.state_dict()), [p.detach().clone() for p in net.parameters()])
    final = [p.detach().clone() for p in net.parameters()]
    momenta = [opt.state[p]["exp_avg"].clone() for p in net.parameters()]
    # state_dict round trip: a fresh optimizer loaded at step 3 continues exactly (steps 3, 4)
    with torch.no_grad():
        for p, s in zip(net.parameters(), saved[1]):
            p.copy_(s)
    opt2 = DistributedLion([{"params": list(net.parameters())}, {"params": [idle], "weight_decay": 0.0}],
                           lr=LR, betas=BETAS, weight_decay=WD, vote=vote)
    opt2.load_state_dict(saved[0])
    for step in (3, 4):
        local_grads(net, rank, step)
        opt2.step()
        opt2.zero_grad()
    resumed = [p.detach().clone() for p in net.parameters()]
    return dict(snapshots=snapshots, final=final, momenta=momenta, idle=idle.detach().clone(), resumed=resumed,
                bytes_sent=opt.last_bytes_sent, bytes_received=opt.last_bytes_received, n=sum(p.numel() for p in net.parameters()) + 3)


def bytes_worker(rank: int, world: int) -> dict:
    """Socket bytes written by one DistributedLion step and by one fp32 all-reduce of the same grads."""
    net = nn.Linear(1024, 1024, bias=False)
    opt = DistributedLion(net.parameters(), lr=LR)
    x = torch.randn(8, 1024)
    net(x).square().mean().backward()
    out = {}
    for trial in range(2):  # the first call of a collective may set up connections
        dist.barrier()
        before = wchar()
        opt.step()
        out["lion"] = wchar() - before
        dist.barrier()
        before = wchar()
        dist.all_reduce(net.weight.grad.clone())
        out["allreduce_fp32"] = wchar() - before
    out["payload"] = opt.last_bytes_sent
    out["n"] = net.weight.numel()
    return out


def simulate(world: int, vote: str, steps: int) -> list[list[torch.Tensor]]:
    """The workers one after another in one process: the paper's algorithm written out."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' matmuls run on one thread: same sums
    try:
        net = build()
        params = [p.detach().clone() for p in net.parameters()]
        momenta = [[torch.zeros_like(p) for p in params] for _ in range(world)]
        history = []
        for step in range(steps):
            total = [torch.zeros(p.shape, dtype=torch.int64) for p in params]
            for r in range(world):
                with torch.no_grad():
                    for q, p in zip(net.parameters(), params):
                        q.copy_(p)
                net.zero_grad()
                local_grads(net, r, step)
                for i, q in enumerate(net.parameters()):
                    g, m = q.grad, momenta[r][i]
                    c = torch.add(m * BETAS[0], g, alpha=1 - BETAS[0])
                    zero_as = 1 if r % 2 == 0 else -1
                    total[i] += torch.where(c > 0, 1, torch.where(c < 0, -1, zero_as))
                    momenta[r][i] = torch.add(m * BETAS[1], g, alpha=1 - BETAS[1])
            for i, p in enumerate(params):
                direction = total[i].sign().float() if vote == "majority" else total[i].float() / world
                p.mul_(1 - LR * WD)
                p.add_(direction, alpha=-LR)
            history.append([p.clone() for p in params])
        return history
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=[(2, "majority"), (2, "average"), (4, "majority"), (4, "average")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def runs(request, tmp_path_factory):
    world, vote = request.param
    return world, vote, [r[f"dlion-{vote}"] for r in results(world, tmp_path_factory)]


def test_equals_the_single_process_simulation_bit_for_bit(runs):
    world, vote, results = runs
    expected = simulate(world, vote, SIM_STEPS)
    for res in results:
        for step, (got, want) in enumerate(zip(res["snapshots"], expected)):
            for a, b in zip(got, want):
                assert torch.equal(a, b), f"step {step}"


def test_the_vote_matters(runs):
    """The simulation can fail: majority and average (and one worker alone) give other steps."""
    world, vote, results = runs
    other = simulate(world, "average" if vote == "majority" else "majority", SIM_STEPS)
    alone = simulate(1, vote, SIM_STEPS)
    got = results[0]["snapshots"][-1]
    if world > 2:  # with two workers sign(s1 + s2) = (s1 + s2) / 2
        assert not all(torch.equal(a, b) for a, b in zip(got, other[-1]))
    assert not all(torch.equal(a, b) for a, b in zip(got, alone[-1]))


def test_replicas_stay_identical_for_50_steps_with_their_own_momenta(runs):
    world, vote, results = runs
    for res in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(res["final"], results[0]["final"]))
        assert not all(torch.equal(a, b) for a, b in zip(res["momenta"], results[0]["momenta"]))


def test_all_zero_coordinates_take_no_step_with_an_even_number_of_workers(runs):
    world, vote, results = runs
    for res in results:
        assert torch.equal(res["idle"], torch.ones(3))  # +1 from even ranks, -1 from odd ranks: sum 0


def test_state_dict_round_trip_continues_exactly(runs):
    world, vote, results = runs
    for res in results:
        assert all(torch.equal(a, b) for a, b in zip(res["resumed"], res["snapshots"][4]))


def test_bytes_per_step_are_one_bit_per_parameter(runs):
    world, vote, results = runs
    for res in results:
        assert res["bytes_sent"] == -(-res["n"] // 8)
        assert res["bytes_received"] == world * res["bytes_sent"]


def test_socket_bytes_one_step_vs_fp32_all_reduce(tmp_path_factory):
    """Measured on the sockets: a 1M-parameter step writes ~n/8 bytes per worker on 2 workers,
    ~32x less than an fp32 all-reduce of the gradient."""
    if not Path("/proc/self/io").exists():
        pytest.skip("needs /proc/self/io (Linux)")
    for res in (r["bytes"] for r in results(2, tmp_path_factory)):
        print(res)
        assert res["payload"] == res["n"] // 8
        assert res["payload"] <= res["lion"] <= 1.1 * res["payload"], res
        assert res["allreduce_fp32"] >= 4 * res["n"] * 0.9, res
        assert res["allreduce_fp32"] / res["lion"] > 25, res
