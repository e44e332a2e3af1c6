"""Independent references for the special cases of Lion-K (paper Section 3.1, PAPER.md 5): textbook
methods written without lionlib.

Each reference is written from the textbook definition of the method and shares no code with
`lionlib.LionK` or with grad K, so agreeing with it is evidence, not algebra written twice:

- Frank-Wolfe whose linear-minimisation oracle (LMO) is a linear program solved by
  `scipy.optimize.linprog` (HiGHS);
- mirror descent with the mirror map psi(x) = (1/lambda) K*(lambda x), whose mirror step
  argmin_x {psi(x) - <z, x>} is solved numerically from K* alone (torch autograd + scipy), never
  from grad K;
- the heavy-ball ODE and the (high-resolution) Nesterov ODE as second-order equations in x, with
  their classical energies.

Paper convention throughout (m = -exp_avg, PAPER.md 1).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import linprog, minimize
from torch import Tensor

from lionlib.kappa import Kappa

__all__ = ["lmo_linprog", "frank_wolfe_step", "mirror_potential_grad", "mirror_step", "mirror_descent_step",
           "SecondOrderOde", "classical_energy", "classical_dissipation"]

DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------
# Frank-Wolfe with a linear-programming oracle.


def lmo_linprog(g: np.ndarray, ball: str, radius: float) -> np.ndarray:
    """argmin_{||s|| <= radius} <g, s> for the l_inf ("linf") or l_1 ("l1") ball, as a linear program.

    l_inf: box bounds. l_1: s = u - v with u, v >= 0 and sum(u + v) <= radius (the standard split).
    """
    g = np.asarray(g, dtype=np.float64).ravel()
    d = g.size
    if ball == "linf":
        res = linprog(g, bounds=[(-radius, radius)] * d, method="highs")
        s = res.x
    elif ball == "l1":
        res = linprog(np.concatenate([g, -g]), A_ub=np.ones((1, 2 * d)), b_ub=[radius], bounds=[(0, None)] * (2 * d),
                      method="highs")
        s = res.x[:d] - res.x[d:]
    else:
        raise ValueError(f"ball must be 'linf' or 'l1', got {ball!r}")
    if not res.success:
        raise RuntimeError(f"linprog failed: {res.message}")
    return s


def frank_wolfe_step(x: np.ndarray, g: np.ndarray, ball: str, radius: float, eta: float) -> np.ndarray:
    """x + eta (s - x), s = LMO(g): conditional gradient with the constant step eta."""
    x = np.asarray(x, dtype=np.float64)
    return (1 - eta) * x + eta * lmo_linprog(g, ball, radius).reshape(x.shape)


# ----------------------------------------------------------------------------------------------
# Mirror descent with psi(x) = (1/lambda) K*(lambda x), from K* alone.


def _psi(K: Kappa, lam: float, x: Tensor) -> Tensor:
    return K.conjugate(lam * x) / lam


def mirror_potential_grad(K: Kappa, lam: float, x) -> Tensor:
    """grad psi(x) = grad K*(lambda x), by autograd through K.conjugate (not K.conjugate_grad)."""
    x = torch.as_tensor(x, dtype=DTYPE).detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_psi(K, lam, x), x)
    return g.detach()


def mirror_step(K: Kappa, lam: float, z, x_init=None, tol: float = 1e-13) -> Tensor:
    """argmin_x {psi(x) - <z, x>}: the primal point the mirror map psi associates with the dual z.

    Solved by L-BFGS-B on psi(x) - <z, x> with gradients by autograd through K.conjugate. If dom K*
    is bounded (K has a gauge) x is kept strictly inside the box that contains {lambda x in dom K*}
    (an elementwise K*: |lambda x_i| <= 1), which L-BFGS-B takes as bounds. Meant for smooth,
    strictly convex K* (logcosh, relativistic, half_sq_l2), where the minimiser is unique.
    """
    z = torch.as_tensor(z, dtype=DTYPE)
    shape = z.shape
    x_init = torch.zeros_like(z) if x_init is None else torch.as_tensor(x_init, dtype=DTYPE)

    def fun(v):
        x = torch.from_numpy(v).view(shape).requires_grad_(True)
        val = _psi(K, lam, x) - (z * x).sum()
        (g,) = torch.autograd.grad(val, x)
        return float(val.detach()), g.numpy().ravel().copy()

    bounded = K.gauge(torch.ones(shape, dtype=DTYPE)) is not None
    r = (1 - 1e-15) / lam
    bounds = [(-r, r)] * z.numel() if bounded else None
    v0 = np.clip(x_init.numpy().ravel(), -r, r) if bounded else x_init.numpy().ravel()
    res = minimize(fun, v0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-16, "gtol": tol, "maxiter": 5000, "maxcor": 30})
    x = torch.from_numpy(res.x).view(shape)
    # Polish with Newton steps (autograd Hessian of K*, still no grad K): L-BFGS-B stops near 1e-8.
    objective = lambda v: _psi(K, lam, v.view(shape)) - (z * v.view(shape)).sum()  # noqa: E731
    for _ in range(8):
        v = x.flatten()
        g = torch.autograd.functional.jacobian(objective, v)
        step = torch.linalg.solve(torch.autograd.functional.hessian(objective, v), g)
        v_new = v - step
        if not torch.isfinite(objective(v_new)) or objective(v_new) > objective(v):
            break
        x = v_new.view(shape)
        if step.abs().max() < 1e-15 * (1 + v.abs().max()):
            break
    return x.detach()


def mirror_descent_step(K: Kappa, lam: float, x, grad_f, eta: float) -> Tensor:
    """One mirror-descent step on F = f + psi with mirror map psi and step eta:
    grad psi(x') = grad psi(x) - eta grad F(x) = (1 - eta) grad psi(x) - eta grad f(x)."""
    gpsi = mirror_potential_grad(K, lam, x)
    return mirror_step(K, lam, (1 - eta) * gpsi - eta * torch.as_tensor(grad_f, dtype=DTYPE), x_init=x)


# ----------------------------------------------------------------------------------------------
# Heavy ball and Nesterov as second-order ODEs in x.


class SecondOrderOde:
    """x'' = -alpha grad f(x) - gamma x' - eps alpha Hess f(x) x'.

    eps = 0 is Polyak's heavy ball; eps > 0 adds the gradient-correction term of the high-resolution
    ODE of Nesterov's method (Shi, Du, Jordan, Su 2018). It is what the Lion-K ODE with K = 1/2||.||^2
    and lambda = 0 becomes after eliminating m: x' = m~ = (1 - eps gamma) m - eps alpha grad f.
    `hvp(x, v)` is Hess f(x) v (autograd through problem.grad if not given).
    """

    def __init__(self, problem, alpha: float, gamma: float, eps: float = 0.0, hvp=None):
        self.problem, self.alpha, self.gamma, self.eps = problem, alpha, gamma, eps
        self.hvp = hvp or self._autograd_hvp

    def _autograd_hvp(self, x: Tensor, v: Tensor) -> Tensor:
        x = x.detach().clone().requires_grad_(True)
        (hv,) = torch.autograd.grad(self.problem.grad(x), x, grad_outputs=v)
        return hv

    def rhs(self, _t, y):
        n = y.size // 2
        x, v = torch.from_numpy(y[:n]), torch.from_numpy(y[n:])
        acc = -self.alpha * self.problem.grad(x) - self.gamma * v
        if self.eps:
            acc = acc - self.eps * self.alpha * self.hvp(x, v)
        return np.concatenate([v.numpy(), acc.detach().numpy()])

    def solve(self, x0, v0, t_end: float, n_eval: int = 401, rtol: float = 1e-12, atol: float = 1e-14):
        """(t, x, v) on a uniform grid, and scipy's dense interpolant."""
        y0 = np.concatenate([np.asarray(x0, dtype=np.float64), np.asarray(v0, dtype=np.float64)])
        t = np.linspace(0, t_end, n_eval)
        res = solve_ivp(self.rhs, (0, t_end), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol,
                        dense_output=True, max_step=t_end / 400)
        if not res.success:
            raise RuntimeError(f"solve_ivp failed: {res.message}")
        n = y0.size // 2
        return res.t, torch.from_numpy(res.y[:n].T.copy()), torch.from_numpy(res.y[n:].T.copy()), res.sol


def classical_energy(problem, alpha: float, gamma: float, eps: float, x: Tensor, v: Tensor) -> Tensor:
    """E = alpha f(x) + ||x' + eps alpha grad f(x)||^2 / (2 (1 - eps gamma)).

    eps = 0: the heavy-ball energy alpha f + 1/2||x'||^2 (potential + kinetic). eps > 0: the same with
    the gradient-corrected velocity (1 - eps gamma) m = x' + eps alpha grad f of the Nesterov ODE.
    """
    if not eps * gamma < 1:
        raise ValueError(f"need eps * gamma < 1, got eps={eps}, gamma={gamma}")
    w = v + eps * alpha * problem.grad(x)
    return alpha * problem.f(x) + w.square().sum(-1) / (2 * (1 - eps * gamma))


def classical_dissipation(problem, alpha: float, gamma: float, eps: float, x: Tensor, v: Tensor) -> Tensor:
    """-dE/dt = gamma ||x'||^2 + eps (1 - eps gamma) ||m'||^2, m = (x' + eps alpha grad f)/(1 - eps gamma),
    m' = -alpha grad f - gamma m. For eps = 0 the classical heavy-ball dissipation gamma ||x'||^2."""
    m = (v + eps * alpha * problem.grad(x)) / (1 - eps * gamma)
    dm = -alpha * problem.grad(x) - gamma * m
    return gamma * v.square().sum(-1) + eps * (1 - eps * gamma) * dm.square().sum(-1)

