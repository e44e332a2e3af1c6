"""The Lyapunov functions of Lion-K and the quantities the paper's theorems are about.

Everything is written in the PAPER's sign convention (PAPER.md 1, 2.2-2.5): the momentum m is
MINUS the PyTorch `exp_avg` buffer (m = -exp_avg), gradients enter with a minus sign, and the
parameter update adds grad K:

    m~_{t+1} = beta1 m_t - (1 - beta1) grad f(x_t)          (gradient enhancement)
    m_{t+1}  = beta2 m_t - (1 - beta2) grad f(x_t)
    x_{t+1}  = x_t + lr (grad K(m~_{t+1}) - lambda x_t)       (explicit decay, paper eq. (2))
    x_{t+1}  = (x_t + lr grad K(m~_{t+1})) / (1 + lr lambda)  (implicit decay, Theorem 4.1)

and in continuous time (ODE constants alpha, gamma, eps, lambda; eps is the Nesterov coefficient,
not a step size):

    dm/dt = -alpha grad f(x) - gamma m,   m~ = m + eps dm/dt,   dx/dt = grad K(m~) - lambda x.

The coefficients are the verified ones of PAPER.md 4.3-4.4 (C = (1 - eps gamma)/(1 + eps lambda),
C_d = lr beta1 / (lr lambda (1 - beta1) + 1 - beta2)), NOT the recollections PAPER.md warns about.
Every function works for any K of `lionlib.kappa` and any tensor shape (the nuclear norm needs a
matrix); the theory is meant to be evaluated on float64 tensors. H and H_d need lambda > 0 (they
contain (1/lambda) K*(lambda x)) and are +inf while lambda x is outside dom K* (phase 1); plot
`phase1_distance` there instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lionlib.kappa import Kappa

__all__ = [
    "DiscreteConstants", "OdeConstants", "inner", "fenchel_gap", "coupling", "objective",
    "ode_velocity", "H", "Delta", "H_d", "one_step_change", "smooth_remainder_bound",
    "kkt_score", "phase1_distance", "phase1_factor", "phase1_factor_continuous",
]


# ----------------------------------------------------------------------------------------------
# Hyperparameters: discrete (lr, beta1, beta2, lambda) <-> ODE (alpha, gamma, eps, lambda), PAPER 2.5.


@dataclass(frozen=True)
class DiscreteConstants:
    """Lion-K's discrete hyperparameters; `weight_decay` is the paper's lambda."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.99
    weight_decay: float = 1.0

    def __post_init__(self):
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    @property
    def lam(self) -> float:
        return self.weight_decay

    @property
    def C_d(self) -> float:
        """Weight of the coupling term in H_d (PAPER 4.4); the leading lr is part of it."""
        return self.lr * self.beta1 / (self.lr * self.lam * (1 - self.beta1) + (1 - self.beta2))

    def to_ode(self) -> OdeConstants:
        """The ODE whose Euler discretisation with step `lr` is eq. (2): t_phys = lr * steps."""
        gamma = (1 - self.beta2) / self.lr
        return OdeConstants(alpha=gamma, gamma=gamma, eps=self.lr * (1 - self.beta1) / (1 - self.beta2),
                            lam=self.lam)


@dataclass(frozen=True)
class OdeConstants:
    """Constants of the continuous-time Lion-K ODE (PAPER 2.5). eps * gamma <= 1 for Theorem 3.1."""

    alpha: float
    gamma: float
    eps: float
    lam: float

    def __post_init__(self):
        if not (self.alpha > 0 and self.gamma > 0 and self.eps >= 0 and self.lam >= 0):
            raise ValueError(f"need alpha, gamma > 0 and eps, lam >= 0, got {self}")

    @property
    def C(self) -> float:
        """Weight of the coupling term in H (PAPER 4.3): the unique choice that makes dH/dt <= 0."""
        return (1 - self.eps * self.gamma) / (1 + self.eps * self.lam)

    def to_discrete(self, lr: float) -> DiscreteConstants:
        """The discrete scheme with step `lr` that discretises this ODE (needs alpha == gamma).

        beta1 = 1 - eps gamma does not depend on lr; beta2 = 1 - gamma lr -> 1 as lr -> 0.
        """
        if not math.isclose(self.alpha, self.gamma, rel_tol=1e-12):
            raise ValueError(f"the discrete scheme has alpha == gamma; got alpha={self.alpha}, gamma={self.gamma}")
        return DiscreteConstants(lr=lr, beta1=1 - self.eps * self.gamma, beta2=1 - self.gamma * lr,
                                 weight_decay=self.lam)


