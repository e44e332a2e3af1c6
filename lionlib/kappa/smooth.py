"""Smooth or penalty-type K: K* is finite inside its domain (a penalty, or a box plus a barrier)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lionlib.kappa.base import Kappa, inf_if, max_abs

__all__ = ["HalfSqL2", "Huber", "Relativistic", "RelativisticNorm", "LogCosh", "L1PlusSqL2", "LogSumExp"]


@dataclass(frozen=True)
class HalfSqL2(Kappa):
    """K = 1/2 ||x||^2, grad K = x: momentum SGD with weight decay (an l2 penalty, no constraint)."""

    name = "half_sq_l2"
    elementwise = True
    smooth = True
    constraint = "penalty (lambda/2) ||x||^2 (momentum SGD with weight decay)"
    latex = (r"\tfrac12\|x\|^2", r"x", r"\tfrac12\|y\|^2")

    def kernel(self):
        return ("half_sq_l2", 0.0)

    def value(self, x):
        return 0.5 * x.square().sum()

    def grad(self, x):
        return x.clone()

    def conjugate(self, y):
        return 0.5 * y.square().sum()

    def conjugate_grad(self, y):
        return y.clone()


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class Huber(Kappa):
    """K = sum h(x_i), h(z) = z^2/(2 delta) for |z| <= delta else |z| - delta/2; grad K = clip(x/delta).

    K* = (delta/2)||y||^2 on the box: a box constraint plus an l2 penalty (delta lambda/2)||x||^2.
    """

    delta: float = 1.0
    name = "huber"
    elementwise = True
    smooth = True
    constraint = "box ||x||_inf <= 1/lambda plus penalty (delta lambda/2) ||x||^2"
    latex = (r"\sum_i h_\delta(x_i)", r"\mathrm{clip}(x/\delta, -1, 1)", r"\tfrac{\delta}{2}\|y\|^2 + \iota\{\|y\|_\infty \le 1\}")

    def __post_init__(self):
        _positive("huber delta", self.delta)

    def kernel(self):
        return ("huber", self.delta)

    def value(self, x):
        a = x.abs()
        return torch.where(a <= self.delta, a.square() / (2 * self.delta), a - self.delta / 2).sum()

    def grad(self, x):
        return (x / self.delta).clamp(-1, 1)

    def conjugate(self, y):
        return inf_if(self.domain_distance(y) > 0, 0.5 * self.delta * y.square().sum())

    def conjugate_grad(self, y):
        return self.delta * y

    def gauge(self, y):
        return max_abs(y)


@dataclass(frozen=True)
class Relativistic(Kappa):
    """K = sum sqrt(x_i^2 + delta^2), grad K = x / sqrt(x^2 + delta^2) (a smooth sign).

    K* = -delta sum sqrt(1 - y_i^2) on the box: the box plus a smooth barrier.
    """

    delta: float = 1.0
    name = "relativistic"
    elementwise = True
    smooth = True
    constraint = "box ||x||_inf <= 1/lambda plus barrier -(delta/lambda) sum sqrt(1 - lambda^2 x_i^2)"
    latex = (r"\sum_i \sqrt{x_i^2+\delta^2}", r"x/\sqrt{x^2+\delta^2}", r"-\delta\sum_i\sqrt{1-y_i^2}")

    def __post_init__(self):
        _positive("relativistic delta", self.delta)

    def kernel(self):
        return ("relativistic", self.delta**2)  # delta**2 rounded as `grad` rounds it

    def value(self, x):
        return torch.sqrt(x.square() + self.delta**2).sum()

    def grad(self, x):
        return x / torch.sqrt(x.square() + self.delta**2)

    def conjugate(self, y):
        return inf_if(self.domain_distance(y) > 0, -self.delta * torch.sqrt((1 - y.square()).clamp_min(0)).sum())

    def conjugate_grad(self, y):
        return self.delta * y / torch.sqrt(1 - y.square())

    def gauge(self, y):
        return max_abs(y)


@dataclass(frozen=True)
class RelativisticNorm(Kappa):
    """K = sqrt(||x||^2 + delta^2) (Hamiltonian-descent kinetic energy), grad K = x / K(x).

    K* = -delta sqrt(1 - ||y||^2) on the l2 ball: the l2 ball plus a barrier.
    """

    delta: float = 1.0
    name = "relativistic_norm"
    smooth = True
    constraint = "l2 ball ||x||_2 <= 1/lambda plus barrier -(delta/lambda) sqrt(1 - lambda^2 ||x||^2)"
    latex = (r"\sqrt{\|x\|^2+\delta^2}", r"x/\sqrt{\|x\|^2+\delta^2}", r"-\delta\sqrt{1-\|y\|^2}")

    def __post_init__(self):
        _positive("relativistic_norm delta", self.delta)

    def value(self, x):
        return torch.sqrt(x.square().sum() + self.delta**2)

    def grad(self, x):
        return x / self.value(x)

    def conjugate(self, y):
        n2 = y.square().sum()
        return inf_if(self.domain_distance(y) > 0, -self.delta * torch.sqrt((1 - n2).clamp_min(0)))

    def conjugate_grad(self, y):
        return self.delta * y / torch.sqrt(1 - y.square().sum())

    def gauge(self, y):
        return torch.linalg.vector_norm(y)


@dataclass(frozen=True)
class LogCosh(Kappa):
    """K = sum delta log(2 cosh(x_i/delta)), grad K = tanh(x/delta) (optax's "smooth" Lion).

    K* = delta sum [p log p + q log q], p, q = (1 +- y)/2: the box plus an entropic barrier.
    """

    delta: float = 1.0
    name = "logcosh"
    elementwise = True
    smooth = True
    constraint = "box ||x||_inf <= 1/lambda plus an entropic barrier"
    latex = (r"\delta\sum_i\log(2\cosh(x_i/\delta))", r"\tanh(x/\delta)", r"\delta\sum_i [p_i\log p_i + q_i\log q_i],\ p,q=\tfrac{1\pm y}{2}")

    def __post_init__(self):
        _positive("logcosh delta", self.delta)

    def kernel(self):
        return ("logcosh", self.delta)

    def value(self, x):
        z = (x / self.delta).abs()
        # log(2 cosh z) = |z| + log(1 + e^{-2|z|}), stable for large |z|.
        return self.delta * (z + torch.log1p(torch.exp(-2 * z))).sum()

    def grad(self, x):
        return torch.tanh(x / self.delta)

    def conjugate(self, y):
        p, q = (1 + y) / 2, (1 - y) / 2
        val = self.delta * (torch.special.xlogy(p, p) + torch.special.xlogy(q, q)).sum()
        return inf_if(self.domain_distance(y) > 0, val)

    def conjugate_grad(self, y):
        return self.delta * torch.atanh(y)

    def gauge(self, y):
        return max_abs(y)


@dataclass(frozen=True)
class L1PlusSqL2(Kappa):
    """K = ||x||_1 + (a/2)||x||^2, grad K = sign(x) + a x.

    K* = sum (|y_i| - 1)_+^2 / (2a), finite everywhere: a soft box (quadratic penalty outside it).
    """

    a: float = 1.0
    name = "l1_plus_sq_l2"
    elementwise = True
    constraint = "soft box: penalty (lambda/(2a)) sum (|x_i| - 1/lambda)_+^2"
    latex = (r"\|x\|_1 + \tfrac{a}{2}\|x\|^2", r"\mathrm{sign}(x) + a x", r"\sum_i (|y_i|-1)_+^2/(2a)")

    def __post_init__(self):
        _positive("l1_plus_sq_l2 a", self.a)

    def kernel(self):
        return ("l1_plus_sq_l2", self.a)

    def value(self, x):
        return x.abs().sum() + 0.5 * self.a * x.square().sum()

    def grad(self, x):
        return x.sign() + self.a * x

    def conjugate(self, y):
        return (y.abs() - 1).clamp_min(0).square().sum() / (2 * self.a)

    def conjugate_grad(self, y):
        return y.sign() * (y.abs() - 1).clamp_min(0) / self.a


def _project_simplex(y: Tensor) -> Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based, exact)."""
    v = y.flatten()
    u, _ = torch.sort(v, descending=True)
    css = u.cumsum(0) - 1
    k = torch.arange(1, v.numel() + 1, device=v.device, dtype=v.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    theta = css[rho] / (rho + 1)
    return (v - theta).clamp_min(0).view_as(y)


@dataclass(frozen=True)
class LogSumExp(Kappa):
    """K = log sum exp(x_i), grad K = softmax(x). K* = sum y_i log y_i on the simplex.

    Not symmetric: lambda x is driven into the probability simplex (x >= 0, sum x = 1/lambda) with an
    entropy penalty. The only K here whose grad is not odd, which is why the optimizer evaluates
    grad K at the paper's m~ = -c and not at c.
    """

    name = "logsumexp"
    symmetric = False
    smooth = True
    constraint = "simplex: x >= 0, sum x = 1/lambda, plus entropy (1/lambda) sum (lambda x) log(lambda x)"
    latex = (r"\log\sum_i e^{x_i}", r"\mathrm{softmax}(x)", r"\sum_i y_i \log y_i + \iota\{y \in \Delta\}")

    def value(self, x):
        return torch.logsumexp(x.flatten(), 0)

    def grad(self, x):
        return torch.softmax(x.flatten(), 0).view_as(x)

    def conjugate(self, y):
        return inf_if(self.domain_distance(y) > 0, torch.special.xlogy(y, y).sum())

    def conjugate_grad(self, y):
        return torch.log(y) + 1

    def domain_distance(self, y):
        # Tolerate rounding of the sum (grad K = softmax sums to 1 only up to eps).
        tol = 16 * torch.finfo(y.dtype).eps * max(1, y.numel())
        d = torch.linalg.vector_norm(y - _project_simplex(y))
        return torch.where(d > tol, d, torch.zeros_like(d))


#
