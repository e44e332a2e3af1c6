"""Norm-type K on vectors (l1 = Lion, lp, l2, linf): K* is the indicator of the dual unit ball."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lionlib.kappa.base import Norm, max_abs

__all__ = ["L1", "Lp", "L2", "LInf"]


@dataclass(frozen=True)
class L1(Norm):
    """K = ||x||_1, grad K = sign: this is Lion. Constraint ||x||_inf <= 1/lambda."""

    name = "l1"
    elementwise = True
    constraint = "box: ||x||_inf <= 1/lambda"
    latex = (r"\|x\|_1", r"\mathrm{sign}(x)", r"\iota\{\|y\|_\infty \le 1\}")

    def kernel(self):
        return ("l1", 0.0)

    def value(self, x):
        return x.abs().sum()

    def grad(self, x):
        return x.sign()

    def gauge(self, y):
        return max_abs(y)


@dataclass(frozen=True)
class Lp(Norm):
    """K = ||x||_p (Lion-lp), grad K = sign(x)|x|^(p-1) / ||x||_p^(p-1); K* = indicator of the
    dual ball ||y||_q <= 1 with 1/p + 1/q = 1. p = 1 is Lion, p = 2 is "spherical" Lion."""

    p: float = 2.0
    name = "lp"

    def __post_init__(self):
        if not (isinstance(self.p, (int, float)) and self.p >= 1 and math.isfinite(self.p)):
            raise ValueError(f"lp needs a finite p >= 1, got p={self.p!r}")

    @property
    def q(self) -> float:
        return math.inf if self.p == 1 else self.p / (self.p - 1)

    @property
    def constraint(self):
        return f"l_q ball: ||x||_q <= 1/lambda, q = {self.q:.4g}"

    @property
    def latex(self):
        return (r"\|x\|_p", r"\mathrm{sign}(x)|x|^{p-1}/\|x\|_p^{p-1}", r"\iota\{\|y\|_q \le 1\}")

    def kernel(self):
        return ("l1", 0.0) if self.p == 1 else ("lp", float(self.p))  # p = 1 is Lion, as in grad

    @staticmethod
    def _scaled(x: Tensor) -> tuple[Tensor, Tensor]:
        """(x / s, s) with s = max|x| (1 for x = 0): powers of |x| then neither overflow nor underflow."""
        scale = x.abs().amax() if x.numel() else x.new_ones(())
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return x / scale, scale

    def value(self, x):
        u, scale = self._scaled(x)
        return scale * torch.linalg.vector_norm(u, ord=self.p)

    def grad(self, x):
        if self.p == 1:
            return x.sign()
        u, _ = self._scaled(x)
        norm = torch.linalg.vector_norm(u, ord=self.p)
        norm = torch.where(norm > 0, norm, torch.ones_like(norm))  # grad 0 at x = 0
        return u.sign() * (u.abs() / norm).pow(self.p - 1)

    def gauge(self, y):
        u, scale = self._scaled(y)
        return scale * torch.linalg.vector_norm(u, ord=self.q)


@dataclass(frozen=True)
class L2(Lp):
    """K = ||x||_2, grad K = x/||x||_2. Constraint ||x||_2 <= 1/lambda."""

    p: float = 2.0
    name = "l2"

    def __post_init__(self):
        if self.p != 2:
            raise ValueError(f"l2 has p=2, got p={self.p!r}; use kappa.get('lp', p=...)")

    def spec(self):
        return {"name": self.name}

    def describe(self):
        return self.name


@dataclass(frozen=True)
class LInf(Norm):
    """K = ||x||_inf, grad K = sign(x_i*) e_i* at the first largest |x_i|. Constraint ||x||_1 <= 1/lambda."""

    name = "linf"
    constraint = "l1 ball: ||x||_1 <= 1/lambda (sparsity)"
    latex = (r"\|x\|_\infty", r"\mathrm{sign}(x_{i^*}) e_{i^*}", r"\iota\{\|y\|_1 \le 1\}")

    def value(self, x):
        return x.abs().amax() if x.numel() else x.new_zeros(())

    def grad(self, x):
        out = torch.zeros_like(x)
        if x.numel():
            i = x.abs().flatten().argmax()
            out.view(-1)[i] = x.flatten()[i].sign()
        return out

    def gauge(self, y):
        return y.abs().sum()
