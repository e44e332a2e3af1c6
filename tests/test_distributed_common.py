"""The multi-process harness of tests/test_distributed*.py, and the checks that need no process group.

`run_workers(fn, world, ...)` starts `world` processes (spawn), each joins a gloo group on
127.0.0.1 and returns `fn(rank, world, *args)`; the results come back through files. The whole
run is bounded in time: processes still alive at the deadline are killed and the test fails,
and a crash (a SIGSEGV too) fails the test with the exit code and the worker's traceback.
All multi-process cases of one world size run in one process group, once per session
(`results`), whichever xdist worker asks first; the tests also carry one xdist group.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lionlib import fused
from lionlib.distributed import DistributedLion, pack_signs, unpack_signs

GROUP = pytest.mark.xdist_group("distributed")
pytestmark = GROUP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank, world, port, out, args):
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=60))
        result = fn(rank, world, *args)
        torch.save(result, Path(out) / f"{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (Path(out) / f"{rank}.err").write_text(traceback.format_exc())
        raise


def run_workers(fn, world: int, *args, tmp_path: Path, timeout: float = 90.0) -> list:
    """[fn(rank, world, *args) for each rank], each in its own process of a gloo group."""
    out = Path(tmp_path) / f"workers-{fn.__name__}-{world}"
    out.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, str(out), args), daemon=True) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    alive = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    errors = "\n".join(f.read_text() for f in sorted(out.glob("*.err")))
    if alive:
        pytest.fail(f"{fn.__name__} on {world} processes: ranks {alive} still running after {timeout:.0f} s\n{errors}")
    codes = [p.exitcode for p in procs]
    if any(codes):
        pytest.fail(f"{fn.__name__} on {world} processes: exit codes {codes} (negative = killed by that signal)\n{errors}")
    return [torch.load(out / f"{r}.pt", weights_only=False) for r in range(world)]


def _all_jobs(rank: int, world: int, tmp: str) -> dict:
    """Every multi-process case of tests/test_distributed*.py, in one process group per world size:
    starting processes costs more than all the cases together on a 2-core machine."""
    import test_distributed as fsdp
    import test_distributed_lion as lion

    out = fsdp.world_jobs(rank, world, tmp)
    out.update({f"dlion-{vote}": lion.worker(rank, world, vote) for vote in ("majority", "average")})
    if world == 2:
        out["bytes"] = lion.bytes_worker(rank, world)
    return out


_CACHE: dict[int, list] = {}


def shared_dir(tmp_path_factory) -> Path:
    """A folder all pytest-xdist workers of this session share (its basetemp's parent under xdist;
    without xdist the session's own basetemp)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "lionlib-distributed"


def results(world: int, tmp_path_factory, timeout: float = 240.0) -> list[dict]:
    """`_all_jobs` on `world` processes, run once per session and shared through files: the xdist
    group alone does not keep these tests on one worker (pytest 9.2 with xdist 3.8 spreads them),
    so the first worker to get here runs the processes under a file lock and the other waits and
    reads. Bounded by `timeout` seconds; a failure is reported to both."""
    if world not in _CACHE:
        folder = shared_dir(tmp_path_factory) / f"world{world}"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (folder / "failed").exists():
                pytest.fail((folder / "failed").read_text())
            if not (folder / "done").exists():
                try:
                    run_workers(_all_jobs, world, str(folder), tmp_path=folder, timeout=timeout)
                except BaseException as e:
                    (folder / "failed").write_text(f"(the run on another worker) {e}")
                    raise
                (folder / "done").touch()
        _CACHE[world] = [torch.load(folder / f"workers-_all_jobs-{world}" / f"{r}.pt", weights_only=False) for r in range(world)]
    return _CACHE[world]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (0 when both are 0)."""
    a, b = a.detach().double(), b.detach().double()
    denom = b.norm().item()
    return (a - b).norm().item() / denom if denom > 0 else (a - b).norm().item()


# ----------------------------------------------------------------------------------------------
# Checks without a process group


class _Sub(torch.Tensor):
    """A tensor subclass: the kernels must not take its data_ptr (a DTensor's is 0)."""


@pytest.mark.parametrize("which", ["param", "grad", "exp_avg"])
def test_a_tensor_subclass_never_reaches_the_cpp_kernel(which):
    """_split checks the type before any pointer: a subclass is handed back for foreach."""
    if not fused.cpp_available():
        pytest.skip("no C++ kernel here")
    tensors = {k: torch.randn(64) for k in ("param", "grad", "exp_avg")}
    tensors[which] = tensors[which].as_subclass(_Sub)
    hyper = dict(kappa=fused_kappa(), lr=0.1, beta1=0.9, beta2=0.99, weight_decay=0.0, implicit_decay=False, maximize=False)
    rest = fused.cpp_step([tensors["param"]], [tensors["grad"]], [tensors["exp_avg"]], **hyper)
    assert len(rest[0]) == 1 and rest[0][0] is tensors["param"]
    plain = fused.cpp_step([torch.randn(64)], [torch.randn(64)], [torch.randn(64)], **hyper)
    assert plain[0] == []  # the check is not refusing everything


def fused_kappa():
    from lionlib import kappa

    return kappa.get("l1")


def test_pack_unpack_round_trip():
    g = torch.Generator().manual_seed(0)
    for n in (1, 7, 8, 9, 1000):
        bits = torch.rand(n, generator=g) > 0.5
        packed = pack_signs(bits)
        assert packed.dtype == torch.uint8 and packed.numel() == -(-n // 8)
        assert torch.equal(unpack_signs(packed, n), bits)
    # bit j of byte i is element 8 i + j
    assert pack_signs(torch.tensor([True] + [False] * 7 + [False, True])).tolist() == [1, 2]


def test_distributed_lion_refuses_bad_input_clearly():
    p = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="1-bit signs.*l2"):
        DistributedLion(p, kappa="l2")
    with pytest.raises(ValueError, match="vote"):
        DistributedLion(p, vote="median")
    with pytest.raises(ValueError, match="lr=-1"):
        DistributedLion(p, lr=-1)
    with pytest.raises(ValueError, match="beta2"):
        DistributedLion(p, betas=(0.9, 1.5))
    if not dist.is_initialized():
        with pytest.raises(RuntimeError, match="init_process_group"):
            DistributedLion(p)
