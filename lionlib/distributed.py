"""Lion-K beyond one process: sharded parameters (FSDP2 / DTensor), and Distributed Lion.

**DDP** needs nothing here: `DistributedDataParallel` averages the gradients before `step`, so
every replica runs the same `LionK` step (tests/test_distributed.py compares it with one process).
Every replica then also computes every Newton-Schulz; `replicated_step` (what `lionlib.Muon` runs
when given a `process_group`) has each matrix's owner rank compute it and broadcast the result.

**FSDP2** (`torch.distributed.fsdp.fully_shard`) turns parameters, gradients and the momentum into
DTensors sharded over ranks. `sharded_step` (called by `lionlib.optim.lionk_step` when it meets a
DTensor) runs Lion-K on them with the same result as one process holding the whole tensor:
- elementwise K (l1 = Lion, huber, ...): the step on each rank's local shard, through the usual
  paths (the C++ / Triton kernels get the plain local tensor; a DTensor never reaches a kernel);
- lp and l2: grad K needs the norm of the whole tensor: each shard's partial max and partial
  p-th power sum are all-reduced (two numbers per tensor), and the direction is computed locally;
- the other whole-tensor K (linf, relativistic_norm, logsumexp, nuclear = Muon's Newton-Schulz):
  grad K of each tensor is computed once, by an owner rank (round-robin over the tensors of the
  step): every rank sends its shard of the momentum blend c to the owner (gather), each owner
  computes grad K on its full tensors, and sends each rank its slice back (scatter)
  (`owner_directions`). Per tensor of n entries on N ranks that moves 2 n (N - 1)/N entries in
  all and runs grad K once, against n (N - 1) entries and N evaluations when every rank
  all-gathers c and computes grad K itself (`gathered_directions`, kept for meshes of more than
  one dimension, e.g. HSDP). benchmarks/bench_sharded_ns.py measures both.
`full_tensor` gives the global tensor, which `ConstraintMonitor` uses to report the global lambda ||x||.

**Distributed Lion** (Liu, Chen, Liang, Liu, 2024, arXiv 2404.00438): `DistributedLion` trains
data-parallel WITHOUT a gradient all-reduce. Each worker keeps its own momentum, computes its own
Lion direction sign(c_i) from its local gradient, and the workers exchange those signs packed 8 per
byte (one all-gather of uint8). Every worker then applies the same aggregated direction
(majority vote sign(sum_i s_i), or the average (1/N) sum_i s_i) and the same decay, so the
replicas stay identical. Use it on a plain model (no DDP wrapper): each rank runs forward and
backward on its own batch and calls `step()`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim import Optimizer

from lionlib import kappa as kappa_lib
from lionlib import validate

__all__ = ["is_dtensor", "has_dtensor", "full_tensor", "sharded_step", "replicated_step", "owner_directions",
           "gathered_directions", "DistributedLion", "pack_signs", "unpack_signs"]


def _dtensor_module():
    """torch.distributed.tensor if something imported it (1.5 s to import: lionlib does not)."""
    return sys.modules.get("torch.distributed.tensor")


def is_dtensor(t: Tensor) -> bool:
    """Whether t is a DTensor. Where none exists, torch.distributed.tensor was never imported."""
    module = _dtensor_module()
    return module is not None and isinstance(t, module.DTensor)


def has_dtensor(tensors) -> bool:
    """Whether any of `tensors` is a DTensor: one dict lookup per step when none can exist."""
    module = _dtensor_module()
    return module is not None and any(isinstance(t, module.DTensor) for t in tensors)


def full_tensor(t: Tensor) -> Tensor:
    """The whole tensor (a collective for a DTensor: every rank of its mesh must call it)."""
    return t.full_tensor() if is_dtensor(t) else t


# ----------------------------------------------------------------------------------------------
# Sharded parameters (FSDP2)


def _placed_like(t: Tensor, p: Tensor) -> Tensor:
    """`t` (grad or momentum) sharded as its parameter `p`, so the local shards line up."""
    if t.device_mesh != p.device_mesh or tuple(t.placements) != tuple(p.placements):
        t = t.redistribute(p.device_mesh, p.placements)
    return t


class _GlobalK:
    """K evaluated on one rank's shard of a whole-tensor K's argument, as on the full tensor.

    `grad(x)` takes the local shard of c (the layout of `like`, a DTensor) and returns the local
    shard of grad K(c). Quacks like a Kappa for `lionlib.optim`'s for-loop step."""

    def __init__(self, kappa: kappa_lib.Kappa, like: Tensor):
        self.kappa, self.like, self.symmetric = kappa, like, kappa.symmetric

    def _global(self, x: Tensor) -> Tensor:
        like = self.like
        return _dtensor_module().DTensor.from_local(x, like.device_mesh, like.placements, shape=like.shape, stride=like.stride())

    def _all_reduce(self, t: Tensor, op) -> Tensor:
        """Reduce a per-shard number over the mesh dims that shard the tensor (not the replicas)."""
        mesh = self.like.device_mesh
        for dim, placement in enumerate(self.like.placements):
            if placement.is_shard():
                dist.all_reduce(t, op=op, group=mesh.get_group(dim))
        return t

    def _lp_grad(self, x: Tensor) -> Tensor:
        """`Lp.grad` with its two whole-tensor quantities (max |x| and ||x / max|x| ||_p) all-reduced:
        two numbers per tensor, not the tensor. A shard may be empty (FSDP2 pads uneven splits)."""
        p = self.kappa.p
        if p == 1:
            return x.sign()
        scale = self._all_reduce(x.abs().amax() if x.numel() else x.new_zeros(()), dist.ReduceOp.MAX)
        u = x / torch.where(scale > 0, scale, torch.ones_like(scale))
        norm = self._all_reduce(torch.linalg.vector_norm(u, ord=p) ** p, dist.ReduceOp.SUM) ** (1 / p)
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))
        return u.sign() * (u.abs() / norm).pow(p - 1)

    def grad(self, x: Tensor) -> Tensor:
        mesh, placements = self.like.device_mesh, self.like.placements
        if self.kappa.name in ("lp", "l2"):
            return self._lp_grad(x)
        full = self.kappa.grad(self._global(x).full_tensor())  # all-gather; the same on every rank
        return _dtensor_module().distribute_tensor(full, mesh, placements, src_data_rank=None).to_local()  # own slice, no traffic


