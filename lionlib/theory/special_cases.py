"""Lion-K against the methods it contains (paper Section 3.1): Frank-Wolfe, mirror descent and the
classical momentum ODEs, each compared with an independent reference from `lionlib.theory.references`.

Pure maths: each function runs the real update (through `dynamics.lion_k_step` or `dynamics.integrate`)
beside its reference and returns the differences; the companion words and checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lionlib import kappa as kappa_lib
from lionlib.kappa import Kappa
from lionlib.theory import dynamics, references
from lionlib.theory.lyapunov import H, OdeConstants

__all__ = ["frank_wolfe_error", "mirror_runs", "mirror_error", "relaxed_mirror_error", "ClassicalRun", "classical_run",
           "euler_betas", "lionk_optimizer_vs_ode"]

DTYPE = torch.float64


def frank_wolfe_error(xs: Tensor, grads: Tensor, ball: str, lam: float, lr: float) -> float:
    """max |x_{t+1} - FW(x_t)| over a Lion-K run without momentum: xs (T+1, d) the trajectory, grads
    (T, d) the gradients it used; Frank-Wolfe with step lr lambda on the ball {||s||_ball <= 1/lambda}
    and a linprog oracle."""
    xs_np, gs_np = xs.detach().cpu().double().numpy(), grads.detach().cpu().double().numpy()
    return max(float(np.abs(xs_np[t + 1] - references.frank_wolfe_step(xs_np[t], gs_np[t], ball, 1 / lam, lr * lam)).max())
               for t in range(len(gs_np)))


def mirror_runs(K: Kappa, problem, lam: float, beta: float, x0, steps: int):
    """Lion-K with beta1 = beta2 = beta, explicit decay and lr = 1/lambda (so lr lambda = 1), started
    at m_0 = grad psi(x_0), beside mirror descent from each of its states; returns (Lion-K x's, MD x's)."""
    x = torch.as_tensor(x0, dtype=DTYPE)
    m = references.mirror_potential_grad(K, lam, x)
    xs, md = [x], [x]
    for _ in range(steps):
        g = problem.grad(x)
        md.append(references.mirror_descent_step(K, lam, x, g, eta=1 - beta))
        x, m, _ = dynamics.lion_k_step(K, x, m, g, 1 / lam, beta, beta, lam)
        xs.append(x)
    return torch.stack(xs), torch.stack(md)


def mirror_error(runs: dict) -> float:
    """runs: name -> (Lion-K x's, mirror-descent x's). Max |x_{t+1} - MD(x_t)| / (1 + |x|)."""
    return max(float(((a - b).abs() / (1 + a.abs())).max()) for a, b in runs.values())


def relaxed_mirror_error(K: Kappa, problem, hp, x0, steps: int) -> float:
    """Any betas and lr: max relative |x_{t+1} - [(1 - lr lambda) x_t + lr lambda argmin_x {psi(x) - <m~, x>}]|.
    True by construction once the mirror step inverts grad psi (argmin = grad K(m~)/lambda): it shows
    the update written as a relaxed mirror step, it tests only the numerical mirror step."""
    x = torch.as_tensor(x0, dtype=DTYPE)
    m = torch.zeros_like(x)
    lam, err = hp.lam, 0.0
    for _ in range(steps):
        x1, m1, m_tilde = dynamics.lion_k_step(K, x, m, problem.grad(x), hp.lr, hp.beta1, hp.beta2, lam)
        ref = (1 - hp.lr * lam) * x + hp.lr * lam * references.mirror_step(K, lam, m_tilde, x_init=x)
        err = max(err, float(((x1 - ref).abs() / (1 + x1.abs())).max()))
        x, m = x1, m1
    return err


@dataclass
class ClassicalRun:
    t: np.ndarray
    x: Tensor  # independent second-order ODE solution
    x_lionk: Tensor  # the Lion-K ODE (K = 1/2||.||^2, lambda -> 0)
    E: Tensor  # classical energy along x
    H: Tensor  # lionlib's H along x (lambda -> 0)
    dissipation: Tensor
    dE_fd: np.ndarray  # -dE/dt by finite differences on the dense solution
    sol: object  # the reference's dense interpolant t -> (x, x')


def classical_run(problem, alpha: float, gamma: float, eps: float, x0, t_end: float, n_eval: int = 301,
                  lam_small: float = 1e-11, fd_step: float = 1e-3) -> ClassicalRun:
    """The second-order ODE (heavy ball for eps = 0, Nesterov's high-resolution ODE for eps > 0) solved
    independently, beside the Lion-K ODE with K = 1/2||.||^2 and lambda -> 0 from the same state."""
    K = kappa_lib.get("half_sq_l2")
    x0 = torch.as_tensor(x0, dtype=DTYPE)
    ode = references.SecondOrderOde(problem, alpha, gamma, eps)
    t, X, V, sol = ode.solve(x0, np.zeros(x0.numel()), t_end, n_eval)
    m0 = eps * alpha * problem.grad(x0) / (1 - eps * gamma)  # x'(0) = 0
    c = OdeConstants(alpha, gamma, eps, lam_small)
    lk = dynamics.integrate(K, problem, c, x0, t_end, m0=m0, n_eval=n_eval)
    E = references.classical_energy(problem, alpha, gamma, eps, X, V)
    M = (V + eps * alpha * problem.grad(X)) / (1 - eps * gamma)
    Hs = torch.stack([H(K, c, x, m, problem.f(x)) for x, m in zip(X, M)])
    diss = references.classical_dissipation(problem, alpha, gamma, eps, X, V)

    def E_at(s):
        y = torch.from_numpy(sol(s))
        n = y.numel() // 2
        return float(references.classical_energy(problem, alpha, gamma, eps, y[:n], y[n:]))

    h, dE = fd_step, np.full(len(t), np.nan)
    for i, s in enumerate(t):
        if 2 * h <= s <= t[-1] - 2 * h:
            dE[i] = -(-E_at(s + 2 * h) + 8 * E_at(s + h) - 8 * E_at(s - h) + E_at(s - 2 * h)) / (12 * h)
    return ClassicalRun(t, X, lk.x, E, Hs, diss, dE, sol)


def euler_betas(lr: float, gamma: float, eps: float) -> tuple[float, float]:
    """The betas of Lion-K whose step lr discretises the ODE with friction gamma and Nesterov coefficient
    eps (PAPER 2.5): beta2 = 1 - gamma lr, beta1 = 1 - eps gamma (beta1 = beta2 for heavy ball, eps = 0)."""
    beta2 = 1 - gamma * lr
    return (beta2 if eps == 0 else 1 - eps * gamma), beta2


def lionk_optimizer_vs_ode(problem, alpha: float, gamma: float, eps: float, x0, t_end: float, lr: float,
                           sol=None) -> float:
    """max_k |x_k - x_ref(k lr)| for `lionlib.LionK` (K = 1/2||.||^2, no decay) run with step lr as the
    Euler scheme of the second-order ODE x'' = -alpha grad f - gamma x' - eps alpha Hess f x'.

    The ODE with alpha != gamma is the alpha = gamma one for f~ = (alpha/gamma) f, which LionK is given as
    the gradient; PAPER 2.5 maps the rest: beta2 = 1 - gamma lr and beta1 = 1 - eps gamma (Nesterov) or
    beta1 = beta2 (heavy ball, eps = 0, whose discrete eps_ode = lr vanishes with lr). m_0 = 0, so the
    reference starts at x'(0) = -eps alpha grad f(x0) (the first direction m~ of Lion-K). An error that
    halves with lr is first-order convergence to the classical method; a wrong mapping stays O(1).
    """
    from lionlib import LionK

    x0 = torch.as_tensor(x0, dtype=DTYPE)
    if sol is None:
        ode = references.SecondOrderOde(problem, alpha, gamma, eps)
        sol = ode.solve(x0, (-eps * alpha * problem.grad(x0)).numpy(), t_end)[3]
    beta1, beta2 = euler_betas(lr, gamma, eps)
    x = torch.nn.Parameter(x0.clone())
    opt = LionK([x], kappa_lib.get("half_sq_l2"), lr=lr, betas=(beta1, beta2), weight_decay=0.0)
    n = int(round(t_end / lr))
    err = 0.0
    for k in range(1, n + 1):
        x.grad = (alpha / gamma) * problem.grad(x.detach())
        opt.step()
        ref = torch.from_numpy(sol(k * lr)[: x0.numel()])
        err = max(err, float((x.detach() - ref).abs().max()))
    return err
