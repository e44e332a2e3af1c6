"""The base of every K: the `Kappa` interface, and `Norm` for the K that are norms.

See `lionlib.kappa` for the conventions every K follows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Kappa", "Norm", "inf_if", "excess", "max_abs"]

_INF = float("inf")


def inf_if(outside: Tensor | bool, value: Tensor) -> Tensor:
    """`value`, or +inf where y lies outside dom K*."""
    return torch.where(torch.as_tensor(outside, device=value.device), torch.full_like(value, _INF), value)


def excess(norm: Tensor) -> Tensor:
    """max(norm - 1, 0): the distance to a unit ball in its own norm.

    Rounding is forgiven: grad K lies on the boundary of dom K* (|sign| = 1, ||U V^T||_op = 1), and
    a norm computed in floating point can exceed 1 by a few ulps there.
    """
    d = (norm - 1).clamp_min(0)
    return torch.where(d > 64 * torch.finfo(d.dtype).eps, d, torch.zeros_like(d))


def max_abs(y: Tensor) -> Tensor:
    """||y||_inf, the gauge of Lion's box (0 for an empty tensor)."""
    return y.abs().amax() if y.numel() else y.new_zeros(())


@dataclass(frozen=True)
class Kappa:
    """Base class. Subclasses set the class attributes and implement the five maps."""

    name = "kappa"
    elementwise = False  # separable: K(x) = sum_i k(x_i)
    symmetric = True  # K(-x) = K(x), hence grad K is odd
    smooth = False  # differentiable everywhere (needed by Theorem 3.1)
    exact = True  # grad is exact (False: an approximation, e.g. Newton-Schulz)
    is_norm = False  # K is a norm: K* is the indicator of the dual unit ball (a pure constraint)
    constraint = ""  # what (1/lambda) K*(lambda x) does to x
    latex = ("", "", "")  # (K(x), grad K(x), K*(y)) in LaTeX

    def value(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def grad(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def conjugate(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def conjugate_grad(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def gauge(self, y: Tensor) -> Tensor | None:
        """The norm whose unit ball is dom K* (<= 1 iff y is feasible); None if dom K* is no ball."""
        return None

    def domain_distance(self, y: Tensor) -> Tensor:
        gauge = self.gauge(y)
        return y.new_zeros(()) if gauge is None else excess(gauge)

    def check_tensor(self, x: Tensor) -> None:
        """Raise ValueError, saying why, if K cannot act on a tensor like x (the optimizer checks
        every parameter against its group's K when the group is added, and before each step)."""

    def kernel(self) -> tuple[str, float] | None:
        """The fused kernel that computes grad K, and its parameter: (a name in
        `lionlib.fused.contract.KERNELS`, a float), or None when no kernel does (foreach then)."""
        return None

    def spec(self) -> dict:
        """Plain-data description; `get(**K.spec())` rebuilds K (used by optimizer state_dicts)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name}({params})" if params else self.name


#


@dataclass(frozen=True)
class Norm(Kappa):
    """K a norm: K* is the indicator of the dual unit ball, so Lion-K solves a constrained problem.

    K*(y) = 0 if ||y||_dual <= 1 else +inf, and 0 is in the subdifferential of K* inside the ball.
    Subclasses give `value`, `grad` and `gauge` (the dual norm, whose unit ball is dom K*).
    """

    is_norm = True

    def gauge(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def conjugate(self, y: Tensor) -> Tensor:
        return inf_if(self.domain_distance(y) > 0, y.new_zeros(()))

    def conjugate_grad(self, y: Tensor) -> Tensor:
        return torch.zeros_like(y)
