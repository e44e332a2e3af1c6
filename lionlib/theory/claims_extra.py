"""Checks of the notebooks that show the rest of the paper's theory (05, 11-13): Frank-Wolfe, mirror
descent, the classical ODEs, stochastic gradients and the discrete rate.

Same contract as `lionlib.theory.claims`: each `check_*` runs the real update (or the ODE), compares
it with an independent reference from `lionlib.theory.special`, states the result through
`report.check` and returns what the notebook plots. `tests/test_claims_can_fail.py` breaks the maths
and calls the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lionlib import kappa as kappa_lib
from lionlib.kappa import Kappa
from lionlib.theory import dynamics, special
from lionlib.theory.lyapunov import H, OdeConstants

__all__ = ["check_summed_rate", "check_frank_wolfe", "mirror_runs", "check_mirror_descent", "check_relaxed_mirror", "ClassicalRun",
           "check_classical_ode", "noisy_lion_batch", "kkt_l1_rows"]

DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------
# Frank-Wolfe (05).


def check_frank_wolfe(report, element: str, name: str, xs: Tensor, grads: Tensor, ball: str, lam: float, lr: float,
                      tol: float = 1e-12) -> float:
    """Lion-K without momentum against Frank-Wolfe with a linprog LMO, one step from every state.

    xs: (T+1, d) the Lion-K trajectory, grads: (T, d) the gradients it used. Frank-Wolfe with step
    eta = lr lambda on the ball {||s||_ball <= 1/lambda} must map x_t to x_{t+1}.
    """
    xs_np, gs_np = xs.detach().cpu().double().numpy(), grads.detach().cpu().double().numpy()
    err = max(float(np.abs(xs_np[t + 1] - special.frank_wolfe_step(xs_np[t], gs_np[t], ball, 1 / lam, lr * lam)).max())
              for t in range(len(gs_np)))
    report.check(element, f"{name}: Lion-K step = Frank-Wolfe step with a linprog oracle (scipy HiGHS) from every "
                 "state of the run (max |difference|)", err, "<=", tol, stable=False)
    return err


# ----------------------------------------------------------------------------------------------
# Mirror descent (12).


def mirror_runs(K: Kappa, problem, lam: float, beta: float, x0, steps: int):
    """Lion-K with beta1 = beta2 = beta, explicit decay and lr = 1/lambda (so lr lambda = 1), started
    at m_0 = grad psi(x_0); returns (Lion-K x's, mirror-descent x's from each Lion-K state)."""
    x = torch.as_tensor(x0, dtype=DTYPE)
    m = special.mirror_potential_grad(K, lam, x)
    xs, md = [x], [x]
    for _ in range(steps):
        g = problem.grad(x)
        md.append(special.mirror_descent_step(K, lam, x, g, eta=1 - beta))
        x, m, _ = dynamics.lion_k_step(K, x, m, g, 1 / lam, beta, beta, lam)
        xs.append(x)
    return torch.stack(xs), torch.stack(md)


def check_mirror_descent(report, element: str, runs: dict, tol: float = 1e-7) -> float:
    """runs: name -> (Lion-K x's, mirror-descent x's). Max |x_{t+1} - MD(x_t)| / (1 + |x|)."""
    err = max(float(((a - b).abs() / (1 + a.abs())).max()) for a, b in runs.values())
    report.check(element, "Lion-K with beta1 = beta2 = beta, lr lambda = 1 is mirror descent on f + psi with mirror map "
                 "psi(x) = K*(lambda x)/lambda and step 1 - beta (every K and beta; max relative |difference| "
                 "to an independent mirror step from K* alone)", err, "<=", tol, stable=False)
    return err


def check_relaxed_mirror(report, element: str, K: Kappa, problem, hp, x0, steps: int, tol: float = 1e-7) -> float:
    """Any betas and lr: x_{t+1} = (1 - lr lambda) x_t + lr lambda argmin_x {psi(x) - <m~_{t+1}, x>}:
    Lion-K relaxes x toward the mirror image of the gradient-enhanced momentum (explicit decay)."""
    x = torch.as_tensor(x0, dtype=DTYPE)
    m = torch.zeros_like(x)
    lam, err = hp.lam, 0.0
    for _ in range(steps):
        x1, m1, m_tilde = dynamics.lion_k_step(K, x, m, problem.grad(x), hp.lr, hp.beta1, hp.beta2, lam)
        target = special.mirror_step(K, lam, m_tilde, x_init=x)
        ref = (1 - hp.lr * lam) * x + hp.lr * lam * target
        err = max(err, float(((x1 - ref).abs() / (1 + x1.abs())).max()))
        x, m = x1, m1
    report.check(element, f"{K.name}, betas ({hp.beta1}, {hp.beta2}), lr lambda = {hp.lr * lam:g}: x_(t+1) = (1 - lr "
                 "lambda) x_t + lr lambda (mirror image of m~_(t+1)) (max relative |difference|)", err, "<=", tol,
                 stable=False)
    return err


# ----------------------------------------------------------------------------------------------
# Heavy ball and Nesterov (12).


@dataclass
class ClassicalRun:
    t: np.ndarray
    x: Tensor  # independent second-order ODE solution
    x_lionk: Tensor  # the Lion-K ODE (K = 1/2||.||^2, lambda -> 0)
    E: Tensor  # classical energy along x
    H: Tensor  # lionlib's H along x (lambda -> 0)
    dissipation: Tensor
    dE_fd: np.ndarray  # -dE/dt by finite differences on the dense solution


def check_classical_ode(report, element: str, name: str, problem, alpha: float, gamma: float, eps: float, x0,
                        t_end: float, n_eval: int = 301, lam_small: float = 1e-11, fd_step: float = 1e-3) -> ClassicalRun:
    """The Lion-K ODE with K = 1/2||.||^2 and lambda -> 0 is heavy ball (eps = 0) or the
    high-resolution Nesterov ODE (eps > 0), and its H is their classical energy; four checks."""
    K = kappa_lib.get("half_sq_l2")
    x0 = torch.as_tensor(x0, dtype=DTYPE)
    ode = special.SecondOrderOde(problem, alpha, gamma, eps)
    t, X, V, sol = ode.solve(x0, np.zeros(x0.numel()), t_end, n_eval)
    m0 = eps * alpha * problem.grad(x0) / (1 - eps * gamma)  # x'(0) = 0
    lk = dynamics.integrate(K, problem, OdeConstants(alpha, gamma, eps, lam_small), x0, t_end, m0=m0, n_eval=n_eval)
    E = special.classical_energy(problem, alpha, gamma, eps, X, V)
    c = OdeConstants(alpha, gamma, eps, lam_small)
    M = (V + eps * alpha * problem.grad(X)) / (1 - eps * gamma)
    Hs = torch.stack([H(K, c, x, m, problem.f(x)) for x, m in zip(X, M)])
    diss = special.classical_dissipation(problem, alpha, gamma, eps, X, V)

    def E_at(s):
        y = torch.from_numpy(sol(s))
        n = y.numel() // 2
        return float(special.classical_energy(problem, alpha, gamma, eps, y[:n], y[n:]))

    h = fd_step
    dE = np.full(len(t), np.nan)
    for i, s in enumerate(t):
        if 2 * h <= s <= t[-1] - 2 * h:
            dE[i] = -(-E_at(s + 2 * h) + 8 * E_at(s + h) - 8 * E_at(s - h) + E_at(s - 2 * h)) / (12 * h)
    ok = np.isfinite(dE)
    scale = 1 + float(E.abs().max())
    report.check(element, f"{name}: the Lion-K ODE (K = 1/2||.||^2, lambda = {lam_small:g}) follows the second-order "
                 "ODE solved independently (max |x - x_ref|)", float((lk.x - X).abs().max()), "<=", 1e-7, stable=False)
    report.check(element, f"{name}: lionlib's H equals the classical energy along the path (max |H - E| / (1 + |E|))",
                 float(((Hs - E).abs() / (1 + E.abs())).max()), "<=", 1e-7, stable=False)
    report.check(element, f"{name}: the classical energy never increases (max E(t_(i+1)) - E(t_i), relative)",
                 float(torch.diff(E).max()) / scale, "<=", 1e-12, stable=False)
    report.check(element, f"{name}: -dE/dt = classical dissipation (max relative error, finite differences)",
                 float(np.max(np.abs(dE[ok] - diss.numpy()[ok]) / (1 + diss.numpy()[ok]))), "<=", 1e-6, stable=False)
    return ClassicalRun(t, X, lk.x, E, Hs, diss, dE)


# ----------------------------------------------------------------------------------------------
# Stochastic gradients (13): many Lion runs at once, one row per (config, seed).


def noisy_lion_batch(K: Kappa, problem, x0, steps: int, lr: Tensor, lam: float, betas, sigma: Tensor, seeds,
                     implicit: bool = False):
    """Lion-K on a batch of B independent runs (rows): lr and sigma are (B,) tensors, seeds (B,) ints.

    The gradient of row b at step t is grad f(x) + sigma_b xi with xi ~ N(0, I) from a generator seeded
    by seeds[b] (so paired arms share their noise). K must act elementwise (the update is applied
    to the (B, d) tensor at once). Returns X (steps+1, B, d).
    """
    if not K.elementwise:
        raise ValueError(f"noisy_lion_batch needs an elementwise K, got {K.describe()}")
    B, x = len(seeds), torch.as_tensor(x0, dtype=DTYPE).expand(len(seeds), -1).clone()
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    d = x.shape[1]
    m, xs = torch.zeros_like(x), [x]
    lr_col, sig_col = lr.view(B, 1), sigma.view(B, 1)
    for _ in range(steps):
        noise = torch.stack([torch.randn(d, dtype=DTYPE, generator=g) for g in gens])
        g = problem.grad(x) + sig_col * noise
        x, m, _ = dynamics.lion_k_step(K, x, m, g, lr_col, betas[0], betas[1], lam, implicit)
        xs.append(x)
    return torch.stack(xs)


def kkt_l1_rows(problem, X: Tensor, lam: float) -> Tensor:
    """Lion's KKT score S(x) = ||grad f||_1 + lambda <x, grad f> per row of X (..., d), at x projected on
    the box (S is +inf outside it; runs approach a face from outside by at most the phase-1 rest)."""
    Xp = X.clamp(-1 / lam, 1 / lam)
    g = problem.grad(Xp)
    return g.abs().sum(-1) + lam * (Xp * g).sum(-1)


def check_summed_rate(report, element: str, runs: dict, problem, lam: float, f_star: float) -> float:
    """PAPER 4.4's summed form along Lion runs (K = l1, implicit scheme), lr -> Trajectory in `runs`:
    for every T after the entry step t_0, (1/(T - t_0)) sum_{t_0 <= t < T} Delta_t <=
    (H_d(t_0) - f*)/(T - t_0) + 2 L lr^2 d. f* (the box minimum of f) is below inf H_d."""
    from lionlib.theory.claims import entry_step

    worst = -np.inf
    for lr, tr in runs.items():
        t0 = entry_step(tr.dist)
        if t0 is None:  # never entered: the rate says nothing, and nothing was shown
            worst = np.inf
            continue
        delta = -tr.D[t0:]
        n = torch.arange(1, len(delta) + 1, dtype=DTYPE)
        bound = (tr.H[t0] - f_star) / n + 2 * problem.L * lr**2 * tr.x.shape[-1]
        worst = max(worst, float((torch.cumsum(delta, 0) / n - bound).max()))
    report.check(element, "summed form: average Delta_t after entry <= (H_d(t_0) - f*)/T + 2 L lr^2 d, every lr and T "
                 "(max lhs - rhs)", worst, "<=", 0.0, stable=False)
    return worst
