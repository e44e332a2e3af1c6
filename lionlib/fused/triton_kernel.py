"""Triton kernels of `lionlib.fused` (imported on first use: Triton is optional, and
`TRITON_INTERPRET=1` must be set before the kernels are decorated to run them on CPU).

`step_kernel` is the horizontally fused Lion-K update: program i updates chunk i of the tensor
named by the chunk table, looping over it in blocks. `norm_kernel` produces the per-chunk partials
of the lp norm (whole-tensor K). See `lionlib/fused/__init__.py` for the host side.

Kernel codes, scalar slots and decay modes are read from `lionlib.fused.contract` as
`tl.constexpr` globals below: no number of the contract is written here.
"""

import triton
import triton.language as tl

from lionlib.fused import contract

__all__ = ["step_kernel", "norm_kernel"]

# Kernel codes (contract.KERNELS).
K_L1: tl.constexpr = tl.constexpr(contract.CODE["l1"])
K_HALF_SQ_L2: tl.constexpr = tl.constexpr(contract.CODE["half_sq_l2"])
K_HUBER: tl.constexpr = tl.constexpr(contract.CODE["huber"])
K_RELATIVISTIC: tl.constexpr = tl.constexpr(contract.CODE["relativistic"])
K_LOGCOSH: tl.constexpr = tl.constexpr(contract.CODE["logcosh"])
K_L1_PLUS_SQ_L2: tl.constexpr = tl.constexpr(contract.CODE["l1_plus_sq_l2"])
K_LP: tl.constexpr = tl.constexpr(contract.CODE["lp"])
# Scalar slots of `hyper` (contract.SLOTS).
S_DECAY_MUL: tl.constexpr = tl.constexpr(contract.SLOT["decay_mul"])
S_BETA1: tl.constexpr = tl.constexpr(contract.SLOT["beta1"])
S_ONE_MINUS_BETA1: tl.constexpr = tl.constexpr(contract.SLOT["one_minus_beta1"])
S_NEG_LR: tl.constexpr = tl.constexpr(contract.SLOT["neg_lr"])
S_DECAY_DIV: tl.constexpr = tl.constexpr(contract.SLOT["decay_div"])
S_BETA2: tl.constexpr = tl.constexpr(contract.SLOT["beta2"])
S_ONE_MINUS_BETA2: tl.constexpr = tl.constexpr(contract.SLOT["one_minus_beta2"])
S_K_PARAM: tl.constexpr = tl.constexpr(contract.SLOT["k_param"])
# Store modes (contract.STORE).
STORE_KAHAN: tl.constexpr = tl.constexpr(contract.STORE["kahan"])
STORE_STOCHASTIC: tl.constexpr = tl.constexpr(contract.STORE["stochastic"])
# Weight decay modes (contract.DECAY).
DECAY_EXPLICIT: tl.constexpr = tl.constexpr(contract.DECAY["explicit"])
DECAY_IMPLICIT: tl.constexpr = tl.constexpr(contract.DECAY["implicit"])


@triton.jit
def _fma(x, y, z, INTERPRET: tl.constexpr):
    # Eager torch's add-with-alpha is one fused multiply-add. The interpreter's tl.fma rounds
    # twice; fp64 is exact for the fp32 product, and rounds the sum once more only in ties.
    if INTERPRET:
        r = (x.to(tl.float64) * y.to(tl.float64) + z.to(tl.float64)).to(tl.float32)
    else:
        r = tl.fma(x, y, z)
    return r


@triton.jit
def _cast(x, DTYPE: tl.constexpr, INTERPRET: tl.constexpr):
    # fp32 -> storage dtype, rounding to nearest even like torch. The interpreter truncates on
    # fp32 -> bf16, so there the rounding is done on the bits (NaN kept NaN).
    r = x.to(DTYPE)
    if INTERPRET:
        if DTYPE == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            bits = tl.where(x != x, 0x7FC0, bits)
            r = bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
    return r


@triton.jit
def _sign(x):
    # torch.sign: sign(0) = 0 and sign(NaN) = 0 (torch 2.x eager, CPU and CUDA).
    return (x > 0).to(tl.float32) - (x < 0).to(tl.float32)


@triton.jit
def _tanh(x):
    # No tanh in core Triton (libdevice is not available to the interpreter): Taylor series
    # near 0, where (1 - e) / (1 + e) would cancel, the exponential form elsewhere.
    a = tl.abs(x)
    e = tl.exp(-2.0 * a)
    big = tl.div_rn(1.0 - e, 1.0 + e)
    a2 = a * a
    small = a * (1.0 + a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 + a2 * (62.0 / 2835.0)))))
    t = tl.where(a < 0.2, small, big)
    return tl.where(x < 0, -t, t)


