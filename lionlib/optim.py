"""Lion and Lion-K as `torch.optim` optimizers (Muon, Lion-K with the nuclear norm: `lionlib.muon`).

One update rule, the paper's eq. (2), written in PyTorch's sign convention. The state `exp_avg`
is the EMA of +grad (the paper's m is -exp_avg), and for every K:

    c        = beta1 * exp_avg + (1 - beta1) * g                   (g = grad, or -grad if maximize)
    p       <- p * (1 - lr * wd) - lr * grad K(c)                  (explicit decay, as in Lion)
    p       <- (p - lr * grad K(c)) / (1 + lr * wd)                (implicit_decay=True, PAPER.md 2.3)
    exp_avg <- beta2 * exp_avg + (1 - beta2) * g

For a K that is not symmetric (logsumexp) the direction is +grad K(-c), the paper's grad K(m~);
for symmetric K the two are equal. With K = ||.||_1 (grad K = sign) this is exactly Lion.

Three layers, as torch.optim: the class (`LionK`: state, validation, and the backend of each
param group, decided once and cached), one functional step (`lionk`), and the backends, all
checked against the for-loop reference (tests/test_optim.py, test_fused.py):
- "forloop": one tensor at a time; the readable reference.
- "foreach": horizontally batched `torch._foreach_*` ops per (device, dtype) group.
- "cpp" / "triton": single-pass fused kernels from `lionlib.fused` (CPU / CUDA), the defaults;
  `lionlib.fused.supports` says which tensors a kernel takes, and foreach takes the rest.
Low-precision parameters (bf16, fp16) are updated in fp32 and stored once, by default with Kahan
summation (`kahan_sum`: a compensation buffer in the parameter's dtype carries what rounding
dropped into the next step, so steps below half an ulp still add up), or with stochastic rounding
(`stochastic_rounding`, bf16: unbiased in expectation, deterministic under `torch.manual_seed`),
or rounded to nearest (`kahan_sum=False`), identically on every path. `momentum_dtype=
torch.float32` also keeps the momentum in fp32, and `state_dict` round trips keep it so.

NaN and inf follow torch's eager semantics, identically on every path (tested). torch.sign(NaN)
is 0, so for Lion a NaN gradient coordinate takes no step but leaves a NaN momentum, which keeps
that coordinate frozen (decay only) from then on; for a K whose grad maps NaN to NaN (tanh, clip)
the parameter itself becomes NaN. An infinite gradient gives a step of size lr (sign(inf) = 1)
and an infinite momentum. Nothing is skipped silently: guard with torch.nn.utils.clip_grad_norm_
(error_if_nonfinite=True) or AMP's GradScaler if non-finite gradients are possible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from lionlib import distributed
from lionlib import fused as fused_lib  # Triton itself is imported only when a kernel runs
from lionlib import kappa as kappa_lib
from lionlib import validate
from lionlib.fused import eager
from lionlib.kappa import Kappa

__all__ = ["LionK", "Lion", "lionk", "lionk_step", "lp_scale"]

BACKENDS = ("forloop", "foreach", "cpp", "triton")
_LOW_PRECISION = (torch.bfloat16, torch.float16)
_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# The backends: torch ops (`lionlib.fused.eager`) and the kernels (`lionlib.fused`).

# The kernels update what `fused.supports` lets them take and hand back the rest, which foreach
# takes (as torch.optim.adam's fused path leaves what it cannot take), so `lionlib.fused` never
# calls back into this module. Looked up by name at each step (so a replaced `fused.cpp_step` is
# the one called); the public names' compile guard is skipped (one frame less) and applied in `lionk`.
_KERNELS = {"cpp": "cpp_step", "triton": "triton_step"}
_STEPS = {"forloop": eager.forloop, "foreach": eager.foreach}


# ----------------------------------------------------------------------------------------------
# The functional step.


def lionk(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *, kappa: Kappa, lr: float | Tensor,
          beta1: float, beta2: float, weight_decay: float = 0.0, implicit_decay: bool = False, maximize: bool = False,
          backend: str | None = None, comps: list[Tensor | None] | None = None,
          keys: list[int | None] | None = None, cautious: bool = False, cautious_weight_decay: bool = False) -> None:
    """One Lion-K step on lists of tensors (updates `params` and `exp_avgs` in place; grads are
    only read). `backend` is one of `BACKENDS`, or None for the default dispatch (`LionK`'s with
    foreach and fused unset). `lr` may be a 0-dim tensor on the parameters' device.

    How each low-precision parameter is stored (`lionlib.fused.eager.store`): with `comps[i]` a
    Kahan buffer (its dtype), with `keys[i]` (bf16) stochastically rounded under that 32-bit
    key, else rounded to nearest. `cautious` / `cautious_weight_decay`: see `LionK`; the kernels
    have no code for them (`lionlib.fused.supports` says why), so a kernel backend takes foreach."""
    careful = dict(cautious=cautious, cautious_weight_decay=cautious_weight_decay) if cautious or cautious_weight_decay else {}
    if backend is None:
        backend = _resolve_backend(params, kappa, None, None, **careful)
    if distributed.has_dtensor(params):  # FSDP2: local shards, global norms (lionlib.distributed)
        return distributed.sharded_step(params, grads, exp_avgs, backend=backend, step=lionk_step, kappa=kappa, lr=lr,
                                        beta1=beta1, beta2=beta2, weight_decay=weight_decay,
                                        implicit_decay=implicit_decay, maximize=maximize, **careful)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if isinstance(lr, Tensor) and backend == "cpp":
        lr = float(lr)  # a CPU tensor: host memory, no device sync
    hyper = dict(kappa=kappa, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, implicit_decay=implicit_decay,
                 maximize=maximize)
    stores = dict(comps=comps, keys=keys) if comps or keys else {}
    kernel = None if careful or backend not in _KERNELS else getattr(fused_lib, _KERNELS[backend])
    if kernel is None:
        return _STEPS.get(backend, eager.foreach)(params, grads, exp_avgs, **hyper, **stores, **careful)
    kernel = getattr(kernel, "__wrapped__", kernel)
    if torch.compiler.is_compiling():  # the launchers work on data_ptr tables: one opaque eager call
        kernel = torch.compiler.disable(kernel)
    rest = kernel(params, grads, exp_avgs, **hyper, **stores)
    if rest[0]:
        eager.foreach(*rest[:3], **hyper, **(dict(comps=rest[3], keys=rest[4]) if stores else {}))


def lionk_step(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *, backend: str = "forloop", **hyper) -> None:
    """`lionk` with the for-loop backend by default (the name the functional step had first)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    lionk(params, grads, exp_avgs, backend=backend, **hyper)