def _blend(m: Tensor, g: Tensor, beta1: float, maximize: bool) -> Tensor:
    """c = beta1 m + (1 - beta1) g of eq. (2) (-g if maximize), in fp32 for a low-precision momentum,
    as `lionlib.optim`'s step forms it."""
    work = m.float() if m.dtype in (torch.bfloat16, torch.float16) else m
    return work.mul(beta1).add_(g.to(work.dtype), alpha=-(1 - beta1) if maximize else 1 - beta1)


def _direction(kappa: kappa_lib.Kappa, c: Tensor) -> Tensor:
    """What the step adds times -lr: grad K(c), or -grad K(-c) for a K that is not symmetric."""
    return kappa.grad(c) if kappa.symmetric else kappa.grad(-c)


class _Given:
    """A K whose grad at this step's c is already known (computed by the tensor's owner rank).
    `sum_over_shards` adds a per-shard count over the ranks that shard `like` (for cautious masks)."""

    elementwise = False

    def __init__(self, kappa: kappa_lib.Kappa, direction: Tensor, like: Tensor | None = None):
        self.kappa, self.direction, self.like, self.symmetric = kappa, direction, like, kappa.symmetric

    def grad(self, x: Tensor) -> Tensor:
        return self.direction.to(x.dtype)

    def sum_over_shards(self, t: Tensor) -> Tensor:
        return t if self.like is None else _GlobalK(self.kappa, self.like)._all_reduce(t, dist.ReduceOp.SUM)


def _owned(like: Tensor) -> bool:
    """Whether the owner scheme covers this DTensor: a 1-D mesh that shards one dim (FSDP2)."""
    return like.device_mesh.ndim == 1 and like.placements[0].is_shard()


