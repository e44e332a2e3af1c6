"""LionK under DDP and FSDP2 (gloo, CPU) against one process with the same global batch.

Exactness, and where it ends:
- FSDP2, float64, data split over ranks: every K, 5 steps, within 1e-6 relative of one process
  (the only differences are fp64 summation orders, ~1e-16; sign() would amplify one only if a
  momentum coordinate were within ~1e-16 of 0).
- FSDP2, float32, every rank given the same batch: the averaged gradient (x + x) / 2 is exact, so
  the elementwise K on the default C++ kernel (and Triton, interpreted) equal one process bit for
  bit, and the kernel is seen to take the local shards.
- DDP, float64: 5 steps within 1e-10. DDP, float32, one step: the gradient average differs from one
  process in the last bits, which sign() turns into a full step where the momentum is near 0; so
  the momentum is compared to 1e-6 and the update only where |c| > 1e-3 max |c|.
- Sharded Newton-Schulz (LionK nuclear and lionlib.Muon under FSDP2, Muon(process_group=...) under
  DDP; MLP, GPT and a conv net), float32, the same batch on every rank: within 1e-6 of one process
  on 2 and 4 processes (bit-equal in practice: the owner runs the same Newton-Schulz on the same
  c), and the Newton-Schulz calls of all ranks add up to one process's.
One `spawn` per world size runs all cases (process start-up dominates on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from test_distributed_common import GROUP, rel_err, results

from lionlib import kappa as kappa_lib
from lionlib.monitor import ConstraintMonitor
from lionlib.optim import LionK

pytestmark = GROUP

KAPPAS = kappa_lib.names() + ["muon"]  # muon: nuclear norm by Newton-Schulz on the 2-D weights
ELEMENTWISE = [k for k in kappa_lib.names() if kappa_lib.get(k).elementwise]
STEPS, LR, WD = 5, 1e-2, 0.5


# ----------------------------------------------------------------------------------------------
# Models, data, optimizers: the same code in the workers and in the single-process reference.


def build(model: str, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    if model == "mlp":  # 5 output rows: uneven shards on 2 ranks, an empty one on 4
        net = nn.Sequential(nn.Linear(12, 24), nn.Tanh(), nn.Linear(24, 24), nn.Tanh(), nn.Linear(24, 5))
    elif model == "conv":  # a 4-D kernel of 5 output channels: Muon reads it as the 5 x 27 matrix
        net = nn.Sequential(nn.Conv2d(3, 5, 3), nn.Tanh(), nn.Flatten(), nn.Linear(80, 5))
    else:
        from lionlib.experiments.gpt_model import GPT, GPTConfig

        net = GPT(GPTConfig(block_size=8, vocab_size=32, n_layer=2, n_head=2, n_embd=16))
    return net.to(dtype)


def batch(model: str, step: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(100 + step)
    if model in ("mlp", "conv"):
        x = torch.randn(8, 12, generator=g, dtype=dtype) if model == "mlp" else torch.randn(8, 3, 6, 6, generator=g, dtype=dtype)
        return x, torch.randn(8, 5, generator=g, dtype=dtype)
    idx = torch.randint(0, 32, (4, 9), generator=g)
    return idx[:, :-1], idx[:, 1:]


def loss_of(model: str, net: nn.Module, x, y):
    if model in ("mlp", "conv"):
        return F.mse_loss(net(x), y)
    logits, _ = net(x)  # the loss in the model's dtype (GPT.forward's own casts to fp32)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def make_opt(net: nn.Module, kappa: str) -> LionK:
    matrices = [p for p in net.parameters() if p.dim() >= 2]
    others = [p for p in net.parameters() if p.dim() < 2]
    if kappa.startswith("Muon"):  # lionlib.Muon on the matrices only; "-ddp": Newton-Schulz by owner ranks
        import torch.distributed as dist

        from lionlib.muon import Muon

        group = dist.group.WORLD if kappa.endswith("-ddp") and dist.is_initialized() else None
        cautious = "cautious" in kappa
        return Muon(matrices, lr=LR, weight_decay=WD, adjust_lr_fn="original", cautious=cautious,
                    cautious_weight_decay=cautious, process_group=group)
    if kappa in ("nuclear", "muon"):
        k = kappa_lib.get("nuclear", method="svd" if kappa == "nuclear" else "newton_schulz")
        groups = [{"params": matrices, "kappa": k}, {"params": others, "kappa": "l1"}]
        return LionK(groups, lr=LR, weight_decay=WD)
    k = kappa_lib.get("lp", p=1.5) if kappa == "lp" else kappa
    return LionK(net.parameters(), kappa=k, lr=LR, weight_decay=WD)


def shard(net: nn.Module, model: str) -> None:
    from torch.distributed.fsdp import fully_shard

    parts = [m for m in net if isinstance(m, (nn.Linear, nn.Conv2d))] if model != "gpt" else list(net.transformer.h)
    for m in parts:
        fully_shard(m)
    fully_shard(net)


def force_backend(backend: str | None):
    """Make LionK take `backend` (None: its own choice) by replacing optim's resolver."""
    import lionlib.optim as optim

    original = getattr(optim, "_original_resolve", optim._resolve_backend)
    optim._original_resolve = original
    optim._resolve_backend = original if backend is None else (lambda *a: backend)


