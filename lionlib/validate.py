"""What `LionK` checks before it changes anything, and how it reads other optimizers' checkpoints.

Every check raises with a message that names the bad value and how to fix it, and runs before
any tensor or state is touched, so a failing `add_param_group`, `step` or `load_state_dict`
leaves the optimizer as it was (torch.optim's conventions; tests/test_optim.py).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor

from lionlib import fused as fused_lib
from lionlib import kappa as kappa_lib

__all__ = ["real", "lr", "check_hyper", "check_stores", "check_params", "check_group", "check_step", "fused_backend", "fill_missing_keys"]


def real(name: str, value: Any) -> float:
    """`value` as a float if it is a real number: int, float, numpy scalar, or a 1-element real
    tensor (as torch.optim accepts for lr); booleans are refused (True is no learning rate)."""
    if isinstance(value, Tensor):
        if value.numel() != 1:  # torch.optim's wording
            raise ValueError(f"Tensor {name} must be 1-element, got shape {tuple(value.shape)}: pass a float or a 1-element tensor")
        if value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"Invalid {name}: {value!r} (a tensor {name} must hold one real number)")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Invalid {name}: {name}={value!r} (need a real number, got {type(value).__name__})")
    return float(value)


def lr(value: Any) -> float | Tensor:
    """The learning rate as a step uses it: a float, or, for a 1-element tensor on an accelerator,
    a 0-dim tensor there, which the step reads on the device (`.item()` would be a host sync).
    A CPU tensor is read on the host: no sync, and the same bits as the float lr."""
    if isinstance(value, Tensor) and value.device.type != "cpu":
        if value.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(value.shape)}: pass a float or a 1-element tensor")
        if not value.is_floating_point():
            raise ValueError(f"Invalid lr: a tensor lr must hold one real floating-point number, got {value.dtype}")
        return value.reshape(())
    return real("lr", value)


def check_hyper(lr_, betas, weight_decay, momentum_dtype=None, *, at_step: bool = False) -> None:
    """lr, betas, weight decay and momentum dtype. At a step (`at_step`), a tensor lr on an
    accelerator is checked for shape and dtype only (its value was checked when it was set;
    reading it again would sync the host every step)."""
    lr_value = lr(lr_)
    if isinstance(lr_value, Tensor):
        lr_value = 0.0 if at_step else float(lr_value)
    if not 0.0 <= lr_value < math.inf:
        raise ValueError(f"Invalid learning rate: lr={lr_!r} (need a finite float >= 0)")
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"Invalid betas: {betas!r} (need a pair (beta1, beta2))")
    for i, beta in enumerate(betas):
        if not 0.0 <= real(f"beta{i + 1}", beta) <= 1.0:
            raise ValueError(f"Invalid beta{i + 1}: {beta!r} (need 0 <= beta <= 1)")
    if not 0.0 <= real("weight_decay", weight_decay) < math.inf:
        raise ValueError(f"Invalid weight_decay: {weight_decay!r} (need a finite float >= 0)")
    if momentum_dtype is not None and not (isinstance(momentum_dtype, torch.dtype) and momentum_dtype.is_floating_point):
        raise ValueError(f"Invalid momentum_dtype: {momentum_dtype!r} (need None or a floating torch.dtype)")


def fused_backend(params: list[Tensor]) -> str:
    """The kernel `fused=True` asks for: Triton when any tensor is on CUDA, else the C++ kernel
    (meta tensors too: they are checked again once they have a device)."""
    return "triton" if any(p.is_cuda for p in params) else "cpp"


def _strict(group: dict[str, Any], where: str, triples) -> None:
    """fused=True is strict (as torch's fused optimizers): every tensor must be one the kernel
    takes, else an error naming it. `triples` yields (index, p, g or None, m or its dtype)."""
    params = group["params"]
    backend = fused_backend(params)
    if backend == "cpp" and not fused_lib.cpp_available():
        raise RuntimeError(f"{where}: fused=True, but the C++ kernel does not build here (see the warning above); "
                           "use fused=None to let lionlib choose")
    if backend == "triton" and not fused_lib.triton_available():
        raise RuntimeError(f"{where}: fused=True on CUDA needs Triton (pip install triton), which is not importable")
    reason = fused_lib.kernel_refusal(backend, group["kappa"], cautious=group["cautious"],
                                      cautious_weight_decay=group["cautious_weight_decay"])
    if reason:
        raise RuntimeError(f"{where}: fused=True, but {reason}. Use fused=None to let lionlib choose.")
    for i, p, g, m in triples:
        reason = fused_lib.tensor_refusal(backend, p, g, m)
        if reason:
            raise RuntimeError(f"{where}: fused=True, but parameter {i} (shape {tuple(p.shape)}, {p.dtype}, {p.device}) "
                               f"cannot take the fused path: {reason}. Use fused=None to let lionlib choose.")


def check_stores(kahan_sum, stochastic_rounding) -> None:
    """How low-precision parameters are stored: Kahan or stochastic rounding, not both."""
    if kahan_sum not in (None, True, False):
        raise ValueError(f"Invalid kahan_sum: {kahan_sum!r} (need None, True or False)")
    if stochastic_rounding not in (True, False):
        raise ValueError(f"Invalid stochastic_rounding: {stochastic_rounding!r} (need True or False)")
    if kahan_sum is True and stochastic_rounding:
        raise ValueError("kahan_sum=True and stochastic_rounding=True cannot both be set: choose one way to keep "
                         "small updates of bf16 parameters")


def check_params(params, where: str, name: str = "LionK") -> None:
    """Real floating-point parameters only (torch.optim's wording and type for complex ones)."""
    for i, p in enumerate(params):
        if p.is_complex():
            raise RuntimeError(f"{where}: {name} does not support complex parameters (parameter {i}, shape {tuple(p.shape)}); "
                               "optimise torch.view_as_real(p) instead")
        if not p.is_floating_point():
            raise ValueError(f"{where}: parameter {i} is {p.dtype}; floating-point parameters only")


def check_group(group: dict[str, Any], where: str) -> None:
    """A param group as added: its K, its hyperparameters, and every tensor against them."""
    check_hyper(group["lr"], group["betas"], group["weight_decay"], group["momentum_dtype"])
    check_stores(group["kahan_sum"], group["stochastic_rounding"])
    for flag in ("cautious", "cautious_weight_decay"):
        if group[flag] not in (True, False):
            raise ValueError(f"{where}: Invalid {flag}: {group[flag]!r} (need True or False)")
    if group["fused"] and group["foreach"]:
        raise ValueError(f"{where}: fused=True and foreach=True cannot both be set")
    K = group["kappa"]
    check_params(group["params"], where)
    for i, p in enumerate(group["params"]):
        try:
            K.check_tensor(p)
        except ValueError as e:
            raise ValueError(f"{where}: parameter {i} cannot be updated with K = {K.describe()}: {e}") from None
    if group["fused"]:  # meta tensors (deferred init: built on meta, then to_empty()) are checked at step time
        _strict(group, where, ((i, p, None, group["momentum_dtype"]) for i, p in enumerate(group["params"]) if not p.is_meta))


def check_step(group: dict[str, Any], state: dict, where: str) -> None:
    """Everything a step of this group needs, checked before any group is updated: the
    gradients, the hyperparameters (a scheduler or user may have changed them), the K's shape
    needs, and the fused path's for fused=True."""
    check_hyper(group["lr"], group["betas"], group["weight_decay"], group["momentum_dtype"], at_step=True)
    K = kappa_lib.get(group["kappa"]) if not isinstance(group["kappa"], kappa_lib.Kappa) else group["kappa"]
    shaped = type(K).check_tensor is not kappa_lib.Kappa.check_tensor  # only some K have shape needs
    strict = bool(group["fused"])
    with_grad = []
    for i, p in enumerate(group["params"]):
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            raise RuntimeError(f"{where}: LionK does not support sparse gradients (parameter {i}); use a dense gradient")
        if g.is_complex():
            raise RuntimeError(f"{where}: LionK does not support complex gradients (parameter {i})")
        if g.shape != p.shape:
            raise RuntimeError(f"{where}: gradient shape {tuple(g.shape)} does not match parameter {i}'s {tuple(p.shape)}")
        if shaped:
            try:
                K.check_tensor(p)
            except ValueError as e:
                raise ValueError(f"{where}: parameter {i} cannot be updated with K = {K.describe()}: {e}") from None
        if strict:
            m = state.get(p, {}).get("exp_avg", group["momentum_dtype"])
            with_grad.append((i, p, g, m))
    if strict and with_grad:
        _strict(group, where, with_grad)


def fill_missing_keys(saved_groups: list[dict], own_groups: list[dict]) -> list[dict]:
    """Saved param groups with the keys they lack taken from the optimizer's own groups, as
    torch's optimizers fill new defaults when loading (`__setstate__`): a `lion_pytorch.Lion`
    checkpoint (lr, betas, weight_decay) or one from an older lionlib loads, and keeps this
    optimizer's K, decay scheme and execution path. Group counts must match (torch checks)."""
    if len(saved_groups) != len(own_groups):
        raise ValueError(f"loaded state dict has {len(saved_groups)} parameter groups, this optimizer "
                         f"{len(own_groups)}: build the optimizer with the same param groups as the saved one")
    return [{**{k: v for k, v in own.items() if k != "params"}, **saved} for saved, own in zip(saved_groups, own_groups)]