# ----------------------------------------------------------------------------------------------
# Convex-analysis building blocks (PAPER 4.1).


def inner(a: Tensor, b: Tensor) -> Tensor:
    """<a, b> over all entries (Frobenius for matrices)."""
    return (a * b).sum()


def fenchel_gap(K: Kappa, y: Tensor, z: Tensor) -> Tensor:
    """K*(y) + K(z) - <y, z> >= 0 (Fenchel-Young), zero iff y in dK(z); +inf if y is outside dom K*."""
    return K.conjugate(y) + K.value(z) - inner(y, z)


def coupling(K: Kappa, x: Tensor, m: Tensor, lam: float) -> Tensor:
    """Phi(x, m) = K*(lambda x) + K(m) - lambda <m, x>, the coupling term of H and H_d."""
    return fenchel_gap(K, lam * x, m)


def objective(K: Kappa, f: Tensor | float, x: Tensor, lam: float, alpha: float = 1.0, gamma: float = 1.0) -> Tensor:
    """F(x) = alpha f(x) + (gamma/lambda) K*(lambda x), what Lion-K minimises (paper eq. (3))."""
    return alpha * torch.as_tensor(f, dtype=x.dtype) + (gamma / lam) * K.conjugate(lam * x)


# ----------------------------------------------------------------------------------------------
# Continuous time: Theorem 3.1 (PAPER 4.3). Needs a differentiable K for the identity dH/dt = -Delta.