def train(case: dict, rank: int = 0, world: int = 1, mode: str = "single") -> dict:
    """`STEPS` steps of `case`; mode "single", "fsdp" or "ddp". Returns full params (and more)."""
    from lionlib.distributed import full_tensor

    dtype = getattr(torch, case["dtype"])
    model = case["model"]
    net = build(model, dtype)
    if mode == "fsdp":
        shard(net, model)
    elif mode == "ddp":
        net = nn.parallel.DistributedDataParallel(net)
    force_backend(case.get("backend"))
    if case.get("broken"):  # on purpose: grad K of each shard alone (a local norm) instead of the global one
        import lionlib.distributed as distributed

        true_grad, true_owner = distributed._GlobalK.grad, distributed.owner_directions
        distributed._GlobalK.grad = lambda self, x: self.kappa.grad(x)
        distributed.owner_directions = lambda kappa, likes, cs: [distributed._direction(kappa, c) for c in cs]
    ns_calls = []  # how many Newton-Schulz / SVD evaluations this rank ran
    if case.get("count"):
        from lionlib.kappa import matrix

        true_nuclear = matrix.Nuclear.grad
        matrix.Nuclear.grad = lambda self, x: (ns_calls.append(tuple(x.shape)), true_nuclear(self, x))[1]
    opt = make_opt(net, case["kappa"])
    monitor = ConstraintMonitor(opt, net.named_parameters()) if case.get("monitor") else None
    taken = []
    if mode == "fsdp" and case.get("spy"):  # how many tensors the C++ kernel took itself
        from lionlib import fused

        original = fused.cpp_step

        def spy(params, *args, **kwargs):
            rest = original(params, *args, **kwargs)
            taken.append((len(params) - len(rest[0]), [type(p).__name__ for p in params]))
            return rest

        fused.cpp_step = spy
    per_step = []  # FSDP2 step vs the for-loop reference on the gathered tensors, same gradient
    for step in range(case.get("steps", STEPS)):
        x, y = batch(model, step, dtype)
        if mode != "single" and not case.get("same_data"):
            n = x.shape[0] // world
            x, y = x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]
        loss_of(model, net, x, y).backward()
        expected = reference_step(opt) if case.get("spy") else None
        opt.step()
        if expected is not None:
            per_step.append(max(rel_err(full_tensor(p), e) for p, e in expected))
        if monitor:
            monitor.record()  # before zero_grad: the KKT score reads the gradient
        opt.zero_grad()
    if taken is not None and mode == "fsdp" and case.get("spy"):
        fused.cpp_step = original
    if case.get("broken"):
        distributed._GlobalK.grad, distributed.owner_directions = true_grad, true_owner
    if case.get("count"):
        matrix.Nuclear.grad = true_nuclear
    module = net.module if mode == "ddp" else net
    params = {n: full_tensor(p.detach()).clone() for n, p in module.named_parameters()}
    momenta = {n: full_tensor(opt.state[p]["exp_avg"]).clone() for n, p in module.named_parameters() if p in opt.state}
    frame = monitor.frame()[["constraint", "kkt"]].to_numpy() if monitor else None
    return dict(params=params, momenta=momenta, monitor=frame, taken=taken, per_step=per_step, ns_calls=ns_calls)


