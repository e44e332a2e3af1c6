"""Single-pass Lion-K updates: a horizontally fused Triton kernel (CUDA) and a C++ kernel (CPU).

The reference update (`lionlib.fused.eager`) streams p, g and m through memory several times (one pass
per torch op). Lion's step is memory bound, so the fast paths here read p, g, m once and write p, m
once (20 bytes per fp32 parameter):

- `triton_step`: one Triton launch per (device, dtype) group updates every tensor of the group,
  through tables of pointers and sizes; each program owns one chunk of one tensor and loops over
  it in blocks, so every element of any size is covered (no per-tensor launch, no block cap).
  Whole-tensor K (lp, l2) first reduce per-tensor norms with the same chunk table.
- `cpp_step`: the same update in C++ (`cpu.cpp`, built on first use by `cpu.py`):
  one call per group, its elements split evenly over the CPU threads, vectorised, with software
  prefetch. (It replaced a `torch.compile` loop, which could not express the fma that eager
  torch uses without emulating it in fp64: 62% of the bandwidth limit at 64M parameters.)

Both reproduce the reference (`lionlib.fused.eager.forloop`) bit for bit for l1, half_sq_l2, huber and
l1_plus_sq_l2 in fp32/bf16/fp16, including sign(0) = 0, NaN and inf (tests/test_fused.py). Eager
torch computes `a.add_(b, alpha=s)` as one fused multiply-add, and so do both kernels (`tl.fma`,
`std::fma`), and the C++ kernel also in fp64, computed in fp64. K with tanh, sqrt or pow agree
to a few ulp. Anything a kernel does not cover (fp64 on Triton, non-dense or differently strided
tensors, K without a kernel) goes to the foreach path, so
results never depend on which path ran; `refusal` says why, which `fused=True` makes an error.

Which K has a kernel, its code and the scalar slots are `contract.py`'s tables; each K names its
kernel and parameter itself (`Kappa.kernel()`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings

import torch
from torch import Tensor

from lionlib.fused import contract
from lionlib.fused import cpu as fused_cpu  # builds nothing at import: the kernel is compiled on first use

__all__ = ["triton_step", "cpp_step", "triton_supports", "cpp_supports", "supports", "refusal", "kernel_refusal",
           "tensor_refusal", "contract"]

_DTYPES = {"cpp": (torch.float32, torch.bfloat16, torch.float16, torch.float64),  # fp64 in C++ only
           "triton": (torch.float32, torch.bfloat16, torch.float16)}
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
Rest = tuple[list, ...]  # (params, grads, exp_avgs[, comps, keys]) a kernel left untouched


def _kernel_k(kappa) -> tuple[int, float] | None:
    """(kernel code, kernel parameter) of K, from the K itself (`Kappa.kernel()`), or None.
    Asked once per K (the K are frozen dataclasses, so hashable), not on every step."""
    try:
        return _kernel_of(kappa)
    except TypeError:  # an unhashable K-like object
        return _kernel_of.__wrapped__(kappa)


@functools.lru_cache(maxsize=256)
def _kernel_of(kappa) -> tuple[int, float] | None:
    kernel = kappa.kernel() if hasattr(kappa, "kernel") else None
    if kernel is None:
        return None
    name, param = kernel
    return contract.CODE[name], float(param)


def _whole_tensor(code: int) -> bool:
    return contract.KERNELS[code] in contract.WHOLE_TENSOR


def triton_supports(kappa) -> bool:
    """Whether the Triton kernel implements this K (it names a kernel of `contract.KERNELS`)."""
    return _kernel_k(kappa) is not None


def _f32(x: float) -> float:
    """x rounded to fp32 (a C cast), as torch rounds a python scalar used with an fp32 tensor."""
    return ctypes.c_float(x).value


def _scalars(kappa, lr, beta1, beta2, weight_decay, implicit_decay) -> dict:
    """The kernel's code, decay mode and scalar slots: `hyper` rounded to fp32 (as torch rounds a
    Python scalar used with an fp32, bf16 or fp16 tensor), `hyper64` as doubles (fp64 tensors)."""
    code, param = _kernel_k(kappa)
    decay = "none" if not weight_decay else ("implicit" if implicit_decay else "explicit")
    hyper64 = contract.pack(
        decay_mul=1 - lr * weight_decay,
        beta1=beta1,
        one_minus_beta1=1 - beta1,
        neg_lr=-lr,
        decay_div=1 + lr * weight_decay,
        beta2=beta2,
        one_minus_beta2=1 - beta2,
        k_param=float(param),
    )
    return dict(code=code, decay=contract.DECAY[decay], hyper=tuple(_f32(x) for x in hyper64), hyper64=hyper64)


def _dense_alike(p: Tensor, g: Tensor, m: Tensor) -> bool:
    """p, g, m cover the same dense block of memory in the same element order (so flat indexing works)."""
    if p.is_contiguous() and g.is_contiguous() and m.is_contiguous():  # the common case, checked in C
        return True
    if not p.stride() == g.stride() == m.stride():
        return False
    expected = 1  # strides sorted ascending must be 1, size0, size0*size1, ...: no gaps, no overlap
    for stride, size in sorted((st, sz) for st, sz in zip(p.stride(), p.shape) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _plain(t: Tensor) -> bool:
    """A strided tensor of torch's own types. A subclass (DTensor, FakeTensor, ...) may have no
    storage of numel() elements behind data_ptr() (a DTensor's is 0: a kernel would write through
    null), so it goes to foreach, checked before any pointer is taken (`lionlib.distributed`
    hands the kernels a DTensor's local shard instead)."""
    return type(t) in _PLAIN_TYPES and t.layout == torch.strided


def _split(backend: str, params, grads, exp_avgs, comps=None, keys=None):
    """Partition into (device, dtypes, store, 16-byte aligned) groups the `backend` kernel takes
    (`tensor_refusal` is None), and the rest (for foreach), each as lists (params, grads,
    exp_avgs, comps, keys). Empty tensors are dropped. A tensor's store is Kahan when it has a
    compensation buffer, stochastic when it has a key (bf16 only), else nearest."""
    n = len(params)
    comps, keys = comps or [None] * n, keys or [None] * n
    groups: dict[tuple, tuple[list, ...]] = {}
    rest: tuple[list, ...] = ([], [], [], [], [])
    for item in zip(params, grads, exp_avgs, comps, keys):
        p, g, m, comp, key = item
        if p.numel() == 0:
            continue
        target = rest
        if tensor_refusal(backend, p, g, m) is None and (comp is None or _dense_alike(p, comp, comp)):
            store = "kahan" if comp is not None else "stochastic" if key is not None and p.dtype == torch.bfloat16 else "nearest"
            aligned = (p.data_ptr() | g.data_ptr() | m.data_ptr() | (comp.data_ptr() if comp is not None else 0)) % 16 == 0
            group_key = (p.device, p.dtype, g.dtype, m.dtype, store, aligned)  # aligned lets Triton use vector loads
            target = groups.get(group_key) or groups.setdefault(group_key, ([], [], [], [], []))
        for lst, x in zip(target, item):
            lst.append(x)
    return groups, rest


def _handed_back(rest, with_store: bool):
    """The tensors a kernel left, as given: (params, grads, exp_avgs[, comps, keys])."""
    return rest if with_store else rest[:3]


def supports(backend: str, kappa, p: Tensor, g: Tensor | None = None, m: Tensor | torch.dtype | None = None, *,
             cautious: bool = False, cautious_weight_decay: bool = False) -> str | None:
    """Why the `backend` ("cpp" or "triton") kernel cannot take (p, g, m), in words; None when it
    can. The one predicate behind both the default dispatch (a refused tensor goes to foreach)
    and `fused=True` (a refused tensor is an error naming the reason).

    `m` may be the momentum, or only its dtype when it does not exist yet (it will be created
    like p, with p's strides). Without g, only what is known at construction (K, device, dtype,
    p's layout) is checked. The cautious options have no kernel (see `kernel_refusal`)."""
    return kernel_refusal(backend, kappa, cautious=cautious, cautious_weight_decay=cautious_weight_decay) \
        or tensor_refusal(backend, p, g, m)


refusal = supports  # the name this predicate had first


def kernel_refusal(backend: str, kappa, *, cautious: bool = False, cautious_weight_decay: bool = False) -> str | None:
    """The part of `supports` that depends on K and the group's options only (asked once per
    param group). `cautious` rescales each tensor's update by numel / (number kept), a per-tensor
    reduction before any element can be written, which a single pass cannot do; cautious weight
    decay is elementwise but has no kernel code yet. Both take the foreach path."""
    if cautious:
        return "cautious=True rescales each tensor's update by a per-tensor count, which a single-pass kernel cannot do"
    if cautious_weight_decay:
        return "cautious_weight_decay=True has no kernel code (the foreach path takes it)"
    if backend == "cpp":
        return None if cpp_supports(kappa) else f"the C++ kernel has no code for K = {kappa.describe()} (elementwise K only)"
    if backend == "triton":
        return None if triton_supports(kappa) else f"the Triton kernel has no code for K = {kappa.describe()}"
    raise ValueError(f"unknown fused backend {backend!r}")


def tensor_refusal(backend: str, p: Tensor, g: Tensor | None = None, m: Tensor | torch.dtype | None = None) -> str | None:
    """The part of `supports` that depends on the tensors (asked for each tensor, every step:
    cheap attribute checks first, words only for a refusal)."""
    g = p if g is None else g
    m_dtype = m.dtype if isinstance(m, Tensor) else (m or p.dtype)
    m = m if isinstance(m, Tensor) else p
    if not (_plain(p) and _plain(g) and _plain(m)):
        return f"a tensor of type {type(p).__name__}/{type(g).__name__}/{type(m).__name__} is not a plain strided tensor"
    if backend == "cpp" and not p.is_cpu:
        return f"the C++ kernel runs on CPU tensors, this one is on {p.device}"
    if backend == "triton" and not (p.is_cuda or (_interpreted() and p.device.type == "cpu")):
        return f"the Triton kernel runs on CUDA tensors, this one is on {p.device}"
    if p.numel() == 0:
        return None
    dtypes = _DTYPES[backend]
    if not (p.dtype in dtypes and g.dtype in dtypes and m_dtype in dtypes):
        names = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        return f"dtypes (param {p.dtype}, grad {g.dtype}, momentum {m_dtype}) have no kernel ({names} only)"
    if backend == "cpp" and not (g.dtype == p.dtype and (p.dtype, m_dtype) in fused_cpu.DTYPE_PAIRS):
        return f"the C++ kernel has no code for param {p.dtype} with grad {g.dtype} and momentum {m_dtype}"
    if not _dense_alike(p, g, m):
        return f"param, grad and momentum are not dense with equal strides ({p.stride()}, {g.stride()}, {m.stride()})"
    return None


# ----------------------------------------------------------------------------------------------
# Triton


@functools.cache
def _triton():
    """The kernels, imported on first use (raises ImportError without Triton)."""
    from lionlib.fused import triton_kernel as fused_triton

    return fused_triton


_BLOCK = 1024
_MAX_CHUNK = 1 << 16


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _chunk_size(total: int, device: torch.device) -> int:
    """Elements per program: enough programs to fill every SM a few times, at most 64K each."""
    if device.type != "cuda":
        return 4 * _BLOCK
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    chunk = _BLOCK
    while chunk < _MAX_CHUNK and total > chunk * 8 * sms:
        chunk *= 2
    return chunk


def _tables(p_list, g_list, m_list, c_list, k_list, chunk: int, device) -> tuple[Tensor, ...]:
    """Pointer, key, size and chunk tables, built on the host and moved to the device in one copy."""
    sizes = [p.numel() for p in p_list]
    counts = [(n + chunk - 1) // chunk for n in sizes]
    chunk_tensor = [t for t, c in enumerate(counts) for _ in range(c)]
    chunk_start = [i * chunk for c in counts for i in range(c)]
    host = torch.tensor(
        [x.data_ptr() for x in p_list] + [x.data_ptr() for x in g_list] + [x.data_ptr() for x in m_list]
        + [x.data_ptr() if x is not None else 0 for x in c_list] + [k if k is not None else 0 for k in k_list]
        + sizes + chunk_tensor + chunk_start,
        dtype=torch.int64,
    )
    flat = host.to(device, non_blocking=False)
    n, k = len(p_list), len(chunk_tensor)
    rows = [flat[i * n : (i + 1) * n] for i in range(6)]
    return (*rows, flat[6 * n : 6 * n + k], flat[6 * n + k :])


def _hyper_tensor(s, lr, weight_decay, device) -> Tensor:
    """The scalar slots as an fp32 tensor on `device`; with a tensor lr, its slots are computed
    there (no host sync), in fp32."""
    hyper = torch.tensor(s["hyper"], dtype=torch.float32).to(device)
    if isinstance(lr, Tensor):
        lr32 = lr.to(device, torch.float32)
        slot = contract.SLOT
        hyper[slot["neg_lr"]] = -lr32
        hyper[slot["decay_mul"]] = 1 - lr32 * weight_decay
        hyper[slot["decay_div"]] = 1 + lr32 * weight_decay
    return hyper


def _triton_group(p_list, g_list, m_list, c_list, k_list, s, maximize: bool, chunk: int | None, store: str,
                  aligned: bool) -> None:
    kernels = _triton()
    tl = kernels.tl
    device = p_list[0].device
    chunk = chunk or _chunk_size(sum(p.numel() for p in p_list), device)
    p_ptrs, g_ptrs, m_ptrs, c_ptrs, keys, sizes, chunk_tensor, chunk_start = _tables(
        p_list, g_list, m_list, c_list, k_list, chunk, device)
    tl_dtype = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
    hyper = _hyper_tensor(s, s["lr"], s["weight_decay"], device)
    kp = s["hyper"][contract.SLOT["k_param"]]
    grid = (chunk_tensor.numel(),)
    common = dict(
        MAXIMIZE=maximize, INTERPRET=_interpreted(), BLOCK=_BLOCK,
        P_DTYPE=tl_dtype[p_list[0].dtype], G_DTYPE=tl_dtype[g_list[0].dtype], M_DTYPE=tl_dtype[m_list[0].dtype],
    )
    # No fp contraction: the reference rounds every product; explicit _fma marks the fused ones.
    launch = {} if _interpreted() else dict(num_warps=4, enable_fp_fusion=False)
    ones = torch.ones(len(p_list), device=device, dtype=torch.float32)
    safe = unorm = ones
    with torch.cuda.device_of(p_list[0]):
        if _whole_tensor(s["code"]):
            partial = torch.empty(grid[0], device=device, dtype=torch.float32)
            args = (g_ptrs, m_ptrs, sizes, chunk_tensor, chunk_start)
            kernels.norm_kernel[grid](*args, ones, partial, chunk, hyper, SUM=False, **common, **launch)
            amax = torch.zeros(len(p_list), device=device).scatter_reduce_(0, chunk_tensor, partial, "amax")
            safe = torch.where(amax > 0, amax, ones)  # as Lp.grad; NaN max -> 1 there too
            kernels.norm_kernel[grid](*args, safe, partial, chunk, hyper, SUM=True, **common, **launch)
            total = torch.zeros(len(p_list), device=device).index_add_(0, chunk_tensor, partial)
            unorm_raw = total.pow(1.0 / kp)
            unorm = torch.where(unorm_raw > 0, unorm_raw, ones)
        kernels.step_kernel[grid](
            p_ptrs, g_ptrs, m_ptrs, c_ptrs, keys, sizes, chunk_tensor, chunk_start, safe, unorm, chunk, hyper,
            ALIGNED=aligned, K=s["code"], DECAY=s["decay"], STORE=contract.STORE[store], **common, **launch,
        )


def triton_available() -> bool:
    try:
        return _triton() is not None
    except ImportError:
        return False


def _eager_under_compile(fn):
    """fn, run eagerly as one opaque call when torch.compile traces it (the kernel launchers work
    on data_ptr tables, which dynamo cannot trace). `torch.compiler.disable` is applied only
    then: as a decorator it would import dynamo with lionlib (a second or two, and Triton with
    it, before tests can set TRITON_INTERPRET)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.compiler.is_compiling():
            return torch.compiler.disable(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


@_eager_under_compile
def triton_step(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize,
                chunk: int | None = None, comps=None, keys=None) -> Rest:
    """One Lion-K step with the fused Triton kernel: one launch per (device, dtypes) group.

    Tensors the kernel does not cover (`supports` says why: fp64, non-dense or mismatched strides, ...)
    are returned for the caller's foreach path (`lionk_step`); without Triton all are, with a
    warning. `chunk` (elements per program) is for tests; the default fills the GPU.
    """
    with_store = comps is not None or keys is not None
    everything = (params, grads, exp_avgs, comps or [None] * len(params), keys or [None] * len(params))
    if not triton_supports(kappa):
        return _handed_back(everything, with_store)
    if not triton_available():
        warnings.warn("Triton is not importable: lionlib falls back to the foreach path", RuntimeWarning, stacklevel=2)
        return _handed_back(everything, with_store)
    groups, rest = _split("triton", params, grads, exp_avgs, comps, keys)
    s = {**_scalars(kappa, 0.0 if isinstance(lr, Tensor) else lr, beta1, beta2, weight_decay, implicit_decay),
         "lr": lr, "weight_decay": weight_decay}
    for key, lists in groups.items():
        _triton_group(*lists, s, maximize, chunk, store=key[-2], aligned=key[-1])
    return _handed_back(rest, with_store)


# ----------------------------------------------------------------------------------------------
# C++ (CPU)

def cpp_supports(kappa) -> bool:
    """Whether the C++ kernel implements this K (elementwise K; whole-tensor K take foreach)."""
    kernel = _kernel_k(kappa)
    return kernel is not None and not _whole_tensor(kernel[0])


@_eager_under_compile
@functools.cache
def cpp_available() -> bool:
    """Whether the C++ kernel builds and loads here (warns once, with the compiler's message, if not)."""
    try:
        fused_cpu.library()
    except fused_cpu.FusedCpuUnavailable as e:
        warnings.warn(f"{e}\nlionlib uses the foreach path on CPU instead", RuntimeWarning, stacklevel=2)
        return False
    return True


@_eager_under_compile
def cpp_step(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize,
             threads: int | None = None, comps=None, keys=None) -> Rest:
    """One Lion-K step with the C++ kernel: one call per (dtypes) group, `threads` threads
    (default `torch.get_num_threads()`).

    Tensors the kernel does not cover (`supports` says why: grads of another dtype than their param, non-dense
    or mismatched strides, CUDA, a K without kernel) are returned for the caller's foreach path, and
    so is everything when the kernel cannot be built here."""
    with_store = comps is not None or keys is not None
    if not (cpp_supports(kappa) and cpp_available()):
        return _handed_back((params, grads, exp_avgs, comps or [None] * len(params), keys or [None] * len(params)), with_store)
    s = _scalars(kappa, lr, beta1, beta2, weight_decay, implicit_decay)
    hyper, hyper64 = list(s["hyper"]), list(s["hyper64"])
    slot = contract.SLOT
    for h in (hyper, hyper64):
        if s["decay"] != contract.DECAY["explicit"]:
            h[slot["decay_mul"]] = 1.0  # the kernel always applies the explicit decay factor: times 1 is exact
        if maximize:  # fma(-g, a, b) == fma(g, -a, b) exactly, so maximize costs nothing per element
            for name in ("one_minus_beta1", "one_minus_beta2"):
                h[slot[name]] = -h[slot[name]]
    groups, rest = _split("cpp", params, grads, exp_avgs, comps, keys)
    for (_, p_dtype, _, _, store, _), (p_list, g_list, m_list, c_list, k_list) in groups.items():
        fused_cpu.step(p_list, g_list, m_list, code=s["code"], implicit=s["decay"] == contract.DECAY["implicit"],
                       hyper=hyper64 if p_dtype == torch.float64 else hyper, threads=threads,
                       comps=c_list if store == "kahan" else None, keys=k_list if store == "stochastic" else None)
    return _handed_back(rest, with_store)