def _resolve_backend(params: list[Tensor], kappa: Kappa, foreach: bool | None, fused: bool | None, *,
                     cautious: bool = False, cautious_weight_decay: bool = False) -> str:
    """torch.optim's rules: explicit flags win. fused=True is strict: the device's kernel (checked
    before the step by `validate.check_step`, which names a tensor the kernel cannot take).
    By default (None) the fused kernel of the device where it applies: Triton on CUDA, C++ on CPU
    (when it builds here); foreach for K without a kernel and the tensors a kernel leaves. fp64
    takes the C++ kernel only with fused=True: by default it stays on foreach, bit-identical to the
    for-loop for every K (the kernel is, for K without tanh, sqrt or pow). `LionK` asks this once
    per param group and caches the answer (see `LionK._backend`). The cautious options have no
    kernel (`fused.kernel_refusal` says why): foreach, or the for-loop with foreach=False."""
    on_cuda = all(p.is_cuda for p in params)
    if fused:
        return validate.fused_backend(params)
    if cautious or cautious_weight_decay:
        return "forloop" if foreach is False else "foreach"
    if fused is None and on_cuda and fused_lib.kernel_refusal("triton", kappa) is None and fused_lib.triton_available():
        return "triton"
    if fused is None and foreach is None and not any(p.is_cuda or p.dtype == torch.float64 for p in params):
        if fused_lib.kernel_refusal("cpp", kappa) is None and fused_lib.cpp_available():
            return "cpp"
    return "forloop" if foreach is False else "foreach"


# ----------------------------------------------------------------------------------------------
# The optimizer.