def reference_step(opt: LionK) -> list:
    """[(param, what lionk_step's for-loop makes of its gathered copy)] for one group of `opt`."""
    from lionlib.distributed import full_tensor
    from lionlib.optim import lionk_step

    (group,) = opt.param_groups
    params = [p for p in group["params"] if p.grad is not None]
    full = [full_tensor(p.detach()).clone() for p in params]
    grads = [full_tensor(p.grad) for p in params]
    momenta = [full_tensor(opt.state[p]["exp_avg"]).clone() if "exp_avg" in opt.state[p] else torch.zeros_like(f)
               for p, f in zip(params, full)]
    beta1, beta2 = group["betas"]
    lionk_step(full, grads, momenta, backend="forloop", kappa=group["kappa"], lr=group["lr"], beta1=beta1,
               beta2=beta2, weight_decay=group["weight_decay"], implicit_decay=False, maximize=False)
    return list(zip(params, full))


# ----------------------------------------------------------------------------------------------
# Cases


FSDP64 = [dict(model=m, kappa=k, dtype="float64") for m in ("mlp", "gpt") for k in KAPPAS]
FSDP32 = [dict(model="mlp", kappa=k, dtype="float32", same_data=True, spy=True) for k in ELEMENTWISE] + [
    dict(model="gpt", kappa="l1", dtype="float32", same_data=True, spy=True),
    dict(model="mlp", kappa="l1", dtype="float32", same_data=True, backend="triton"),
]
FOUR = [c for c in FSDP64 if c["kappa"] in ("l1", "l2", "linf", "nuclear", "muon") and (c["model"] == "mlp" or c["kappa"] == "l1")]
BROKEN = [dict(model="mlp", kappa=k, dtype="float64", broken=True) for k in ("l2", "nuclear")]
MONITOR = [dict(model="mlp", kappa=k, dtype="float64", monitor=True) for k in ("l1", "l2")]
DDP64 = [dict(model="mlp", kappa=k, dtype="float64") for k in KAPPAS]
# Sharded Newton-Schulz: float32, the same batch on every rank (an exact gradient average), so a
# difference from one process can only come from the sharing of the orthogonalisations.
OWNER_FSDP = [dict(model="mlp", kappa=k, dtype="float32", same_data=True, count=True)
              for k in ("muon", "Muon", "Muon-cautious")] + [dict(model=m, kappa="Muon", dtype="float32", same_data=True,
                                                                   count=True) for m in ("gpt", "conv")]
OWNER_DDP = [dict(model="mlp", kappa=k, dtype="float32", same_data=True, count=True) for k in ("Muon-ddp", "Muon-cautious-ddp")]
DDP32 = [dict(model="mlp", kappa=k, dtype="float32", steps=1, backend=b)
         for b in ("forloop", "foreach", "cpp") for k in (KAPPAS if b != "cpp" else ELEMENTWISE)]
DDP32 += [dict(model="mlp", kappa="l1", dtype="float32", steps=1, backend="triton")]


def name(case: dict) -> str:
    """A unique id: model-kappa-dtype, then the other settings as key=value."""
    main = [str(case[k]) for k in ("model", "kappa", "dtype")]
    return "-".join(main + [f"{k}={v}" for k, v in case.items() if k not in ("model", "kappa", "dtype", "spy")])


def world_jobs(rank: int, world: int, tmp: str) -> dict:
    """All cases of this file for one world size (run by test_distributed_common.results)."""
    fsdp = (FSDP64 + FSDP32 + MONITOR + BROKEN if world == 2 else FOUR) + OWNER_FSDP
    out = {name(c): train(c, rank, world, "fsdp") for c in fsdp}
    out.update({"ddp-" + name(c): train(c, rank, world, "ddp") for c in OWNER_DDP})
    if world == 2:
        out.update({"ddp-" + name(c): train(c, rank, world, "ddp") for c in DDP64 + DDP32})
        out["dcp"] = dcp_job(rank, world, Path(tmp) / "checkpoint")
    return out


