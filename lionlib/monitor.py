"""Constraint diagnostics for real training runs: does every tensor obey what Lion-K predicts?

With weight decay lambda, Lion-K drives each parameter tensor x into {lambda x in dom K*}: for
Lion, ||x||_inf <= 1/lambda. `ConstraintMonitor` records, per tensor and step:

- `constraint`: lambda * gauge(x), where gauge is the norm whose unit ball is dom K*
  (lambda ||x||_inf for Lion, lambda ||x||_q for Lion-lp). Inside the set when <= 1.
- `bound`: the phase-1 guarantee on it, 1 + prod_s(1 - lr_s lambda) * (constraint_0 - 1)_+
  (1 / (1 + lr_s lambda) per step for implicit decay), valid for ANY gradient sequence
  (PAPER.md 4.2). Only meaningful for Lion-K groups; NaN for other optimizers.
- `kkt`: the KKT score S(x) = K(-g) + lambda <x, g> of PAPER.md section 3 (0 at a constrained
  stationary point, >= 0 on the feasible set for norm K), with g the latest gradient, and
  `kkt_rel` = S / K(-g), in [0, 2] once feasible, comparable across tensors.

Call `record()` after every `optimizer.step()`: the bound multiplies one factor per call.
Sharded (FSDP2) parameters are gathered, so every rank records the global lambda ||x||; `record()`
is then a collective, to be called on every rank (and so is the constructor).
For optimizers without a `kappa` in their groups (AdamW), the geometry of `default_kappa` is used,
so Lion's box can be watched under AdamW too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.optim import Optimizer

from lionlib import kappa as kappa_lib
from lionlib.distributed import full_tensor

if TYPE_CHECKING:  # pandas is imported by frame(), so recording needs torch alone (extra "monitor")
    import pandas as pd

__all__ = ["ConstraintMonitor"]


class ConstraintMonitor:
    """Per-tensor constraint value, phase-1 bound and KKT score along training."""

    def __init__(
        self,
        optimizer: Optimizer,
        names: Iterable[tuple[str, Tensor]] | None = None,
        *,
        default_kappa: str = "l1",
        every: int = 1,
        kkt: bool = True,
    ):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        self.optimizer = optimizer
        self.every = every
        self.kkt = kkt
        self.default_kappa = kappa_lib.get(default_kappa)
        by_id = {id(p): n for n, p in names} if names is not None else {}
        self._tensors = []  # (name, param, group)
        for gi, group in enumerate(optimizer.param_groups):
            if group.get("weight_decay", 0) <= 0:
                continue  # no decay, no constraint
            for pi, p in enumerate(group["params"]):
                self._tensors.append((by_id.get(id(p), f"group{gi}.param{pi}"), p, group))
        self._factor = [1.0] * len(self._tensors)
        self._start = [self._gauge(p, g) for _, p, g in self._tensors]
        self._calls = 0
        self.rows: list[dict] = []

    def _kappa(self, group) -> kappa_lib.Kappa:
        return group.get("kappa", self.default_kappa)

    @torch.no_grad()
    def _gauge(self, p: Tensor, group) -> float:
        gauge = self._kappa(group).gauge(group["weight_decay"] * full_tensor(p.detach()).double())
        return math.nan if gauge is None else float(gauge)

    @torch.no_grad()
    def record(self, step: int | None = None) -> None:
        """Advance the phase-1 bound by one optimizer step; store a row every `every` calls."""
        self._calls += 1
        keep = self._calls % self.every == 0 or self._calls == 1
        for i, (name, p, group) in enumerate(self._tensors):
            lam_lr = group["weight_decay"] * float(group["lr"])
            implicit = group.get("implicit_decay", False)
            self._factor[i] *= 1 / (1 + lam_lr) if implicit else max(1 - lam_lr, 0.0)
            if not keep:
                continue
            K = self._kappa(group)
            row = dict(step=self._calls if step is None else step, name=name, kappa=K.name, numel=p.numel())
            row["constraint"] = self._gauge(p, group)
            is_lionk = "kappa" in group
            row["bound"] = 1 + self._factor[i] * max(self._start[i] - 1, 0.0) if is_lionk else math.nan
            row["kkt"] = row["kkt_rel"] = math.nan
            # The paper's S for a norm K. `lyapunov.kkt_score` is the same number inside the set but
            # adds K*(lambda x), which is +inf for an fp32 tensor rounded a few ulps past the boundary.
            if self.kkt and K.is_norm and p.grad is not None:
                x, g = full_tensor(p.detach()).double(), full_tensor(p.grad.detach()).double()
                k_neg_g = float(K.value(-g))
                s = k_neg_g + group["weight_decay"] * float((x * g).sum())
                row["kkt"] = s
                row["kkt_rel"] = s / k_neg_g if k_neg_g > 0 else math.nan
            self.rows.append(row)

    def describe(self) -> str:
        """One line per param group: its name (a "name" key, as `lionlib.muon_groups` sets), K,
        lr, lambda, and the constraint it solves, with the radius of each tensor shape where the
        K has one (s/lambda for a shape-scaled nuclear K)."""
        lines = []
        for gi, group in enumerate(self.optimizer.param_groups):
            K, lam = self._kappa(group), float(group.get("weight_decay", 0.0))
            line = (f"{group.get('name', f'group {gi}')}: K = {K.name}, lr = {float(group['lr']):g}, lambda = {lam:g}, "
                    f"{len(group['params'])} tensors: ")
            if lam <= 0:
                lines.append(line + "no decay, no constraint")
                continue
            line += K.constraint
            if hasattr(K, "radius"):
                radii = sorted({(tuple(p.shape), K.radius(p.shape, lam)) for p in group["params"]})
                line += "; " + ", ".join(f"{'x'.join(map(str, s))}: {r:.4g}" for s, r in radii)
            elif K.is_norm:
                line += f" (1/lambda = {1 / lam:.4g})"
            lines.append(line)
        return "\n".join(lines)

    def state_dict(self) -> dict:
        """What a checkpoint needs so that a resumed run continues the same bound and history."""
        return dict(factor=list(self._factor), start=list(self._start), calls=self._calls, rows=list(self.rows))

    def load_state_dict(self, state: dict) -> None:
        if len(state["factor"]) != len(self._tensors):
            raise ValueError(f"monitor state has {len(state['factor'])} tensors, this optimizer {len(self._tensors)}")
        self._factor, self._start = list(state["factor"]), list(state["start"])
        self._calls, self.rows = state["calls"], list(state["rows"])

    def frame(self) -> pd.DataFrame:
        """One row per (recorded step, tensor)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["step", "name", "kappa", "numel", "constraint", "bound", "kkt", "kkt_rel"])

    def summary(self, tol: float = 1e-4) -> pd.DataFrame:
        """Last recorded row of every tensor, with `inside` = constraint <= 1 + tol.

        The slack is for rounding: in fp32 the iterate sits on the boundary only up to about
        ulp / (lr lambda), since each step's rounding error is contracted by (1 - lr lambda).
        """
        last = self.frame().groupby("name", sort=False).tail(1).reset_index(drop=True)
        last["inside"] = last["constraint"] <= 1 + tol
        return last

    def plot(self, ax=None, max_tensors: int = 12):
        """lambda * gauge(x) per tensor against 1, with the phase-1 bound dashed."""
        import matplotlib.pyplot as plt
        import seaborn as sns

        df = self.frame()
        keep = df.groupby("name")["numel"].first().nlargest(max_tensors).index
        df = df[df["name"].isin(keep)]
        ax = ax or plt.subplots(figsize=(6, 3.5))[1]
        sns.lineplot(data=df, x="step", y="constraint", hue="name", ax=ax, legend=len(keep) <= 8)
        if df["bound"].notna().any():
            envelope = df.groupby("step")["bound"].max()
            ax.plot(envelope.index, envelope.values, "k--", lw=1, label="phase-1 bound (max over tensors)")
        ax.axhline(1.0, color="red", lw=1, label="constraint boundary")
        ax.set_ylabel(r"$\lambda\,\|x\|$ (dual norm of K)")
        ax.set_yscale("log")
        return ax