def gathered_directions(kappa: kappa_lib.Kappa, likes: list[Tensor], cs: list[Tensor]) -> list[Tensor]:
    """Local shards of grad K(c) for the DTensors `likes` (c given as local shards): every rank
    all-gathers each c and computes grad K on all of them (the reference `owner_directions` saves)."""
    return [_GlobalK(kappa, like).grad(c) if kappa.symmetric else _GlobalK(kappa, like).grad(-c)
            for like, c in zip(likes, cs)]


def owner_directions(kappa: kappa_lib.Kappa, likes: list[Tensor], cs: list[Tensor]) -> list[Tensor]:
    """As `gathered_directions`, but tensor i's grad K is computed only on rank i mod N of its mesh:
    its shards of c, padded to the chunk size of the sharded dim, are gathered there, and its result
    is scattered back. All gathers, then each owner's grad K, then all scatters: owners compute in
    parallel. Every rank must call this with the same tensors in the same order."""
    def pad(t, dim, size):
        return torch.nn.functional.pad(t, [0, 0] * (t.dim() - 1 - dim) + [0, size - t.shape[dim]]).contiguous()

    plan = []
    for i, (like, c) in enumerate(zip(likes, cs)):
        group, dim = like.device_mesh.get_group(0), like.placements[0].dim
        world, owner = group.size(), i % group.size()
        padded = pad(c, dim, -(-like.shape[dim] // world))
        parts = [torch.empty_like(padded) for _ in range(world)] if group.rank() == owner else None
        src = dist.get_global_rank(group, owner)
        plan.append((like, c, group, src, dim, padded, parts, dist.gather(padded, parts, dst=src, group=group, async_op=True)))
    for *_, work in plan:
        work.wait()
    scatters = []
    for like, c, group, src, dim, padded, parts, _ in plan:
        pieces = None
        if parts is not None:  # the owner: grad K of the whole tensor, cut into the ranks' padded slices
            d = _direction(kappa, torch.cat(parts, dim).narrow(dim, 0, like.shape[dim]))
            pieces = [t.contiguous() for t in pad(d, dim, padded.shape[dim] * len(parts)).chunk(len(parts), dim)]
        mine = torch.empty_like(padded)
        scatters.append((mine.narrow(dim, 0, c.shape[dim]), dist.scatter(mine, pieces, src=src, group=group, async_op=True)))
    for _, work in scatters:
        work.wait()
    return [mine for mine, _ in scatters]


def sharded_step(params, grads, exp_avgs, *, backend: str, step: Callable, kappa, **hyper) -> None:
    """One Lion-K step on a list that holds DTensors (see the module docstring).

    `step` is `lionlib.optim.lionk_step` (or `lionlib.muon`'s step), applied to plain tensors: the
    non-DTensor entries, then the local shards. Every rank of the mesh must call this with the
    same parameters (the whole-tensor K communicate)."""
    plain = [(p, g, m) for p, g, m in zip(params, grads, exp_avgs) if not is_dtensor(p)]
    shards = [(p, _placed_like(g, p), _placed_like(m, p)) for p, g, m in zip(params, grads, exp_avgs) if is_dtensor(p)]
    if plain:
        step(*map(list, zip(*plain)), backend=backend, kappa=kappa, **hyper)
    if not shards:
        return
    with torch.no_grad():  # to_local() is then the DTensor's own storage: in-place updates land in it
        local = [(p.to_local(), g.to_local(), m.to_local()) for p, g, m in shards]
        if kappa.elementwise:
            step(*map(list, zip(*local)), backend=backend, kappa=kappa, **hyper)
            return
        if kappa.name in ("lp", "l2"):  # two all-reduced numbers per tensor, no gather
            for (p, _, _), (lp, lg, lm) in zip(shards, local):
                step([lp], [lg], [lm], backend="forloop", kappa=_GlobalK(kappa, p), **hyper)
            return
        likes = [p for p, _, _ in shards]
        cs = [_blend(lm, lg, hyper["beta1"], hyper["maximize"]) for _, lg, lm in local]
        owned = [i for i, p in enumerate(likes) if _owned(p)]
        rest = [i for i, p in enumerate(likes) if not _owned(p)]
        directions = dict(zip(owned, owner_directions(kappa, [likes[i] for i in owned], [cs[i] for i in owned])))
        directions.update(zip(rest, gathered_directions(kappa, [likes[i] for i in rest], [cs[i] for i in rest])))
        for i, (lp, lg, lm) in enumerate(local):
            step([lp], [lg], [lm], backend="forloop", kappa=_Given(kappa, directions[i], likes[i]), **hyper)


def replicated_step(params, grads, exp_avgs, *, step: Callable, kappa, process_group, **hyper) -> None:
    """One step on data-parallel replicas (DDP: the same tensors and averaged gradients on every
    rank of `process_group`) in which grad K of tensor i is computed only on rank i mod N and
    broadcast to the others: N times less grad K work (Newton-Schulz for Muon) for one broadcast
    of the result. Elementwise K need no exchange. Every rank must call it with the same tensors."""
    world = dist.get_world_size(process_group)
    if kappa.elementwise or world == 1 or not params:
        return step(params, grads, exp_avgs, backend="forloop", kappa=kappa, **hyper)
    rank = dist.get_rank(process_group)
    with torch.no_grad():
        directions, works = [], []
        for i, (g, m) in enumerate(zip(grads, exp_avgs)):
            c = _blend(m, g, hyper["beta1"], hyper["maximize"])
            d = _direction(kappa, c).contiguous() if i % world == rank else torch.empty_like(c)
            directions.append(d)
        for i, d in enumerate(directions):
            src = dist.get_global_rank(process_group, i % world) if process_group is not None else i % world
            works.append(dist.broadcast(d, src=src, group=process_group, async_op=True))
        for work in works:
            work.wait()
        for p, g, m, d in zip(params, grads, exp_avgs, directions):
            step([p], [g], [m], backend="forloop", kappa=_Given(kappa, d), **hyper)


# ----------------------------------------------------------------------------------------------
# Distributed Lion: 1-bit sign votes

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_signs(positive: Tensor) -> Tensor:
    """Pack a flat bool tensor 8 per byte (bit j of byte i is element 8 i + j; zero padding)."""
    n = positive.numel()
    bits = torch.zeros(-(-n // 8) * 8, dtype=torch.uint8, device=positive.device)
    bits[:n] = positive
    return (bits.view(-1, 8) * _BITS.to(positive.device)).sum(1, dtype=torch.uint8)


def unpack_signs(packed: Tensor, n: int) -> Tensor:
    """Inverse of `pack_signs` along the last dim: (..., bytes) uint8 -> (..., n) bool."""
    bits = packed.unsqueeze(-1).bitwise_and(_BITS.to(packed.device)).ne(0)
    return bits.flatten(-2)[..., :n]


# torch renamed all_gather_into_tensor (deprecated in 2.13) to all_gather_single
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _check(lr, betas, weight_decay, vote) -> None:
    """`LionK`'s checks of lr, betas and weight decay (`lionlib.validate`), and the vote."""
    validate.check_hyper(lr, betas, weight_decay)
    if vote not in ("majority", "average"):
        raise ValueError(f"Invalid vote: {vote!r} (choose 'majority' or 'average')")


class DistributedLion(Optimizer):
    """Distributed Lion (Liu et al. 2024): data-parallel Lion that communicates one bit per parameter.

    On every worker i, for each parameter (g_i its local gradient, m_i its own momentum):

        s_i   = sign(beta1 m_i + (1 - beta1) g_i)        packed 8 per byte, all-gathered
        m_i  <- beta2 m_i + (1 - beta2) g_i
        D     = sign(sum_i s_i)  (vote="majority")   or   (1/N) sum_i s_i  (vote="average")
        p    <- p (1 - lr wd) - lr D                      identical on every worker

    One bit cannot say 0: a coordinate with c_i = 0 exactly is sent as +1 by even ranks and -1 by
    odd ranks, so with an even number of workers all-zero coordinates cancel (no step), as
    sign(0) = 0 does in Lion. A majority tie (even N) gives D = 0: decay only. With one worker this
    is Lion exactly; with two, majority and average coincide (sum in {-2, 0, 2}). Each worker sends ceil(n/8) bytes per step (`last_bytes_sent`); with an
    all-gather it receives the other N - 1 workers' (N ceil(n/8) in all), against 4n bytes each
    way per worker for an fp32 gradient all-reduce.

    Use it without DDP: each rank computes gradients on its own batch and calls `step()`. The
    parameters are broadcast from the group's first rank at construction, so replicas start equal
    and stay equal. All workers must hold the same parameters in the same order; a parameter
    without `.grad` on a worker counts as a zero gradient there, so every worker sends the same
    layout. The momentum differs between workers: save each rank's `state_dict` (torch.save
    per rank) to resume exactly. Only Lion's sign direction is a one-bit message: `kappa` other
    than "l1" (or lp with p = 1) is refused.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        vote: str = "majority",
        process_group: dist.ProcessGroup | None = None,
        *,
        kappa: str | kappa_lib.Kappa = "l1",
    ):
        _check(lr, betas, weight_decay, vote)
        k = kappa_lib.get(kappa)
        if not (k.name == "l1" or (k.name == "lp" and k.p == 1)):
            raise ValueError(
                f"DistributedLion exchanges 1-bit signs, so it needs Lion's direction sign(c) (kappa='l1'); "
                f"kappa={k.describe()!r} has a direction that one bit cannot carry. Use LionK under DDP or FSDP2 for it."
            )
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DistributedLion needs torch.distributed initialised (torchrun, then dist.init_process_group)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay, vote=vote))
        self.process_group = process_group
        self.world = dist.get_world_size(process_group)
        self.rank = dist.get_rank(process_group)
        self.last_bytes_sent = 0
        self.last_bytes_received = 0
        source = dist.get_global_rank(process_group, 0) if process_group is not None else 0
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    dist.broadcast(p.data, src=source, group=process_group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            _check(group["lr"], group["betas"], group["weight_decay"], group["vote"])
            validate.check_params(group["params"], f"DistributedLion param group {len(self.param_groups) - 1}",
                                  "DistributedLion")
            for p in group["params"]:
                if is_dtensor(p):
                    raise ValueError("DistributedLion needs plain tensors, got a DTensor: use LionK under FSDP2")
        except (ValueError, RuntimeError):
            self.param_groups.pop()
            raise

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:  # check everything before changing anything
            validate.check_hyper(group["lr"], group["betas"], group["weight_decay"], at_step=True)
        entries = []  # (group, p, c) for every parameter, in a fixed order shared by all workers
        for group in self.param_groups:
            beta1, beta2 = (validate.real("beta", b) for b in group["betas"])
            for p in group["params"]:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                g = p.grad if p.grad is not None else torch.zeros_like(p)
                if g.is_sparse:
                    raise RuntimeError("DistributedLion does not support sparse gradients")
                c = m.mul(beta1).add_(g, alpha=1 - beta1)
                m.mul_(beta2).add_(g, alpha=1 - beta2)
                entries.append((group, p, c))
        if not entries:
            return loss
        zero_bit = self.rank % 2 == 0  # c == 0: +1 on even ranks, -1 on odd ranks
        flat = torch.cat([c.reshape(-1) for _, _, c in entries])
        positive = flat.gt(0) | (flat.eq(0) & zero_bit)
        packed = pack_signs(positive)
        gathered = packed.new_empty(self.world * packed.numel())  # flat: gloo wants one dim
        _all_gather(gathered, packed, group=self.process_group)
        self.last_bytes_sent, self.last_bytes_received = packed.numel(), gathered.numel()
        ones = unpack_signs(gathered.view(self.world, -1), flat.numel()).sum(0, dtype=torch.int32)  # workers voting +1
        net = 2 * ones - self.world  # sum_i s_i, in [-N, N]
        offset = 0
        for group, p, _ in entries:
            n = p.numel()
            votes = net[offset : offset + n].view_as(p)
            offset += n
            direction = votes.sign().to(p.dtype) if group["vote"] == "majority" else votes.to(p.dtype) / self.world
            lr, weight_decay = validate.lr(group["lr"]), validate.real("weight_decay", group["weight_decay"])
            if weight_decay:
                p.mul_(1 - lr * weight_decay)
            p.add_(direction.mul_(lr) if isinstance(lr, Tensor) else direction, alpha=-1 if isinstance(lr, Tensor) else -lr)
        return loss