def dcp_job(rank: int, world: int, path: Path) -> dict:
    """Save model and sharded optimizer state with torch.distributed.checkpoint after 2 steps, go
    on for 3; then a fresh model and optimizer load the checkpoint and do the same 3 steps."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from lionlib.distributed import full_tensor

    def run(net, opt, steps):
        for step in steps:
            x, y = batch("mlp", step, torch.float64)
            n = x.shape[0] // world
            loss_of("mlp", net, x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]).backward()
            opt.step()
            opt.zero_grad()

    def fresh():
        net = build("mlp", torch.float64)
        shard(net, "mlp")
        return net, make_opt(net, "l2")  # a whole-tensor K: the momentum must come back sharded right

    force_backend(None)
    net, opt = fresh()
    run(net, opt, range(2))
    model_sd, optim_sd = get_state_dict(net, opt)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(path))
    kinds = sorted({type(v["exp_avg"]).__name__ for v in optim_sd["state"].values()})
    run(net, opt, range(2, 5))
    straight = {n: full_tensor(p.detach()).clone() for n, p in net.named_parameters()}

    net2, opt2 = fresh()
    model_sd2, optim_sd2 = get_state_dict(net2, opt2)
    state = {"model": model_sd2, "optim": optim_sd2}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(net2, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    run(net2, opt2, range(2, 5))
    resumed = {n: full_tensor(p.detach()).clone() for n, p in net2.named_parameters()}
    return dict(straight=straight, resumed=resumed, kinds=kinds)


@pytest.fixture(scope="module")
def world2(tmp_path_factory):
    return results(2, tmp_path_factory)


@pytest.fixture(scope="module")
def world4(tmp_path_factory):
    return results(4, tmp_path_factory)


def assert_close_to_single(results, case, key, tol):
    ref = train(case)
    init = build(case["model"], getattr(torch, case["dtype"])).state_dict()
    for rank, res in enumerate(results):
        got = res[key]
        assert got["params"].keys() == ref["params"].keys()
        for n in ref["params"]:
            err = rel_err(got["params"][n], ref["params"][n])
            assert err <= tol, f"rank {rank} {n}: relative error {err:.3g} > {tol:g}"
            # the step moved it: the comparison is not of two untouched initialisations
            assert rel_err(ref["params"][n], init[n]) > 1e-4, n
    return ref


@pytest.mark.parametrize("case", FSDP64, ids=name)
def test_fsdp2_two_processes_equal_one_process(world2, case):
    assert_close_to_single(world2, case, name(case), 1e-6)


@pytest.mark.parametrize("case", FOUR, ids=name)
def test_fsdp2_four_processes_equal_one_process(world4, case):
    assert_close_to_single(world4, case, name(case), 1e-6)


@pytest.mark.parametrize("case", FSDP32, ids=name)
def test_fsdp2_float32_kernels_on_local_shards(world2, case):
    """Each step on the shards equals the for-loop reference on the gathered tensors with the same
    gradient: bit for bit where the kernel is exact (fused tests), to a few ulp for tanh/sqrt K.
    End to end against one process: FSDP's own fp32 backward differs in the last bits (LayerNorm)."""
    ref = train(case)
    exact = case["kappa"] in ("l1", "half_sq_l2", "huber", "l1_plus_sq_l2")
    for res in world2:
        got = res[name(case)]
        if case.get("spy"):
            assert len(got["per_step"]) == STEPS
            assert max(got["per_step"]) <= (0.0 if exact else 1e-6), got["per_step"]
        for n in ref["params"]:
            assert rel_err(got["params"][n], ref["params"][n]) <= 1e-6, n
            assert rel_err(got["momenta"][n], ref["momenta"][n]) <= 1e-6, n
        if case.get("spy"):  # the C++ kernel took every non-empty local shard, as plain tensors
            assert got["taken"] and all(k == len(types) and "DTensor" not in types for k, types in got["taken"]), got["taken"]


