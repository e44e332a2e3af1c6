"""Muon as Lion-K with the nuclear norm, and `muon_groups`: one Lion-K optimizer for a whole model.

Muon ("Muon is a Nuclear Lion King", PAPER.md 2.4 and 10) keeps a momentum buffer and steps along
the polar factor msign = U V^T of its Nesterov blend. In torch.optim.Muon's form (buffer as an EMA)

    B <- mu B + (1 - mu) g,   u = (1 - mu) g + mu B  (nesterov=True)  or  u = B  (nesterov=False)
    p <- p (1 - lr lambda) - lr s msign(u)

Substituting B's update into u gives u = mu^2 B_old + (1 - mu^2) g: Lion-K's c with beta1 = mu^2,
and B is its exp_avg with beta2 = mu (Nesterov Muon is Lion-K with (beta1, beta2) = (mu^2, mu);
without Nesterov, (mu, mu)). Keller Jordan's form B <- mu B + g is (1 - mu)^-1 times this B, and
msign does not see the scale. s is `adjust_lr_fn`'s shape factor, so the step is Lion-K with
K = s ||X||_*, whose conjugate is the indicator of {||Y||_op <= s}: with decoupled decay lambda the
iterate satisfies sigma_max(W) <= s/lambda after phase 1 (`radius`). tests/test_muon.py checks each
of these against torch.optim.Muon and against plain references.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from lionlib import distributed, validate
from lionlib import kappa as kappa_lib
from lionlib.kappa.matrix import NS_COEFFICIENTS, SCALES, shape_scale
from lionlib.optim import LionK

__all__ = ["Muon", "muon_step", "muon_groups", "radius"]

_LOW_PRECISION = (torch.bfloat16, torch.float16)


def radius(shape, weight_decay: float, adjust_lr_fn: str | None = None) -> float:
    """s/lambda: the spectral-norm bound Muon (or nuclear Lion-K) keeps a weight of `shape` in."""
    if not weight_decay > 0:
        raise ValueError(f"the radius needs weight_decay > 0 (got {weight_decay!r}): without decay there is no constraint")
    return shape_scale(shape, adjust_lr_fn) / weight_decay


def _nuclear(group: dict) -> kappa_lib.Kappa:
    return kappa_lib.get("nuclear", method="svd" if group["exact_svd"] else "newton_schulz", ns_steps=group["ns_steps"],
                         ns_coefficients=tuple(group["ns_coefficients"]), eps=group["eps"], ns_dtype=group["ns_dtype"],
                         scale=group["adjust_lr_fn"])


def _betas(group: dict) -> tuple[float, float]:
    mu = validate.real("momentum", group["momentum"])
    return (mu * mu if group["nesterov"] else mu, mu)


def _check(group: dict, where: str) -> None:
    """Muon's own settings (LionK's checks cover lr, weight_decay and the tensors)."""
    if not 0.0 <= validate.real("momentum", group["momentum"]) <= 1.0:
        raise ValueError(f"{where}: Invalid momentum: {group['momentum']!r} (need 0 <= momentum <= 1)")
    for key in ("nesterov", "exact_svd", "cautious", "cautious_weight_decay"):
        if not isinstance(group[key], bool):
            raise ValueError(f"{where}: {key} must be True or False, got {group[key]!r}")
    if group["adjust_lr_fn"] not in SCALES:
        raise ValueError(f"{where}: Invalid adjust_lr_fn: {group['adjust_lr_fn']!r} (choose one of {SCALES})")
    try:
        _nuclear(group)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def _count(kappa, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(kept, numel) of a cautious mask over the whole tensor (summed over shards under FSDP2)."""
    counts = torch.stack([mask.sum(dtype=torch.float64), mask.new_tensor(mask.numel(), dtype=torch.float64)])
    total = getattr(kappa, "sum_over_shards", None)
    counts = total(counts) if total is not None else counts
    return counts[0], counts[1]


