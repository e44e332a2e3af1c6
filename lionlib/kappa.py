"""The convex functions K of Lion-K (paper Table 2), with gradient, conjugate and feasible set.

Lion-K moves the parameters along grad K of the momentum (paper eq. (2)); K's convex conjugate
K* then decides what problem is solved: min_x f(x) + (1/lambda) K*(lambda x) (paper eq. (3)).
When K* is an indicator (K a norm) that is a hard constraint, lambda x in dom K*; otherwise a
penalty. Each K below is a small frozen dataclass so it can live in an optimizer's param group
and be pickled with its state_dict.

Conventions, shared by every K:
- Inputs are torch tensors of any float dtype; values are 0-d tensors of the input's dtype.
- `grad` returns a subgradient with the sign(0) = 0 convention (the zero vector at a kink of a norm).
- `conjugate` returns +inf outside dom K*; `conjugate_grad` returns an element of the
  subdifferential of K* inside dom K* (0 in the interior of an indicator's domain).
- `gauge(y)` is the norm whose unit ball is dom K* (||y||_inf for Lion's box; None when dom K* is
  everything or not a ball), so lambda * gauge(x) <= 1 is the constraint on x.
- `domain_distance(y)` is the distance from y to dom K*, measured in that norm (max(gauge - 1, 0)),
  Euclidean for the simplex. Any norm works for
  the phase-1 contraction dist(lambda x_t) <= (1 - lr lambda)^t dist(lambda x_0) (PAPER.md 4.2).
- Elementwise K act coordinate by coordinate. Whole-tensor K (lp, l2, linf, relativistic_norm,
  logsumexp, nuclear) treat each parameter tensor as one vector (nuclear: one matrix), so in an
  optimizer the constraint holds per parameter tensor, not over the whole model.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Kappa", "get", "names", "newton_schulz"]

_INF = float("inf")


def _inf_if(outside: Tensor | bool, value: Tensor) -> Tensor:
    """`value`, or +inf where y lies outside dom K*."""
    return torch.where(torch.as_tensor(outside, device=value.device), torch.full_like(value, _INF), value)


def _excess(norm: Tensor) -> Tensor:
    """max(norm - 1, 0): the distance to a unit ball in its own norm.

    Rounding is forgiven: grad K lies on the boundary of dom K* (|sign| = 1, ||U V^T||_op = 1), and
    a norm computed in floating point can exceed 1 by a few ulps there.
    """
    d = (norm - 1).clamp_min(0)
    return torch.where(d > 64 * torch.finfo(d.dtype).eps, d, torch.zeros_like(d))


def _max_abs(y: Tensor) -> Tensor:
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
        return y.new_zeros(()) if gauge is None else _excess(gauge)

    def spec(self) -> dict:
        """Plain-data description; `get(**K.spec())` rebuilds K (used by optimizer state_dicts)."""
        return {"name": self.name, **dataclasses.asdict(self)}

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name}({params})" if params else self.name


# ----------------------------------------------------------------------------------------------
# Norm-type K: K* is the indicator of a unit ball, so Lion-K solves a constrained problem.


@dataclass(frozen=True)
class L1(Kappa):
    """K = ||x||_1, grad K = sign: this is Lion. Constraint ||x||_inf <= 1/lambda."""

    name = "l1"
    is_norm = True
    elementwise = True
    constraint = "box: ||x||_inf <= 1/lambda"
    latex = (r"\|x\|_1", r"\mathrm{sign}(x)", r"\iota\{\|y\|_\infty \le 1\}")

    def value(self, x):
        return x.abs().sum()

    def grad(self, x):
        return x.sign()

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, y.new_zeros(()))

    def conjugate_grad(self, y):
        return torch.zeros_like(y)

    def gauge(self, y):
        return _max_abs(y)


@dataclass(frozen=True)
class Lp(Kappa):
    """K = ||x||_p (Lion-lp), grad K = sign(x)|x|^(p-1) / ||x||_p^(p-1); K* = indicator of the
    dual ball ||y||_q <= 1 with 1/p + 1/q = 1. p = 1 is Lion, p = 2 is "spherical" Lion."""

    p: float = 2.0
    name = "lp"
    is_norm = True

    def __post_init__(self):
        if not (isinstance(self.p, (int, float)) and self.p >= 1 and math.isfinite(self.p)):
            raise ValueError(f"lp needs a finite p >= 1, got p={self.p!r}")

    @property
    def q(self) -> float:
        return _INF if self.p == 1 else self.p / (self.p - 1)

    @property
    def constraint(self):
        return f"l_q ball: ||x||_q <= 1/lambda, q = {self.q:.4g}"

    @property
    def latex(self):
        return (r"\|x\|_p", r"\mathrm{sign}(x)|x|^{p-1}/\|x\|_p^{p-1}", r"\iota\{\|y\|_q \le 1\}")

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

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, y.new_zeros(()))

    def conjugate_grad(self, y):
        return torch.zeros_like(y)


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
class LInf(Kappa):
    """K = ||x||_inf, grad K = sign(x_i*) e_i* at the first largest |x_i|. Constraint ||x||_1 <= 1/lambda."""

    name = "linf"
    is_norm = True
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

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, y.new_zeros(()))

    def conjugate_grad(self, y):
        return torch.zeros_like(y)


def newton_schulz(x: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate msign(x) = U V^T with Keller Jordan's quintic Newton-Schulz iteration.

    The coefficients trade accuracy for speed: singular values land roughly in [0.7, 1.2], not
    exactly 1, so this is NOT the exact grad of the nuclear norm (see Nuclear.exact).
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    transposed = x.size(-2) > x.size(-1)
    y = x.mT if transposed else x
    y = y / (torch.linalg.matrix_norm(y, keepdim=True) + eps)
    for _ in range(steps):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return y.mT if transposed else y


@dataclass(frozen=True)
class Nuclear(Kappa):
    """K = ||X||_* (sum of singular values): Lion-K with this K is Muon. grad K = U V^T.

    Constraint: spectral norm ||X||_op <= 1/lambda. `method="svd"` is exact (zero singular values
    get direction 0, the sign(0) = 0 convention); `method="newton_schulz"` is Muon's approximation.
    """

    method: str = "svd"
    ns_steps: int = 5
    name = "nuclear"
    is_norm = True
    constraint = "spectral ball: ||X||_op <= 1/lambda"
    latex = (r"\|X\|_*", r"U V^\top", r"\iota\{\|Y\|_{op} \le 1\}")

    def __post_init__(self):
        if self.method not in ("svd", "newton_schulz"):
            raise ValueError(f"nuclear method must be 'svd' or 'newton_schulz', got {self.method!r}")
        if self.ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1, got {self.ns_steps!r}")

    @property
    def exact(self):
        return self.method == "svd"

    @staticmethod
    def _matrix(x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"the nuclear norm needs a 2-D tensor, got shape {tuple(x.shape)}")
        return x

    def value(self, x):
        return torch.linalg.matrix_norm(self._matrix(x), ord="nuc")

    def grad(self, x):
        x = self._matrix(x)
        if self.method == "newton_schulz":
            return newton_schulz(x, self.ns_steps).to(x.dtype)
        u, s, vh = torch.linalg.svd(x.float() if x.dtype in (torch.bfloat16, torch.float16) else x, full_matrices=False)
        tol = s.amax() * max(x.shape) * torch.finfo(s.dtype).eps if s.numel() else 0
        return ((u * (s > tol)) @ vh).to(x.dtype)

    def gauge(self, y):
        return torch.linalg.matrix_norm(self._matrix(y), ord=2)

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, y.new_zeros(()))

    def conjugate_grad(self, y):
        return torch.zeros_like(y)


# ----------------------------------------------------------------------------------------------
# Smooth or penalty-type K.


@dataclass(frozen=True)
class HalfSqL2(Kappa):
    """K = 1/2 ||x||^2, grad K = x: momentum SGD with weight decay (an l2 penalty, no constraint)."""

    name = "half_sq_l2"
    elementwise = True
    smooth = True
    constraint = "penalty (lambda/2) ||x||^2 (momentum SGD with weight decay)"
    latex = (r"\tfrac12\|x\|^2", r"x", r"\tfrac12\|y\|^2")

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

    def value(self, x):
        a = x.abs()
        return torch.where(a <= self.delta, a.square() / (2 * self.delta), a - self.delta / 2).sum()

    def grad(self, x):
        return (x / self.delta).clamp(-1, 1)

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, 0.5 * self.delta * y.square().sum())

    def conjugate_grad(self, y):
        return self.delta * y

    def gauge(self, y):
        return _max_abs(y)


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

    def value(self, x):
        return torch.sqrt(x.square() + self.delta**2).sum()

    def grad(self, x):
        return x / torch.sqrt(x.square() + self.delta**2)

    def conjugate(self, y):
        return _inf_if(self.domain_distance(y) > 0, -self.delta * torch.sqrt((1 - y.square()).clamp_min(0)).sum())

    def conjugate_grad(self, y):
        return self.delta * y / torch.sqrt(1 - y.square())

    def gauge(self, y):
        return _max_abs(y)


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
        return _inf_if(self.domain_distance(y) > 0, -self.delta * torch.sqrt((1 - n2).clamp_min(0)))

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

    def value(self, x):
        z = (x / self.delta).abs()
        # log(2 cosh z) = |z| + log(1 + e^{-2|z|}), stable for large |z|.
        return self.delta * (z + torch.log1p(torch.exp(-2 * z))).sum()

    def grad(self, x):
        return torch.tanh(x / self.delta)

    def conjugate(self, y):
        p, q = (1 + y) / 2, (1 - y) / 2
        val = self.delta * (torch.special.xlogy(p, p) + torch.special.xlogy(q, q)).sum()
        return _inf_if(self.domain_distance(y) > 0, val)

    def conjugate_grad(self, y):
        return self.delta * torch.atanh(y)

    def gauge(self, y):
        return _max_abs(y)


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
        return _inf_if(self.domain_distance(y) > 0, torch.special.xlogy(y, y).sum())

    def conjugate_grad(self, y):
        return torch.log(y) + 1

    def domain_distance(self, y):
        # Tolerate rounding of the sum (grad K = softmax sums to 1 only up to eps).
        tol = 16 * torch.finfo(y.dtype).eps * max(1, y.numel())
        d = torch.linalg.vector_norm(y - _project_simplex(y))
        return torch.where(d > tol, d, torch.zeros_like(d))


# ----------------------------------------------------------------------------------------------
# Registry.

_REGISTRY: dict[str, type[Kappa]] = {
    cls.name: cls
    for cls in (L1, Lp, L2, HalfSqL2, LInf, Huber, Relativistic, RelativisticNorm, LogCosh, L1PlusSqL2, LogSumExp, Nuclear)
}


def names() -> list[str]:
    """Names accepted by `get`, in the order of the paper's table."""
    return list(_REGISTRY)


def get(name: str | Kappa, **params) -> Kappa:
    """K by name, e.g. `get("lp", p=1.5)`; a Kappa instance is returned unchanged."""
    if isinstance(name, Kappa):
        if params:
            raise ValueError(f"parameters {sorted(params)} given together with a Kappa instance {name.describe()}")
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown kappa {name!r}; choose one of {names()}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for kappa {name!r}: {err}") from None
