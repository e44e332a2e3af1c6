"""The backends written in torch ops: the for-loop reference and the foreach path.

Both update lists of tensors (one param group, already gathered) in place, as `lionlib.optim`'s
functional step `lionk` calls them; the kernels of `lionlib.fused` reproduce `forloop` bit for
bit. `lr` is a float, or a 0-dim tensor on the parameters' device (read there, never on the host).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from lionlib import kappa as kappa_lib

__all__ = ["forloop", "foreach", "hash32", "store", "cautious_update"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)
_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# Storing the fp32 result into a low-precision parameter: rounded to nearest, Kahan-compensated,
# or stochastically rounded. The kernels (cpu.cpp's update_element, triton_kernel's
# _update_block) do the same operations in the same order, so every path stores the same bits.


def _mul32(x, c: int):
    """x * c mod 2^32 for x < 2^32 (a Python int or an int64 tensor), without int64 overflow."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def hash32(x):
    """lowbias32 (C. Wellons): a 32-bit integer hash, of a Python int or an int64 tensor of
    values < 2^32. Random bits for stochastic rounding are hash32(key + element index)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _element_index(p: Tensor) -> Tensor:
    """Each element's offset in p's memory (what a kernel's flat loop counts), or its position
    in logical order for tensors that are not dense (which only these paths take)."""
    n = torch.arange(p.numel(), device=p.device, dtype=torch.int64)
    if p.is_contiguous():
        return n.view(p.shape)
    dense = sorted((st, sz) for st, sz in zip(p.stride(), p.shape) if sz != 1)
    expected = 1
    for stride, size in dense:
        if stride != expected:
            return n.view(p.shape)
        expected *= size
    return n.as_strided(p.shape, p.stride())


def store(p: Tensor, work: Tensor, comp: Tensor | None = None, key: int | None = None) -> None:
    """Write the fp32 result `work` (a copy; it is overwritten) into the parameter p.

    comp (Kahan, p's dtype): d = (work - p) + comp; p <- round(p + d); comp <- round(d - (p_new - p)),
    so what rounding drops is added back next step. key (bf16 p): stochastic rounding, the fp32
    bits plus 16 random bits hash32(key + index), truncated (NaN stays NaN). Else round to nearest."""
    if comp is not None:
        p0 = p.float()
        d = work.sub_(p0).add_(comp.float())
        p.copy_(p0.add(d))
        comp.copy_(d.sub_(p.float().sub_(p0)))
    elif key is not None and p.dtype == torch.bfloat16:
        r = hash32((_element_index(p) + key) & _M32)
        bits = (work.view(torch.int32).to(torch.int64) & _M32).add_(r & 0xFFFF).bitwise_right_shift_(16)
        bits = torch.where(work.isnan(), 0x7FC0, bits)
        p.copy_(torch.where(bits >= 0x8000, bits - 0x10000, bits).to(torch.int16).view(torch.bfloat16))
    else:
        p.copy_(work)



def _descend(p: Tensor, direction: Tensor, lr, sign: float = -1.0) -> None:
    """p += sign * lr * direction: one fused multiply-add for a float lr (eager torch's add with
    alpha), a device-side product for a tensor lr (no host sync)."""
    if isinstance(lr, Tensor):
        p.add_(direction.mul_(lr), alpha=sign)
    else:
        p.add_(direction, alpha=sign * lr)


def cautious_update(p: Tensor, u: Tensor, g: Tensor, lr, weight_decay: float, implicit_decay: bool, cautious: bool,
                    cautious_weight_decay: bool) -> None:
    """p <- p - lr u (u the descent direction, overwritten) with the cautious options.

    cautious (C-Lion, Liang et al. 2024, "Cautious Optimizers"): u is zeroed where it disagrees in
    sign with the gradient g (u g <= 0) and the rest rescaled by numel / (number kept), as the
    C-Optim paper does (a count of 0 is taken as 1): one per-tensor reduction, on the device.
    cautious_weight_decay: the decay acts only where the update and the parameter agree in sign
    (u p > 0, the coordinates the step already moves toward 0), explicit or implicit."""
    if cautious:
        keep = (u * g) > 0
        u.mul_(keep).mul_(keep.numel() / keep.sum().clamp_min(1).to(u.dtype))
    if not weight_decay:
        return _descend(p, u, lr)
    one = torch.ones((), dtype=p.dtype, device=p.device)
    if cautious_weight_decay:  # the factor where u p > 0, else 1 (in p's dtype)
        decayed = (u * p) > 0
        factor = lambda x: torch.where(decayed, one * x, one)  # noqa: E731
    else:
        factor = lambda x: x  # noqa: E731
    if not implicit_decay:
        p.mul_(factor(1 - lr * weight_decay))
    _descend(p, u, lr)
    if implicit_decay:
        p.div_(factor(1 + lr * weight_decay))


def forloop(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize,
            comps=None, keys=None, cautious=False, cautious_weight_decay=False):
    """One tensor at a time. `comps` / `keys` (one entry per tensor, or None) choose `store`;
    the cautious options go through `cautious_update`."""
    n = len(params)
    careful = cautious or cautious_weight_decay
    for p, g, m, comp, key in zip(params, grads, exp_avgs, comps or [None] * n, keys or [None] * n):
        # Compute in fp32 for low-precision params; write p (and m) back once at the end.
        work_p = p.float() if p.dtype in _LOW_PRECISION else p
        work_m = m.float() if m.dtype in _LOW_PRECISION else m
        g = g.to(work_m.dtype)
        if maximize:
            g = -g  # a new tensor: p.grad is never mutated
        if careful:
            c = work_m.mul(beta1).add_(g, alpha=1 - beta1)
            u = kappa.grad(c) if kappa.symmetric else kappa.grad(c.neg_()).neg_()
            cautious_update(work_p, u.to(work_p.dtype), g, lr, weight_decay, implicit_decay, cautious,
                            cautious_weight_decay)
            work_m.mul_(beta2).add_(g, alpha=1 - beta2)
            if work_p is not p:
                store(p, work_p, comp, key)
            if work_m is not m:
                m.copy_(work_m)
            continue
        if weight_decay and not implicit_decay:
            work_p.mul_(1 - lr * weight_decay)
        c = work_m.mul(beta1).add_(g, alpha=1 - beta1)
        if kappa.symmetric:
            _descend(work_p, kappa.grad(c).to(work_p.dtype), lr)
        else:
            _descend(work_p, kappa.grad(c.neg_()).to(work_p.dtype), lr, sign=1.0)
        if weight_decay and implicit_decay:
            work_p.div_(1 + lr * weight_decay)
        work_m.mul_(beta2).add_(g, alpha=1 - beta2)
        if work_p is not p:
            store(p, work_p, comp, key)
        if work_m is not m:
            m.copy_(work_m)


def _foreach_update(work_p, g_list, work_m, kappa, lr, beta1, sign, weight_decay, implicit_decay) -> None:
    """The parameter update of `foreach` (the momentum is updated after it)."""
    if weight_decay and not implicit_decay:
        torch._foreach_mul_(work_p, 1 - lr * weight_decay)
    if isinstance(kappa, kappa_lib.L1):  # Lion: c, then sign(c) in place
        c = torch._foreach_mul(work_m, beta1)
        torch._foreach_add_(c, g_list, alpha=sign * (1 - beta1))
        torch._foreach_sign_(c)
        if isinstance(lr, Tensor):
            torch._foreach_mul_(c, lr)
            torch._foreach_sub_(work_p, c)
        else:
            torch._foreach_add_(work_p, c, alpha=-lr)
        del c
    else:
        for p, g, m in zip(work_p, g_list, work_m):
            c = m.mul(beta1).add_(g, alpha=sign * (1 - beta1))
            if kappa.symmetric:
                _descend(p, kappa.grad(c).to(p.dtype), lr)
            else:
                _descend(p, kappa.grad(c.neg_()).to(p.dtype), lr, sign=1.0)
            del c
    if weight_decay and implicit_decay:
        torch._foreach_div_(work_p, 1 + lr * weight_decay)


def foreach(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize,
            comps=None, keys=None, cautious=False, cautious_weight_decay=False):
    """Batched `torch._foreach_*` ops per (device, dtype) group, in at most one parameter-sized
    temporary (torch.optim's budget) for fp32 groups: c, which sign_ overwrites in place for Lion.
    maximize negates the alphas, not the gradients (-g * a == g * -a exactly, so no copy of g is
    needed). A K other than l1 gets its direction one tensor at a time (`kappa.grad` allocates
    its own temporaries), so those stay within a few copies of the largest tensor. bf16/fp16
    groups work on fp32 copies, as the module docstring says (tests/test_optim_conformance.py
    measures the peak). Kahan and stochastic stores (`comps` / `keys`) are `store`, per tensor.
    """
    sign = -1.0 if maximize else 1.0
    grouped = Optimizer._group_tensors_by_device_and_dtype([params, grads, exp_avgs], with_indices=bool(comps or keys))
    for (p_list, g_list, m_list), indices in grouped.values():
        low_p = p_list[0].dtype in _LOW_PRECISION
        low_m = m_list[0].dtype in _LOW_PRECISION
        work_p = [p.float() for p in p_list] if low_p else p_list
        work_m = [m.float() for m in m_list] if low_m else m_list
        g_list = [g.to(work_m[0].dtype) for g in g_list] if g_list[0].dtype != work_m[0].dtype else g_list
        if cautious or cautious_weight_decay:  # batched momenta; the update per tensor (a reduction each)
            c_list = torch._foreach_mul(work_m, beta1)
            torch._foreach_add_(c_list, g_list, alpha=sign * (1 - beta1))
            for p, g, c in zip(work_p, g_list, c_list):
                u = kappa.grad(c) if kappa.symmetric else kappa.grad(c.neg_()).neg_()
                cautious_update(p, u.to(p.dtype), -g if maximize else g, lr, weight_decay, implicit_decay, cautious,
                                cautious_weight_decay)
            del c_list
        else:
            _foreach_update(work_p, g_list, work_m, kappa, lr, beta1, sign, weight_decay, implicit_decay)
        torch._foreach_mul_(work_m, beta2)
        torch._foreach_add_(work_m, g_list, alpha=sign * (1 - beta2))
        if low_p and (comps or keys):
            for p, w, i in zip(p_list, work_p, indices):
                store(p, w, comps[i] if comps else None, keys[i] if keys else None)
        elif low_p:
            torch._foreach_copy_(p_list, work_p)
        if low_m:
            torch._foreach_copy_(m_list, work_m)