def _forloop(params, grads, exp_avgs, *, kappa, lr, beta1, beta2, weight_decay, implicit_decay, maximize,
             cautious, cautious_weight_decay, backend="forloop"):
    """Lion-K's for-loop step (lionlib.optim) with the two cautious options:
    cautious: u <- u * 1[u g > 0] * numel / kept (C-Muon; the step only where it agrees with g);
    cautious_weight_decay: the decay only where u p >= 0 (where it moves p the same way as u)."""
    for p, g, m in zip(params, grads, exp_avgs):
        work_p = p.float() if p.dtype in _LOW_PRECISION else p
        work_m = m.float() if m.dtype in _LOW_PRECISION else m
        g = g.to(work_m.dtype)
        if maximize:
            g = -g  # a new tensor: p.grad is never mutated
        c = work_m.mul(beta1).add_(g, alpha=1 - beta1)
        u = (kappa.grad(c) if kappa.symmetric else -kappa.grad(c.neg_())).to(work_p.dtype)
        if cautious:
            mask = (u * g) > 0
            kept, numel = _count(kappa, mask)
            u = u * mask * (numel / kept.clamp_min(1)).to(u.dtype)
        decay = (u * work_p >= 0) if cautious_weight_decay and weight_decay else None
        if weight_decay and not implicit_decay:
            work_p.sub_(work_p * decay if decay is not None else work_p, alpha=lr * weight_decay)
        work_p.add_(u, alpha=-lr)
        if weight_decay and implicit_decay:
            work_p.copy_(torch.where(decay, work_p / (1 + lr * weight_decay), work_p) if decay is not None
                         else work_p / (1 + lr * weight_decay))
        work_m.mul_(beta2).add_(g, alpha=1 - beta2)
        if work_p is not p:
            p.copy_(work_p)
        if work_m is not m:
            m.copy_(work_m)


def muon_step(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *, process_group=None, **hyper) -> None:
    """Functional Muon step on lists of tensors (updates `params` and `exp_avgs` in place).

    `hyper` holds kappa (a nuclear K), lr, beta1, beta2, weight_decay, implicit_decay, maximize,
    cautious and cautious_weight_decay. DTensors (FSDP2) take `distributed.sharded_step`; with a
    `process_group` (DDP replicas) each matrix's Newton-Schulz runs on one owner rank."""
    if distributed.has_dtensor(params):
        return distributed.sharded_step(params, grads, exp_avgs, backend="forloop", step=_forloop, **hyper)
    if process_group is not None:
        return distributed.replicated_step(params, grads, exp_avgs, step=_forloop, process_group=process_group, **hyper)
    _forloop(params, grads, exp_avgs, **hyper)