def ode_velocity(K: Kappa, c: OdeConstants, x: Tensor, m: Tensor, grad_f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(dx/dt, dm/dt, m~) of the Lion-K ODE at (x, m) given grad f(x)."""
    dm = -c.alpha * grad_f - c.gamma * m
    m_tilde = m + c.eps * dm
    return K.grad(m_tilde) - c.lam * x, dm, m_tilde


def H(K: Kappa, c: OdeConstants, x: Tensor, m: Tensor, f: Tensor | float) -> Tensor:
    """H(x, m) = alpha f + (gamma/lambda) K*(lambda x) + C Phi(x, m), with f = f(x)."""
    return objective(K, f, x, c.lam, c.alpha, c.gamma) + c.C * coupling(K, x, m, c.lam)


def Delta(K: Kappa, c: OdeConstants, x: Tensor, m: Tensor, grad_f: Tensor) -> Tensor:
    """-dH/dt along the ODE, a sum of two monotonicity terms of grad K (both >= 0).

    Delta = (lambda + gamma)/(1 + eps lambda) <grad K(m~) - lambda x, m~ - grad K*(lambda x)>
          + (1 - eps gamma)/(1 + eps lambda) <grad K(m~) - grad K(m), dm/dt>.
    Uses K.conjugate_grad, so lambda x must be in the interior of dom K*.
    """
    dx, dm, m_tilde = ode_velocity(K, c, x, m, grad_f)
    a = (c.lam + c.gamma) / (1 + c.eps * c.lam)
    return a * inner(dx, m_tilde - K.conjugate_grad(c.lam * x)) + c.C * inner(K.grad(m_tilde) - K.grad(m), dm)


# ----------------------------------------------------------------------------------------------
# Discrete time: Theorem 4.1 (PAPER 4.4), the implicit-decay scheme with beta2 >= beta1.


def H_d(K: Kappa, hp: DiscreteConstants, x: Tensor, m: Tensor, f: Tensor | float) -> Tensor:
    """H_d(x, m) = f(x) + (1/lambda) K*(lambda x) + C_d Phi(x, m); equals H/alpha under `to_ode`."""
    lam, k_star = hp.lam, K.conjugate(hp.lam * x)  # K* once: it is the costly term
    return (torch.as_tensor(f, dtype=x.dtype) + k_star / lam
            + hp.C_d * (k_star + K.value(m) - lam * inner(m, x)))


def one_step_change(K: Kappa, hp: DiscreteConstants, x: Tensor, m: Tensor, x_next: Tensor, m_next: Tensor,
                    grad_f: Tensor) -> Tensor:
    """D_t: the change of H_d over one step with f replaced by its linearisation at x_t.

    D_t = <grad f(x_t), x_{t+1} - x_t> + (1/lambda)[K*(lambda x_{t+1}) - K*(lambda x_t)]
          + C_d [Phi_{t+1} - Phi_t],
    with grad_f the gradient used by the step. Theorem 4.1: D_t <= 0 for the implicit scheme when
    beta2 >= beta1 and lambda x_t in dom K*; Delta_t := -D_t. Since
    H_d(t+1) - H_d(t) = D_t + [f(x_{t+1}) - f(x_t) - <grad f(x_t), x_{t+1} - x_t>], for L-smooth f
    H_d(t+1) - H_d(t) <= D_t + (L/2)||x_{t+1} - x_t||^2 (see `smooth_remainder_bound`).
    """
    f_lin = inner(grad_f, x_next - x)  # f(x_{t+1}) linearised at x_t, minus f(x_t)
    return H_d(K, hp, x_next, m_next, f_lin) - H_d(K, hp, x, m, 0.0)


def smooth_remainder_bound(L: float, x: Tensor, x_next: Tensor) -> Tensor:
    """(L/2)||x_{t+1} - x_t||^2 = (L/2) lr^2 ||grad K(m~) - lambda x_{t+1}||^2 (implicit scheme):
    the most f(x_{t+1}) can exceed its linearisation at x_t when f is L-smooth."""
    return 0.5 * L * (x_next - x).square().sum()


# ----------------------------------------------------------------------------------------------
# Stationarity (PAPER 3) and phase 1 (PAPER 4.2).


def kkt_score(K: Kappa, x: Tensor, grad_f: Tensor, lam: float, ratio: float = 1.0) -> Tensor:
    """S(x) = K(-r grad f) + K*(lambda x) + lambda <x, r grad f> >= 0, r = alpha/gamma (1 in discrete time).

    It is the Fenchel gap Phi(x, -r grad f), zero exactly at stationary points of
    f + (1/lambda) K*(lambda x). For a norm K (K* = 0 on its domain) it is the paper's
    S(x) = K(-grad f) + lambda <x, grad f>, e.g. ||grad f||_1 + lambda <x, grad f> for Lion.
    """
    return fenchel_gap(K, lam * x, -ratio * grad_f)


def phase1_distance(K: Kappa, x: Tensor, lam: float) -> Tensor:
    """dist(lambda x, dom K*) in K's own norm (0 once feasible); for Lion, lambda max(||x||_inf - 1/lambda, 0)."""
    return K.domain_distance(lam * x)


def phase1_factor(lr, lam: float, steps: int | None = None, implicit: bool = False) -> np.ndarray:
    """Cumulative phase-1 contraction: entry t bounds dist_t / dist_0 (entry 0 is 1).

    Explicit decay: prod_{s<t} (1 - lr_s lambda) (needs lr_s lambda <= 1); implicit decay:
    prod_{s<t} 1/(1 + lr_s lambda). `lr` is a float (with `steps`) or a per-step sequence (a schedule).
    The bound holds for ANY gradient sequence: grad K(.) always lies in dom K*, a convex set.
    """
    lrs = np.full(steps, float(lr)) if steps is not None else np.asarray(lr, dtype=np.float64)
    if implicit:
        per_step = 1 / (1 + lrs * lam)
    else:
        if np.any(lrs * lam > 1):
            raise ValueError("the explicit-decay bound needs lr * lambda <= 1 at every step")
        per_step = 1 - lrs * lam
    return np.concatenate([[1.0], np.cumprod(per_step)])


def phase1_factor_continuous(t, lam: float) -> np.ndarray:
    """e^{-lambda t}: the continuous-time phase-1 contraction of dist(lambda x_t, dom K*)."""
    return np.exp(-lam * np.asarray(t, dtype=np.float64))