@triton.jit
def _momenta(g_ptr, m_ptr, mask, b1, omb1, MAXIMIZE: tl.constexpr, INTERPRET: tl.constexpr):
    # g (negated if maximizing), m, and c = b1 m + (1 - b1) g, in fp32; 0 past the end (the
    # norm partials sum over whole blocks). mask=None: a whole block, no mask (vector loads).
    if mask is None:
        g = tl.load(g_ptr).to(tl.float32)
        m = tl.load(m_ptr).to(tl.float32)
    else:
        g = tl.load(g_ptr, mask=mask, other=0.0).to(tl.float32)
        m = tl.load(m_ptr, mask=mask, other=0.0).to(tl.float32)
    if MAXIMIZE:
        g = -g
    c = _fma(g, omb1, m * b1, INTERPRET)
    return g, m, c


@triton.jit
def norm_kernel(g_ptrs, m_ptrs, sizes, chunk_tensor, chunk_start, safe, out, chunk, hyper,
                 MAXIMIZE: tl.constexpr, INTERPRET: tl.constexpr, SUM: tl.constexpr, BLOCK: tl.constexpr,
                 P_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr, M_DTYPE: tl.constexpr):
    # Per-chunk partials for lp: max |c| (SUM=False), or sum (|c| / safe)^p (SUM=True), where
    # safe is the tensor's max |c| (or 1): the reference's overflow-free scaling.
    pid = tl.program_id(0)
    t = tl.load(chunk_tensor + pid)
    start = tl.load(chunk_start + pid)
    end = tl.minimum(start + chunk, tl.load(sizes + t))
    b1 = tl.load(hyper + S_BETA1)
    omb1 = tl.load(hyper + S_ONE_MINUS_BETA1)
    pnorm = tl.load(hyper + S_K_PARAM)
    g_base = tl.load(g_ptrs + t).to(tl.pointer_type(G_DTYPE))
    m_base = tl.load(m_ptrs + t).to(tl.pointer_type(M_DTYPE))
    s = tl.load(safe + t)
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    nan = tl.zeros((BLOCK,), dtype=tl.int32)
    for off in range(start, end, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        mask = idx < end
        g, m, c = _momenta(g_base + idx, m_base + idx, mask, b1, omb1, MAXIMIZE, INTERPRET)
        a = tl.abs(c)
        nan += (a != a).to(tl.int32)
        if SUM:
            u = tl.div_rn(a, s)
            acc += tl.where(u > 0, tl.exp2(pnorm * tl.log2(tl.where(u > 0, u, 1.0))), 0.0)
        else:
            acc = tl.maximum(acc, a)
    if SUM:
        res = tl.sum(acc, axis=0)
    else:
        res = tl.max(acc, axis=0)
    tl.store(out + pid, tl.where(tl.sum(nan, axis=0) > 0, float("nan"), res))


@triton.jit
def _direction(c, kp, s, un, K: tl.constexpr):
    # grad K(c) for kernel K; kp is the K's parameter (contract slot k_param).
    if K == K_L1:  # Lion
        d = _sign(c)
    elif K == K_HALF_SQ_L2:
        d = c
    elif K == K_HUBER:  # clamp(c / delta, -1, 1), NaN kept
        u = tl.div_rn(c, kp)
        d = tl.where(u > 1.0, 1.0, tl.where(u < -1.0, -1.0, u))
    elif K == K_RELATIVISTIC:  # c / sqrt(c^2 + delta^2)
        d = tl.div_rn(c, tl.sqrt_rn(c * c + kp))
    elif K == K_LOGCOSH:  # tanh(c / delta)
        d = _tanh(tl.div_rn(c, kp))
    elif K == K_L1_PLUS_SQ_L2:  # sign(c) + a c
        d = _sign(c) + kp * c
    else:  # K_LP: sign(u) (|u| / ||u||_p)^(p-1), u = c / safe
        tl.static_assert(K == K_LP, "no arithmetic for this kernel code: add it to _direction")
        u = tl.div_rn(c, s)
        r = tl.div_rn(tl.abs(u), un)
        d = _sign(u) * tl.where(r > 0, tl.exp2((kp - 1.0) * tl.log2(tl.where(r > 0, r, 1.0))), tl.where(r == 0, 0.0, r))
    return d


@triton.jit
def _mul32(x, c: tl.constexpr):
    # x * c mod 2^32 in uint64 (x < 2^32, c < 2^32: the product fits, in the interpreter too)
    return (x * c) & 0xFFFFFFFF


@triton.jit
def _hash32(x):
    # lowbias32 (C. Wellons), as hash32 in cpu.cpp and fused/eager.py; x holds 32-bit values in uint64
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    x = x ^ (x >> 16)
    return x


@triton.jit
def _stochastic_bf16(x, key, idx):
    # fp32 -> bf16: add 16 random bits (hash32(key + index)) to the fp32 bits, truncate; NaN kept.
    r = _hash32((key.to(tl.uint64) + idx.to(tl.uint64)) & 0xFFFFFFFF)
    bits = x.to(tl.uint32, bitcast=True).to(tl.uint64)
    bits = ((bits + (r & 0xFFFF)) >> 16).to(tl.uint32)
    bits = tl.where(x != x, 0x7FC0, bits)
    return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _update_block(p_ptr, g_ptr, m_ptr, c_ptr, key, idx, mask, decay, b1, omb1, neg_lr, div, b2, omb2, kp, s, un,
                  K: tl.constexpr, DECAY: tl.constexpr, STORE: tl.constexpr, MAXIMIZE: tl.constexpr,
                  INTERPRET: tl.constexpr, P_DTYPE: tl.constexpr, M_DTYPE: tl.constexpr):
    # One block of the update: the same operations, in the same order and rounding, as
    # lionlib.fused.eager.forloop; the store as cpu.cpp's update_element.
    g, m, c = _momenta(g_ptr, m_ptr, mask, b1, omb1, MAXIMIZE, INTERPRET)
    p0 = tl.load(p_ptr, mask=mask).to(tl.float32)
    p = p0
    if DECAY == DECAY_EXPLICIT:
        p = p * decay
    d = _direction(c, kp, s, un, K)
    p = _fma(d, neg_lr, p, INTERPRET)
    if DECAY == DECAY_IMPLICIT:
        p = tl.div_rn(p, div)
    m = _fma(g, omb2, m * b2, INTERPRET)
    if STORE == STORE_KAHAN:
        delta = (p - p0) + tl.load(c_ptr, mask=mask).to(tl.float32)
        stored = _cast(p0 + delta, P_DTYPE, INTERPRET)
        tl.store(p_ptr, stored, mask=mask)
        tl.store(c_ptr, _cast(delta - (stored.to(tl.float32) - p0), P_DTYPE, INTERPRET), mask=mask)
    elif STORE == STORE_STOCHASTIC:
        tl.store(p_ptr, _stochastic_bf16(p, key, idx), mask=mask)
    else:
        tl.store(p_ptr, _cast(p, P_DTYPE, INTERPRET), mask=mask)
    tl.store(m_ptr, _cast(m, M_DTYPE, INTERPRET), mask=mask)


@triton.jit
def step_kernel(p_ptrs, g_ptrs, m_ptrs, c_ptrs, keys, sizes, chunk_tensor, chunk_start, safe, unorm, chunk, hyper,
                ALIGNED: tl.constexpr, K: tl.constexpr, DECAY: tl.constexpr, STORE: tl.constexpr, MAXIMIZE: tl.constexpr,
                INTERPRET: tl.constexpr, BLOCK: tl.constexpr, P_DTYPE: tl.constexpr, G_DTYPE: tl.constexpr,
                M_DTYPE: tl.constexpr):
    # One program = one chunk of one tensor.
    pid = tl.program_id(0)
    t = tl.load(chunk_tensor + pid)
    start = tl.load(chunk_start + pid)
    end = tl.minimum(start + chunk, tl.load(sizes + t))
    # hyperparameters from a device tensor: no recompilation, and no host sync, when they change
    decay = tl.load(hyper + S_DECAY_MUL)
    b1 = tl.load(hyper + S_BETA1)
    omb1 = tl.load(hyper + S_ONE_MINUS_BETA1)
    neg_lr = tl.load(hyper + S_NEG_LR)
    div = tl.load(hyper + S_DECAY_DIV)
    b2 = tl.load(hyper + S_BETA2)
    omb2 = tl.load(hyper + S_ONE_MINUS_BETA2)
    kp = tl.load(hyper + S_K_PARAM)
    p_base = tl.load(p_ptrs + t).to(tl.pointer_type(P_DTYPE))
    g_base = tl.load(g_ptrs + t).to(tl.pointer_type(G_DTYPE))
    m_base = tl.load(m_ptrs + t).to(tl.pointer_type(M_DTYPE))
    c_base = tl.load(c_ptrs + t).to(tl.pointer_type(P_DTYPE))  # null unless STORE is Kahan
    key = tl.load(keys + t)
    if K == K_LP:
        s = tl.load(safe + t)
        un = tl.load(unorm + t)
    else:
        s = 1.0
        un = 1.0
    # Whole blocks without a mask, then the masked tail. With ALIGNED (checked on the host: every
    # base address 16-byte aligned; chunk starts are multiples of BLOCK) the whole blocks use
    # 16-byte vector loads and stores.
    full = start + (end - start) // BLOCK * BLOCK
    for off in range(start, full, BLOCK):
        idx = off + tl.arange(0, BLOCK)
        p_ptr, g_ptr, m_ptr, c_ptr = p_base + idx, g_base + idx, m_base + idx, c_base + idx
        if ALIGNED:
            p_ptr = tl.multiple_of(p_ptr, 16)
            g_ptr = tl.multiple_of(g_ptr, 16)
            m_ptr = tl.multiple_of(m_ptr, 16)
        _update_block(p_ptr, g_ptr, m_ptr, c_ptr, key, idx, None, decay, b1, omb1, neg_lr, div, b2, omb2, kp, s, un,
                      K, DECAY, STORE, MAXIMIZE, INTERPRET, P_DTYPE, M_DTYPE)
    idx = full + tl.arange(0, BLOCK)
    _update_block(p_base + idx, g_base + idx, m_base + idx, c_base + idx, key, idx, idx < end, decay, b1, omb1, neg_lr,
                  div, b2, omb2, kp, s, un, K, DECAY, STORE, MAXIMIZE, INTERPRET, P_DTYPE, M_DTYPE)
