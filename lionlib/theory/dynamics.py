"""Lion-K dynamics on small problems: the continuous-time ODE and the discrete scheme, with their
Lyapunov values recorded along the way, plus the 2-D toy problems the theory notebooks use.

Same sign convention as `lionlib.theory.lyapunov`: m is the paper's momentum, MINUS PyTorch's `exp_avg`.
The discrete `lion_k_step` here is a direct transcription of the paper's eq. (2) (and of its
implicit-decay variant); the tests check it against the real optimizer `lionlib.LionK`, so the
theory is verified on the code people train with, not only on this transcription.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import minimize
from torch import Tensor

from lionlib.kappa import Kappa
from lionlib.theory.lyapunov import (DiscreteConstants, OdeConstants, H, H_d, Delta, ode_velocity, phase1_distance,
                              smooth_remainder_bound)

__all__ = ["Problem", "Quadratic", "Wavy", "random_dual_point", "lion_k_step", "Trajectory", "simulate", "OdeTrajectory", "integrate"]

DTYPE = torch.float64  # the theory is checked to ~1e-12, so everything here is float64


# ----------------------------------------------------------------------------------------------
# Toy problems.


class Problem(Protocol):
    """A differentiable f with an L-smooth gradient: what the simulators and the bounds need."""

    L: float

    def f(self, x: Tensor) -> Tensor: ...

    def grad(self, x: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class Quadratic:
    """f(x) = 1/2 (x - c)^T A (x - c), A symmetric positive definite; c is the unconstrained minimiser.

    PAPER 7.1's default toy is A = I, c = (2, -3): Lion must end at clip(c, -1/lambda, 1/lambda).
    """

    A: Tensor
    c: Tensor

    @classmethod
    def isotropic(cls, c: Sequence[float]) -> Quadratic:
        c = torch.as_tensor(c, dtype=DTYPE)
        return cls(torch.eye(c.numel(), dtype=DTYPE), c)

    def f(self, x):  # x: (..., d), so a whole grid of points can be evaluated at once
        r = x - self.c
        return 0.5 * ((r @ self.A) * r).sum(-1)

    def grad(self, x):
        return (x - self.c) @ self.A  # A is symmetric

    @property
    def L(self) -> float:
        return float(torch.linalg.eigvalsh(self.A).max())

    def box_minimiser(self, lam: float) -> Tensor:
        """argmin f on ||x||_inf <= 1/lambda in closed form: clip(c), valid for a diagonal A only."""
        if not torch.equal(self.A, torch.diag(torch.diagonal(self.A))):
            raise ValueError("the clipped optimum is the box minimiser only for a diagonal A")
        return self.c.clamp(-1 / lam, 1 / lam)

    def regularised_minimiser(self, K: Kappa, lam: float) -> Tensor:
        """argmin_x f(x) + (1/lambda) K*(lambda x) for ANY K, through the Fenchel dual.

        The dual, min_z 1/2 z^T A^-1 z - <c, z> + K(z)/lambda, is unconstrained and strongly convex
        even when K* is an indicator (K is finite everywhere), and x = c - A^-1 z. It is solved with
        Nelder-Mead (K may be non-smooth): accurate to ~1e-8 in a few dimensions, for toy problems.
        """
        A_inv = torch.linalg.inv(self.A)

        def dual(z):
            z = torch.as_tensor(z, dtype=DTYPE)
            return float(0.5 * z @ A_inv @ z - self.c @ z + K.value(z) / lam)

        def dual_and_grad(z):
            z = torch.as_tensor(z, dtype=DTYPE)
            return dual(z), (A_inv @ z - self.c + K.grad(z) / lam).numpy()

        # BFGS with a (sub)gradient gets close, Nelder-Mead then polishes across the kinks of K.
        z = minimize(dual_and_grad, (self.A @ self.c).numpy(), jac=True, method="BFGS", options={"gtol": 1e-12}).x
        step = 1e-4 * (1 + np.abs(z).max())
        simplex = np.vstack([z, z + step * np.eye(z.size)])
        z = minimize(dual, z, method="Nelder-Mead",
                     options={"xatol": 1e-12, "fatol": 1e-15, "maxiter": 4000, "initial_simplex": simplex}).x
        z = torch.as_tensor(z, dtype=DTYPE)
        return self.c - A_inv @ z


@dataclass(frozen=True)
class Wavy:
    """A non-convex 2-D toy: f(x) = 1/2 ||x - c||^2 + amp sum_i cos(freq x_i).

    Non-convex when amp freq^2 > 1 (several local minima); L = 1 + amp freq^2.
    """

    c: Tensor
    amp: float = 0.5
    freq: float = 3.0

    def f(self, x):  # x: (..., d)
        return 0.5 * (x - self.c).square().sum(-1) + self.amp * torch.cos(self.freq * x).sum(-1)

    def grad(self, x):
        return x - self.c - self.amp * self.freq * torch.sin(self.freq * x)

    @property
    def L(self) -> float:
        return 1 + self.amp * self.freq**2


def random_dual_point(K: Kappa, shape: tuple, generator: torch.Generator, n: int = 4, scale: float = 2.0) -> Tensor:
    """A random point of dom K*: a Dirichlet-weighted mix of grad K at n random points.

    The range of grad K lies in dom K*, a convex set, so this works for every K without knowing
    its domain; lambda x = this point is a random state after phase 1, where the theorems apply.
    """
    zs = scale * torch.randn((n, *shape), dtype=DTYPE, generator=generator)
    w = -torch.log(torch.rand(n, dtype=DTYPE, generator=generator))  # Dirichlet(1, ..., 1) up to normalisation
    w = w / w.sum()
    return sum(wj * K.grad(z) for wj, z in zip(w, zs))


# ----------------------------------------------------------------------------------------------
# Discrete time.


def lion_k_step(K: Kappa, x: Tensor, m: Tensor, g: Tensor, lr: float, beta1: float, beta2: float, lam: float,
                implicit: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """One step of paper eq. (2) (or its implicit-decay variant), paper convention; returns (x', m', m~)."""
    m_tilde = beta1 * m - (1 - beta1) * g
    m_next = beta2 * m - (1 - beta2) * g
    if implicit:
        x_next = (x + lr * K.grad(m_tilde)) / (1 + lr * lam)
    else:
        x_next = x + lr * (K.grad(m_tilde) - lam * x)
    return x_next, m_next, m_tilde


@dataclass
class Trajectory:
    """A discrete run: row t is the state after t steps (T+1 rows); per-step quantities have T rows."""

    x: Tensor  # (T+1, *shape)
    m: Tensor  # (T+1, *shape), paper convention (= -exp_avg)
    f: Tensor  # (T+1,)
    H: Tensor  # (T+1,) H_d, +inf while lambda x is outside dom K*
    dist: Tensor  # (T+1,) dist(lambda x_t, dom K*)
    grad: Tensor  # (T, *shape) the gradient used at step t
    lr: Tensor  # (T,) the step size used at step t
    D: Tensor  # (T,) linearised one-step change of H_d (nan while infeasible)
    remainder_bound: Tensor  # (T,) (L/2)||x_{t+1} - x_t||^2


def simulate(K: Kappa, problem: Problem, hp: DiscreteConstants, x0, steps: int, *, m0=None,
             implicit: bool = False, lr_schedule: Callable[[int], float] | Sequence[float] | None = None,
             grad_fn: Callable[[int, Tensor, Tensor], Tensor] | None = None) -> Trajectory:
    """Run Lion-K for `steps` steps from (x0, m0) and record f, H_d, the phase-1 distance and D_t.

    `lr_schedule(t)` (or a sequence) overrides hp.lr per step; H_d and D_t are always evaluated with
    the constants of `hp` (the Lyapunov function is defined for a fixed lr). `grad_fn(t, x, m)`
    replaces grad f(x) by any gradient (stochastic, adversarial); D_t then uses that gradient.
    """
    x = torch.as_tensor(x0, dtype=DTYPE).clone()
    m = torch.zeros_like(x) if m0 is None else torch.as_tensor(m0, dtype=DTYPE).clone()
    lam = hp.lam
    xs, ms, gs, lrs = [x], [m], [], []
    for t in range(steps):
        lr = hp.lr if lr_schedule is None else float(lr_schedule(t) if callable(lr_schedule) else lr_schedule[t])
        g = problem.grad(x) if grad_fn is None else torch.as_tensor(grad_fn(t, x, m), dtype=DTYPE)
        x, m, _ = lion_k_step(K, x, m, g, lr, hp.beta1, hp.beta2, lam, implicit)
        xs.append(x)
        ms.append(m)
        gs.append(g)
        lrs.append(lr)
    X, M = torch.stack(xs), torch.stack(ms)
    f = torch.stack([problem.f(xi) for xi in xs])
    Hs = torch.stack([H_d(K, hp, xi, mi, fi) for xi, mi, fi in zip(xs, ms, f)])
    G = torch.stack(gs) if gs else X.new_zeros((0, *x.shape))
    dX, L = (X[1:] - X[:-1]).flatten(1), problem.L
    # D_t = H_d(t+1) - H_d(t) - [f(x_{t+1}) - f(x_t) - <g_t, x_{t+1} - x_t>] (see one_step_change),
    # evaluated from the per-state values so each state's H_d is computed once (inf - inf = nan).
    D = (Hs[1:] - Hs[:-1]) - (f[1:] - f[:-1] - (G.flatten(1) * dX).sum(1))
    return Trajectory(x=X, m=M, f=f, H=Hs, dist=torch.stack([phase1_distance(K, xi, lam) for xi in xs]), grad=G,
                      lr=torch.tensor(lrs, dtype=DTYPE), D=torch.where(torch.isfinite(D), D, torch.nan),
                      remainder_bound=torch.stack([smooth_remainder_bound(L, a, b) for a, b in zip(xs, xs[1:])])
                      if steps else X.new_zeros(0))


# ----------------------------------------------------------------------------------------------
# Continuous time.


@dataclass
class OdeTrajectory:
    """An accurate solve of the Lion-K ODE sampled at times t; `sol` is scipy's dense interpolant."""

    t: np.ndarray  # (n,)
    x: Tensor  # (n, *shape)
    m: Tensor  # (n, *shape), paper convention
    f: Tensor  # (n,)
    H: Tensor  # (n,) +inf while lambda x is outside dom K*
    Delta: Tensor  # (n,) = -dH/dt (nan while infeasible)
    dist: Tensor  # (n,) dist(lambda x_t, dom K*)
    sol: object  # scipy OdeSolution: state(t) for any t in [0, t_end]
    shape: tuple

    def state(self, t: float) -> tuple[Tensor, Tensor]:
        """(x(t), m(t)) from the dense output, for finite differences between the samples."""
        y = torch.from_numpy(np.asarray(self.sol(t), dtype=np.float64))
        n = y.numel() // 2
        return y[:n].view(self.shape), y[n:].view(self.shape)