class Muon(LionK):
    """Muon (torch.optim.Muon's arguments) as Lion-K with K = s ||X||_* (see the module docstring).

    Each setting and the problem it solves, with decoupled decay lambda = `weight_decay`:
    - `momentum` mu, `nesterov`: Lion-K's (beta1, beta2) = (mu^2, mu), or (mu, mu) without Nesterov;
      the momentum changes the path, not the constraint.
    - `adjust_lr_fn`: the step is lr * s msign(c), the decay lr * lambda (torch's rule, decay by the
      unscaled lr), so the constraint is sigma_max(W) <= s/lambda (`radius`), with s = 1 for None
      (lionlib's default: radius 1/lambda for every shape; torch.optim.Muon's None means
      "original"), sqrt(max(1, rows/cols)) for "original", 0.2 sqrt(max(rows, cols)) for
      "match_rms_adamw". An N-D weight is the (shape[0], prod(rest)) matrix.
    - `exact_svd=True`: grad K = U V^T exactly, so the bound holds as Lion-K's theory states;
      Newton-Schulz (`ns_coefficients`, `ns_steps`, `eps`, in `ns_dtype`: None = the parameter's
      dtype, fp32 for bf16 parameters; torch.bfloat16 as torch.optim.Muon) returns U S' V^T with
      S' in about [0.7, 1.2], a K that is no longer exactly the nuclear norm.
    - `cautious=True` (C-Muon): the update masked where it disagrees in sign with the gradient and
      rescaled by numel / kept; `cautious_weight_decay=True`: decay only where update and parameter
      agree in sign (u p >= 0). Both leave Lion-K's theory: the rescaled masked update can have
      sigma_max above s (it is no longer grad K of anything in dom K*), and cautious decay no longer
      contracts every coordinate, so neither keeps the phase-1 bound guaranteed.
    - `process_group` (DDP replicas): each matrix's Newton-Schulz on one owner rank, broadcast.
      Under FSDP2 the same sharing is automatic (`lionlib.distributed`).
    LionK's keywords (`implicit_decay`, `maximize`, `momentum_dtype`) apply; `kahan_sum` and
    `stochastic_rounding` do not yet (bf16 matrices are stored rounded to nearest). The group's `kappa`
    and `betas` are derived from these settings at every step; set the settings, not them.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        *,
        nesterov: bool = True,
        adjust_lr_fn: str | None = None,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_steps: int = 5,
        eps: float = 1e-7,
        ns_dtype: torch.dtype | None = None,
        exact_svd: bool = False,
        cautious: bool = False,
        cautious_weight_decay: bool = False,
        process_group=None,
        **kwargs: Any,
    ):
        if kwargs.get("fused") or kwargs.get("foreach"):
            raise ValueError("Muon has one path (a for-loop: the nuclear K has no fused kernel); leave foreach and fused unset")
        if kwargs.get("kahan_sum") or kwargs.get("stochastic_rounding"):
            raise ValueError("Muon stores low-precision parameters rounded to nearest (no kahan_sum or "
                             "stochastic_rounding on its path yet): keep the matrices in fp32, or use LionK")
        kwargs.update(kahan_sum=False, stochastic_rounding=False)
        self._muon_defaults = dict(momentum=momentum, nesterov=nesterov, adjust_lr_fn=adjust_lr_fn,
                                   ns_coefficients=tuple(ns_coefficients), ns_steps=ns_steps, eps=eps, ns_dtype=ns_dtype,
                                   exact_svd=exact_svd, cautious=cautious, cautious_weight_decay=cautious_weight_decay)
        _check(self._muon_defaults, "Muon")
        self.process_group = process_group
        defaults = self._muon_defaults
        super().__init__(params, _nuclear(defaults), lr, _betas(defaults), weight_decay, **kwargs)
        self.defaults.update(self._muon_defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        where = f"Muon param group {len(self.param_groups)}"
        if isinstance(param_group, dict) and ({"kappa", "betas"} & param_group.keys()):
            raise ValueError(f"{where}: Muon derives 'kappa' and 'betas' from momentum, nesterov and the ns_* settings; "
                             "set those instead (or use LionK)")
        for key, value in self._muon_defaults.items():
            param_group.setdefault(key, value)
        _check(param_group, where)
        param_group["kappa"], param_group["betas"] = _nuclear(param_group), _betas(param_group)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, group in enumerate(self.param_groups):  # check everything before changing anything
            where = f"Muon param group {i}"
            _check(group, where)
            group["kappa"], group["betas"] = _nuclear(group), _betas(group)
            validate.check_step(group, self.state, where)
        for group in self.param_groups:
            params, grads, exp_avgs, _, _ = self._gather(group)  # no Kahan buffers or keys (see __init__)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            muon_step(params, grads, exp_avgs, process_group=self.process_group, kappa=group["kappa"],
                      lr=validate.real("lr", group["lr"]), beta1=beta1, beta2=beta2,
                      weight_decay=validate.real("weight_decay", group["weight_decay"]),
                      implicit_decay=group["implicit_decay"], maximize=group["maximize"], cautious=group["cautious"],
                      cautious_weight_decay=group["cautious_weight_decay"])
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As LionK's, and a torch.optim.Muon checkpoint loads too: its `momentum_buffer` is this
        `exp_avg` exactly (module docstring), its group keys are these, and its adjust_lr_fn=None
        means "original". Settings it lacks (ns_dtype, cautious, ...) come from this optimizer."""
        if any("kappa" not in g for g in state_dict["param_groups"]):  # not a LionK checkpoint: torch's
            state = {pid: {("exp_avg" if k == "momentum_buffer" else k): v for k, v in s.items()}
                     for pid, s in state_dict["state"].items()}
            groups = [{**g, "adjust_lr_fn": g.get("adjust_lr_fn") or "original"} for g in state_dict["param_groups"]]
            state_dict = {**state_dict, "state": state, "param_groups": groups}
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group["kappa"], group["betas"] = _nuclear(group), _betas(group)