@pytest.mark.parametrize("case", MONITOR, ids=name)
def test_constraint_monitor_reports_the_global_norm_under_fsdp2(world2, case):
    ref = train(case)
    for res in world2:
        got = res[name(case)]["monitor"]
        np.testing.assert_allclose(got, ref["monitor"], rtol=1e-9, atol=1e-12)
        assert np.isfinite(got).all()


@pytest.mark.parametrize("case", DDP64, ids=name)
def test_ddp_float64_equals_one_process(world2, case):
    ref = train(case)
    for res in world2:
        got = res["ddp-" + name(case)]
        for n in ref["params"]:
            assert rel_err(got["params"][n], ref["params"][n]) <= 1e-10, n
            assert rel_err(got["momenta"][n], ref["momenta"][n]) <= 1e-10, n


@pytest.mark.parametrize("case", DDP32, ids=name)
def test_ddp_float32_momentum_tight_update_away_from_zero(world2, case):
    ref = train(case)
    init = build("mlp", torch.float32).state_dict()
    for res in world2:
        got = res["ddp-" + name(case)]
        for n in ref["params"]:
            assert rel_err(got["momenta"][n], ref["momenta"][n]) <= 1e-6, n
            # after one step c = (1 - beta1) g and exp_avg = (1 - beta2) g: same sign, so |exp_avg| ranks |c|
            m = ref["momenta"][n].abs()
            away = m > 1e-3 * m.max()
            step, ref_step = got["params"][n] - init[n], ref["params"][n] - init[n]
            assert away.any()
            assert (step - ref_step)[away].abs().max() <= 1e-4 * LR, n


def test_sharded_optimizer_state_round_trips_through_distributed_checkpoint(world2):
    for res in world2:
        got = res["dcp"]
        assert got["kinds"] == ["DTensor"]  # saved sharded, not gathered
        for n, p in got["straight"].items():
            assert torch.equal(got["resumed"][n], p), n


@pytest.mark.parametrize("case", BROKEN, ids=name)
def test_the_fsdp2_comparison_fails_when_the_norm_is_taken_per_shard(world2, case):
    """The check can fail: with grad K of each shard alone the result is far from one process."""
    ref = train({k: v for k, v in case.items() if k != "broken"})
    for res in world2:
        got = res[name(case)]
        assert max(rel_err(got["params"][n], ref["params"][n]) for n in ref["params"]) > 1e-3


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("case", OWNER_FSDP + OWNER_DDP, ids=name)
def test_sharded_newton_schulz_runs_once_per_matrix_and_equals_one_process(world2, world4, case, world):
    """Each matrix's Newton-Schulz runs on one rank (the evaluations of all ranks add up to one
    process's), and the parameters equal one process's within 1e-6 (float32)."""
    results = world2 if world == 2 else world4
    key = ("ddp-" if case["kappa"].endswith("-ddp") else "") + name(case)
    ref = train(case)
    assert len(ref["ns_calls"]) > 0
    assert sum(len(res[key]["ns_calls"]) for res in results) == len(ref["ns_calls"])
    assert all(len(res[key]["ns_calls"]) > 0 for res in results[:2]), "the work is spread over the ranks"
    init = build(case["model"], torch.float32).state_dict()
    for rank, res in enumerate(results):
        for n, p in ref["params"].items():
            if p.dim() >= 2:
                assert rel_err(res[key]["params"][n], p) <= 1e-6, f"rank {rank} {n}"
                assert rel_err(p, init[n]) > 1e-4, n


def test_case_ids_are_unique():
    """Results are keyed by these ids: two cases with one id would read each other's results."""
    fsdp, ddp = FSDP64 + FSDP32 + MONITOR + BROKEN + FOUR + OWNER_FSDP, DDP64 + DDP32 + OWNER_DDP
    ids = [name(c) for c in fsdp] + ["ddp-" + name(c) for c in ddp]
    assert len(set(ids)) == len(set(map(str, fsdp))) + len(ddp)