def integrate(K: Kappa, problem: Problem, c: OdeConstants, x0, t_end: float, *, m0=None, n_eval: int = 401,
              rtol: float = 1e-12, atol: float = 1e-14, method: str = "DOP853", max_step: float | None = None) -> OdeTrajectory:
    """Solve dm/dt = -alpha grad f - gamma m, dx/dt = grad K(m + eps dm/dt) - lambda x on [0, t_end].

    Theorem 3.1 needs a differentiable K (logcosh, relativistic, half_sq_l2, ...): with sign(.) the
    right-hand side is discontinuous and an adaptive solver chatters, so use a smooth K here.
    `max_step` (default t_end/400) keeps the steps short: DOP853's end points meet rtol with few
    long steps, but its dense output, used between samples (`state`), is then far less accurate.
    """
    x0 = torch.as_tensor(x0, dtype=DTYPE)
    shape = tuple(x0.shape)
    n = x0.numel()
    m0 = torch.zeros_like(x0) if m0 is None else torch.as_tensor(m0, dtype=DTYPE)

    def rhs(_t, y):
        y = torch.from_numpy(y)
        x, m = y[:n].view(shape), y[n:].view(shape)
        dx, dm, _ = ode_velocity(K, c, x, m, problem.grad(x))
        return torch.cat([dx.flatten(), dm.flatten()]).numpy()

    t_eval = np.linspace(0.0, t_end, n_eval)
    res = solve_ivp(rhs, (0.0, t_end), torch.cat([x0.flatten(), m0.flatten()]).numpy(), method=method,
                    max_step=t_end / 400 if max_step is None else max_step,
                    t_eval=t_eval, rtol=rtol, atol=atol, dense_output=True)
    if not res.success:
        raise RuntimeError(f"solve_ivp failed: {res.message}")
    Y = torch.from_numpy(res.y.T.copy())
    X, M = Y[:, :n].reshape(-1, *shape), Y[:, n:].reshape(-1, *shape)
    f = torch.stack([problem.f(x) for x in X])
    Hs = torch.stack([H(K, c, x, m, fx) for x, m, fx in zip(X, M, f)])
    dist = torch.stack([phase1_distance(K, x, c.lam) for x in X])
    nan = torch.tensor(float("nan"), dtype=DTYPE)
    Deltas = torch.stack([Delta(K, c, x, m, problem.grad(x)) if torch.isfinite(h) else nan
                          for x, m, h in zip(X, M, Hs)])
    return OdeTrajectory(t=res.t, x=X, m=M, f=f, H=Hs, Delta=Deltas, dist=dist, sol=res.sol, shape=shape)