class LionK(Optimizer):
    """Lion-K (paper eq. (2)): Lion with sign replaced by the gradient of a convex K.

    With weight decay lambda it solves min_x f(x) + (1/lambda) K*(lambda x); for K = ||.||_1 that is
    min f(x) subject to ||x||_inf <= 1/lambda (PAPER.md section 3).

    Args:
        params: parameters or param groups; every group may set its own `kappa` and hyperparameters.
        kappa: a name from `lionlib.kappa.names()` or a `Kappa` object (e.g. `kappa.get("lp", p=1.5)`).
        lr: learning rate (the paper's epsilon). betas: (beta1, beta2) of eq. (2).
        weight_decay: lambda, multiplied by lr as in Lion and AdamW (so the box has radius 1/lambda).
        implicit_decay: decay at the new iterate, p <- (p - lr grad K(c)) / (1 + lr lambda): the scheme
            the discrete-time theorem analyses. Differs from the default at O(lr^2).
        maximize: ascend the objective instead.
        foreach / fused: execution path, as in torch.optim (see the module docstring).
        momentum_dtype: dtype of `exp_avg` (default: the parameter's); torch.float32 for bf16 params.
        kahan_sum: Kahan-compensated stores for bf16/fp16 parameters (state `kahan_comp`, one buffer
            in the parameter's dtype); None (default) turns it on for them unless stochastic
            rounding is chosen, as optimi does. fp32/fp64 parameters never need it.
        stochastic_rounding: store bf16 parameters stochastically rounded from the fp32 result
            (random bits hash32(key + index) with a per-tensor key from `torch.initial_seed()`, the
            parameter's position and the step, state `sr_key` and `step`): no extra memory.
            Plain tensors only (a DTensor under FSDP2 is rounded to nearest).
        cautious: C-Lion (Liang et al., "Cautious Optimizers"): each coordinate's step is dropped
            where the direction grad K(c) disagrees in sign with the gradient, and the kept ones
            rescaled by numel / (number kept) per tensor. That count is a per-tensor reduction, so
            the fused kernels cannot take it: the foreach path does (fused=True is refused with
            the reason). Under FSDP2 the count is taken per shard.
        cautious_weight_decay: decay only the coordinates where the update and the parameter
            agree in sign (those the step already moves toward 0); foreach / for-loop only.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        kappa: str | Kappa = "l1",
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        implicit_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
        momentum_dtype: torch.dtype | None = None,
        kahan_sum: bool | None = None,
        stochastic_rounding: bool = False,
        cautious: bool = False,
        cautious_weight_decay: bool = False,
    ):
        validate.check_hyper(lr, betas, weight_decay, momentum_dtype)
        validate.check_stores(kahan_sum, stochastic_rounding)
        if fused and foreach:
            raise ValueError("fused=True and foreach=True cannot both be set")
        defaults = dict(
            kappa=kappa_lib.get(kappa),
            lr=lr,
            betas=tuple(betas),
            weight_decay=weight_decay,
            implicit_decay=implicit_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            momentum_dtype=momentum_dtype,
            kahan_sum=kahan_sum,
            stochastic_rounding=stochastic_rounding,
            cautious=cautious,
            cautious_weight_decay=cautious_weight_decay,
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        # Validate every group up front, so a bad group fails when added, not mid-step, and
        # leaves the optimizer as it was.
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            group["kappa"] = kappa_lib.get(group["kappa"])
            validate.check_group(group, f"{type(self).__name__} param group {len(self.param_groups) - 1}")
        except (ValueError, RuntimeError):
            self.param_groups.pop()
            raise
        self._backends = {}  # recomputed at the next step

    def _backend(self, group: dict[str, Any], params: list[Tensor]) -> str:
        """The group's backend, decided once (`_resolve_backend`) and cached until the group's K,
        flags, or its parameters' devices and dtypes change (or a group is added or loaded)."""
        careful = dict(cautious=group["cautious"], cautious_weight_decay=group["cautious_weight_decay"])
        key = (group["kappa"], group["foreach"], group["fused"], *careful.values(), frozenset((p.device, p.dtype) for p in params))
        cached = self.__dict__.setdefault("_backends", {}).get(id(group))
        if cached is None or cached[0] != key:
            backend = _resolve_backend(params, group["kappa"], group["foreach"], group["fused"],
                                       **{k: v for k, v in careful.items() if v})
            cached = self._backends[id(group)] = (key, backend)
        return cached[1]

    def _gather(self, group: dict[str, Any]):
        """The group's tensors with a gradient, their momenta, and how each is stored: Kahan
        buffers and stochastic-rounding keys (None lists when the group uses neither)."""
        params, grads, exp_avgs, comps, keys = [], [], [], [], []
        kahan = group["kahan_sum"] is True or (group["kahan_sum"] is None and not group["stochastic_rounding"])
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if "exp_avg" not in state:
                dtype = group["momentum_dtype"] or p.dtype
                state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                plain = not distributed.is_dtensor(p)
                if kahan and p.dtype in _LOW_PRECISION and plain:
                    state["kahan_comp"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["stochastic_rounding"] and p.dtype == torch.bfloat16 and plain:
                    state["sr_key"], state["step"] = self._stochastic_key(p), 0
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            comps.append(state.get("kahan_comp"))
            if "sr_key" in state:
                state["step"] += 1
                keys.append(eager.hash32((state["sr_key"] + eager.hash32(state["step"] & _M32)) & _M32))
            else:
                keys.append(None)
        return params, grads, exp_avgs, (comps if any(c is not None for c in comps) else None), \
            (keys if any(k is not None for k in keys) else None)

    def _stochastic_key(self, p: Tensor) -> int:
        """A 32-bit key for p's stochastic rounding: from `torch.initial_seed()` (so runs repeat
        under `torch.manual_seed`) and p's position in the optimizer."""
        position = next(i for i, q in enumerate(q for g in self.param_groups for q in g["params"]) if q is p)
        seed = torch.initial_seed()
        return eager.hash32((eager.hash32(seed & _M32 ^ eager.hash32((seed >> 32) & _M32)) + position * 0x9E3779B9) & _M32)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):  # check everything before changing anything
            validate.check_step(group, self.state, f"{type(self).__name__} param group {i}")
        for group in self.param_groups:
            params, grads, exp_avgs, comps, keys = self._gather(group)
            if not params:
                continue
            beta1, beta2 = (validate.real("beta", b) for b in group["betas"])
            lionk(
                params,
                grads,
                exp_avgs,
                kappa=group["kappa"],
                lr=validate.lr(group["lr"]),  # a 1-element tensor lr works, as in torch, without a host sync
                beta1=beta1,
                beta2=beta2,
                weight_decay=validate.real("weight_decay", group["weight_decay"]),
                implicit_decay=group["implicit_decay"],
                maximize=group["maximize"],
                backend=self._backend(group, params),
                comps=comps,
                keys=keys,
                cautious=group["cautious"],
                cautious_weight_decay=group["cautious_weight_decay"],
            )
        return loss

    def state_dict(self) -> dict[str, Any]:
        """As torch's, with each group's K stored as a plain spec ({"name": "lp", "p": 1.5}) so the
        file loads with `torch.load(..., weights_only=True)`."""
        state_dict = super().state_dict()
        for group in state_dict["param_groups"]:
            group["kappa"] = group["kappa"].spec()
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's, but the momentum keeps its saved dtype, and keys a saved group lacks
        (`lion_pytorch.Lion`'s checkpoints have no `kappa`; older lionlib ones no `foreach`...)
        are filled from this optimizer's own groups, as torch fills new defaults. Every loaded
        group is checked before anything is replaced.

        `Optimizer.load_state_dict` casts floating state to the parameter's dtype, which would round
        fp32 momentum of bf16 parameters to bf16 and break bit-exact continuation.
        """
        saved = {pid: s["exp_avg"] for pid, s in state_dict["state"].items() if "exp_avg" in s}
        groups = validate.fill_missing_keys(state_dict["param_groups"], self.param_groups)
        groups = [{**g, "kappa": kappa_lib.get(**g["kappa"]) if isinstance(g["kappa"], dict) else g["kappa"]} for g in groups]
        for i, (g, own) in enumerate(zip(groups, self.param_groups)):
            validate.check_group({**g, "params": own["params"]}, f"loaded param group {i}")
        super().load_state_dict({**state_dict, "param_groups": groups})
        self._backends = {}
        saved_ids = (pid for g in state_dict["param_groups"] for pid in g["params"])
        own_params = (p for g in self.param_groups for p in g["params"])
        for pid, p in zip(saved_ids, own_params):
            if pid in saved:
                self.state[p]["exp_avg"] = saved[pid].to(device=p.device, copy=True)


def lp_scale(numel: int, p: float) -> float:
    """Learning-rate multiplier n^(1 - 1/p) that gives Lion-lp Lion's step size on an n-element tensor.

    grad ||c||_p has unit l_q norm (1/p + 1/q = 1), so its entries are about n^(-1/q): without a
    scale, a p = 2 step on a 37k-entry kernel is ~200x smaller than Lion's. Multiplying lr by
    s = n^(1/q) (and dividing weight decay by s, so lr * wd and the phase-1 speed are unchanged)
    makes the step equal Lion's when all |c_i| are equal; s = 1 at p = 1, where Lion-lp is Lion.
    The constraint then reads (mean |x_i|^q)^(1/q) <= 1/wd: the box at p = 1, the RMS at p = 2.
    This is Lion-K with K = s ||x||_p; the scaling is this companion's choice, not the paper's.
    """
    return float(numel) ** (1 - 1 / p)


class Lion(LionK):
    """Lion (Chen et al. 2023): Lion-K with K = ||.||_1. Same hyperparameters and defaults as
    `lion_pytorch.Lion` and the authors' code (weight decay multiplied by lr)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(params, "l1", lr, betas, weight_decay, **kwargs)