def muon_groups(
    model: nn.Module,
    lr: float = 0.02,
    weight_decay: float = 0.0,
    *,
    momentum: float = 0.95,
    adjust_lr_fn: str | None = None,
    exact_svd: bool = False,
    ns_steps: int = 5,
    ns_dtype: torch.dtype | None = None,
    lion_lr: float = 3e-4,
    lion_betas: tuple[float, float] = (0.9, 0.99),
    lion_weight_decay: float = 0.0,
    gain_weight_decay: float = 0.0,
    head: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Param groups for one `LionK` over a whole model: Muon for the hidden matrices, Lion for the rest.

    - "matrices": every weight of >= 2 dims (linear, conv: N-D as (shape[0], rest)) that is not an
      embedding or the output head: K = s ||.||_* (Nesterov Muon: betas (momentum^2, momentum)),
      `lr`, `weight_decay`; constraint sigma_max(W) <= s/weight_decay.
    - "embeddings and head": nn.Embedding weights and the output head's weight (the modules named in
      `head`, by default the last nn.Linear registered; a weight tied to an embedding counts once):
      K = l1 (Lion), `lion_lr`, `lion_betas`, `lion_weight_decay`; constraint |w_i| <= 1/lambda.
    - "biases and gains": every tensor of < 2 dims (biases, norm gains): Lion, `gain_weight_decay`.
    Groups with no tensors are left out; each group carries a "name", which
    `ConstraintMonitor.describe()` prints with the constraint it solves.
    """
    seen: set[int] = set()
    special: set[int] = set()
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    heads = set(head) if head is not None else ({linears[-1][0]} if linears else set())
    names = {n for n, _ in model.named_modules()}
    if heads - names:
        raise ValueError(f"head names {sorted(heads - names)} are not modules of the model; choose from {sorted(names)[:12]}...")
    for n, m in model.named_modules():
        if isinstance(m, nn.Embedding) or n in heads:
            special |= {id(p) for p in m.parameters(recurse=False) if p.dim() >= 2}
    matrices, rest, small = [], [], []
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (small if p.dim() < 2 else rest if id(p) in special else matrices).append(p)
    mu = validate.real("momentum", momentum)
    nuclear = kappa_lib.get("nuclear", method="svd" if exact_svd else "newton_schulz", ns_steps=ns_steps,
                            ns_dtype=ns_dtype, scale=adjust_lr_fn)
    groups = [
        dict(name="matrices", params=matrices, kappa=nuclear, lr=lr, betas=(mu * mu, mu), weight_decay=weight_decay),
        dict(name="embeddings and head", params=rest, kappa="l1", lr=lion_lr, betas=tuple(lion_betas),
             weight_decay=lion_weight_decay),
        dict(name="biases and gains", params=small, kappa="l1", lr=lion_lr, betas=tuple(lion_betas),
             weight_decay=gain_weight_decay),
    ]
    return [g for g in groups if g["params"]]
