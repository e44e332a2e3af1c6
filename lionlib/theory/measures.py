"""The quantities the theory notebooks check, computed from real runs of the update (or from K itself).

Pure maths: each function returns numbers; the wording, the thresholds and the `Report` calls are
the companion's (`lionlib.companion.theory_checks`). The update is reached through the module
attribute `dynamics.lion_k_step` (never a copy imported by name), so a test that replaces it
replaces it everywhere, `dynamics.simulate` included.

Rounding. A check of a bound that holds with equality in exact arithmetic (phase 1 at full speed, the
one-step inequality) compares at float64 rounding level; `phase1_rounding` and `FLOAT64_EPS` give the
size of that rounding from the maths, so the companion states it as a tolerance instead of hiding a
constant in a denominator.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from lionlib.kappa import Kappa
from lionlib.monitor import ConstraintMonitor
from lionlib.muon import Muon, radius
from lionlib.theory import dynamics
from lionlib.theory.lyapunov import (DiscreteConstants, OdeConstants, H, coupling, one_step_change, phase1_factor,
                                     phase1_factor_continuous)

__all__ = ["FLOAT64_EPS", "VIOLATION", "phase1_ratio", "phase1_excess", "phase1_rounding", "continuous_phase1_excess",
           "lion_entry_prediction", "entry_step", "one_step_excess", "max_descent", "random_one_step",
           "fenchel_young_errors", "ode_dH_error", "average_delta", "rate_slope", "phase1_steps", "muon_radius_run"]

DTYPE = torch.float64
FLOAT64_EPS = float(torch.finfo(DTYPE).eps)  # 2.2e-16: one rounding of a float64 operation, relative
VIOLATION = 1e-12  # a random state counts as violating D_t <= 0 when D_t > VIOLATION (1 + |<g, dx>|): 10^4 ulps


# ----------------------------------------------------------------------------------------------
# Phase 1 (PAPER 4.2): dist(lambda x_t, dom K*) <= factor_t * dist_0, for any gradients.


def _bounds(d: Tensor, lr, lam: float, implicit: bool) -> Tensor:
    return torch.as_tensor(phase1_factor(lr, lam, len(d) - 1, implicit=implicit), dtype=DTYPE) * d[0]


def phase1_ratio(dists: Iterable[Tensor], lr, lam: float, implicit: bool = False) -> float:
    """max over runs starting outside dom K* and over steps t >= 1 of dist_t / (factor_t dist_0).

    `dists` are per-step distance sequences (entry 0 = the start); the factor is (1 - lr lam)^t
    (explicit decay) or (1 + lr lam)^-t (implicit). Once dist_t is at rounding level the ratio is
    rounding over rounding: check `phase1_excess` instead, and read this ratio for the first steps.
    """
    worst = 0.0
    for d in dists:
        d = torch.as_tensor(d, dtype=DTYPE)
        if d[0] > 0:
            worst = max(worst, float((d[1:] / _bounds(d, lr, lam, implicit)[1:]).max()))
    return worst


def phase1_excess(dists: Iterable[Tensor], lr, lam: float, implicit: bool = False) -> float:
    """max over runs and steps t >= 1 of dist_t - factor_t dist_0 (in units of lambda x; <= 0 is the bound).
    A run starting inside must stay inside: its excess is dist_t itself."""
    worst = -math.inf
    for d in dists:
        d = torch.as_tensor(d, dtype=DTYPE)
        worst = max(worst, float((d[1:] - _bounds(d, lr, lam, implicit)[1:]).max()))
    return worst


def phase1_rounding(lr, lam: float, radius: float) -> float:
    """How far float64 rounding can move dist(lambda x_t, dom K*) above its bound: each step rounds
    lambda|x| (at most `radius`) by about one ulp, and the contraction by (1 - lr lambda) per step sums
    those errors to at most ulp / (lr lambda)."""
    return FLOAT64_EPS * (1 + radius) / (float(np.min(lr)) * lam)


def continuous_phase1_excess(runs: Iterable, lam: float) -> float:
    """max over ODE runs starting outside and samples t > 0 of (dist_t - e^{-lambda t} dist_0) / dist_0."""
    worst = -math.inf
    for tr in runs:
        d = torch.as_tensor(tr.dist, dtype=DTYPE)
        if d[0] > 0:
            bound = torch.as_tensor(phase1_factor_continuous(tr.t, lam), dtype=DTYPE) * d[0]
            worst = max(worst, float(((d[1:] - bound[1:]) / d[0]).max()))
    return worst


def lion_entry_prediction(x0: Sequence[float], lr: float, lam: float, implicit: bool = False) -> int:
    """The step at which Lion (K = l1) enters the box when every outside coordinate moves inward at
    full speed, i.e. sign(m~) = -sign(x0_i) from the first step on (m_0 = 0 and a gradient that keeps
    the sign of x0_i while the coordinate is outside, e.g. f = 1/2||x - c||^2 with c_i on the other
    side of the box face).

    Explicit decay: x_{t+1} = (1 - lr lam) x_t - lr sign(x0), so |x_t| + 1/lam = q^t (|x0| + 1/lam) with
    q = 1 - lr lam; implicit decay: x_{t+1} = (x_t - lr sign(x0)) / (1 + lr lam), the same with
    q = 1/(1 + lr lam). The coordinate is inside once q^t (|x0| + 1/lam) <= 2/lam. It is also the
    fastest any gradient sequence can bring the coordinate in (|grad K| <= 1).
    """
    q = 1 / (1 + lr * lam) if implicit else 1 - lr * lam
    steps = [math.ceil(math.log((2 / lam) / (abs(v) + 1 / lam)) / math.log(q))
             for v in x0 if abs(v) > 1 / lam]
    return max(steps, default=0)


def entry_step(dist: Tensor) -> int | None:
    """First step from which dist(lambda x_t, dom K*) stays 0 (None if the run ends outside)."""
    out = np.flatnonzero(torch.as_tensor(dist).numpy() > 0)
    if out.size == 0:
        return 0
    return int(out[-1]) + 1 if out[-1] < len(dist) - 1 else None


# ----------------------------------------------------------------------------------------------
# Theorem 4.1 along trajectories and on random states.


def _scale(trajs) -> float:
    return max([1.0] + [1 + float(tr.H[torch.isfinite(tr.H)].abs().max()) for tr in trajs if torch.isfinite(tr.H).any()])


def one_step_excess(trajs) -> float:
    """max over runs and steps after entry of [H_d(t+1) - H_d(t) - (L/2)||x_{t+1} - x_t||^2] / (1 + max|H_d|);
    +inf when no run has a step after entry (nothing was shown)."""
    trajs = list(trajs)
    gaps = [(torch.diff(tr.H) - tr.remainder_bound) for tr in trajs]
    vals = [float(g[torch.isfinite(g)].max()) for g in gaps if torch.isfinite(g).any()]
    return max(vals) / _scale(trajs) if vals else math.inf


def max_descent(trajs) -> float:
    """max over runs and steps after entry of D_t / (1 + max|H_d|) (D_t: the linearised one-step change
    of H_d); +inf when no run has a step after entry."""
    trajs = list(trajs)
    vals = [float(tr.D[torch.isfinite(tr.D)].max()) for tr in trajs if torch.isfinite(tr.D).any()]
    return max(vals) / _scale(trajs) if vals else math.inf


def random_one_step(K: Kappa, n: int, generator: torch.Generator, *, order: str = "beta2 >= beta1",
                    implicit: bool = True, coefficient: Callable[[DiscreteConstants], float] | None = None,
                    lr_lam_min: float = 1e-3, shape: tuple = (2,)) -> tuple[float, float]:
    """One Lion-K step from n random states after phase 1; returns (fraction with D_t > 0, max relative D_t).

    A state: lambda x a random point of dom K* (`random_dual_point`), m and g Gaussian of random
    scale (10^[-1, 1]), lambda log-uniform in [0.1, 3.2], lr lambda log-uniform in [lr_lam_min, 1],
    betas uniform with the given order ("beta2 >= beta1", "beta2 < beta1"). `coefficient(hp)`
    replaces C_d (to test other printed forms). D_t > VIOLATION (1 + |<g, dx>|) counts as a violation.
    """
    if order not in ("beta2 >= beta1", "beta2 < beta1"):
        raise ValueError(f"order must be 'beta2 >= beta1' or 'beta2 < beta1', got {order!r}")
    bad, worst = 0, -math.inf
    rand = lambda: float(torch.rand((), dtype=DTYPE, generator=generator))  # noqa: E731
    for _ in range(n):
        u, v = rand(), rand()
        lo, hi = u, u + (1 - u) * v
        b1, b2 = (lo, hi) if order == "beta2 >= beta1" else (hi, lo)
        lam = 10 ** (1.5 * rand() - 1)
        lr = 10 ** (math.log10(lr_lam_min) * (1 - rand())) / lam
        hp = DiscreteConstants(lr, b1, b2, lam)
        x = dynamics.random_dual_point(K, shape, generator) / lam
        m = torch.randn(shape, dtype=DTYPE, generator=generator) * 10 ** (2 * rand() - 1)
        g = torch.randn(shape, dtype=DTYPE, generator=generator) * 10 ** (2 * rand() - 1)
        x1, m1, _ = dynamics.lion_k_step(K, x, m, g, lr, b1, b2, lam, implicit=implicit)
        if coefficient is None:
            D = float(one_step_change(K, hp, x, m, x1, m1, g))
        else:
            D = float((g * (x1 - x)).sum() + (K.conjugate(lam * x1) - K.conjugate(lam * x)) / lam
                      + coefficient(hp) * (coupling(K, x1, m1, lam) - coupling(K, x, m, lam)))
        rel = D / (1 + float((g * (x1 - x)).sum().abs()))
        bad += rel > VIOLATION
        worst = max(worst, rel)
    return bad / n, worst


# ----------------------------------------------------------------------------------------------
# Table 2: every K against its conjugate (Fenchel-Young), from random points.


def fenchel_young_errors(K: Kappa, n: int, generator: torch.Generator, shape: tuple = (2,)) -> tuple[float, float]:
    """(max |K*(grad K(z)) + K(z) - <grad K(z), z>| / (1 + |K(z)|), min of the gap at random (y, z),
    relative to 1 + |K(z)| + |<y, z>|).

    The equality holds iff grad K(z) is a subgradient of K at z, so it fails for a wrong grad (a sign
    flip, a wrong scale) or a wrong conjugate; the gap at random y in dom K* must be >= 0.
    """
    eq, gap = 0.0, math.inf
    for _ in range(n):
        z = 3 * torch.randn(shape, dtype=DTYPE, generator=generator)
        y = dynamics.random_dual_point(K, shape, generator)
        gz = K.grad(z)
        eq = max(eq, float((K.conjugate(gz) + K.value(z) - (gz * z).sum()).abs() / (1 + K.value(z).abs())))
        yz = (y * z).sum()
        gap = min(gap, float((K.conjugate(y) + K.value(z) - yz) / (1 + K.value(z).abs() + yz.abs())))
    return eq, gap


# ----------------------------------------------------------------------------------------------
# Theorem 3.1 along ODE solutions.


def ode_dH_error(K: Kappa, c: OdeConstants, tr, problem, h: float = 2e-3, every: int = 1) -> float:
    """max over feasible samples of |dH/dt + Delta| / (1 + |Delta|), dH/dt by a 4th-order central
    difference of H on the solver's dense output (independent of the closed form of Delta)."""
    from lionlib.theory.lyapunov import Delta

    def H_at(s):
        x, m = tr.state(s)
        return float(H(K, c, x, m, problem.f(x)))

    fin = torch.isfinite(tr.H).numpy()
    worst, compared = 0.0, 0
    for i in range(0, len(tr.t), every):
        t = float(tr.t[i])
        if not fin[i] or t - 2 * h < 0 or t + 2 * h > tr.t[-1] or not fin[max(i - 1, 0)]:
            continue
        dH = (-H_at(t + 2 * h) + 8 * H_at(t + h) - 8 * H_at(t - h) + H_at(t - 2 * h)) / (12 * h)
        x, m = tr.state(t)
        d = float(Delta(K, c, x, m, problem.grad(x)))
        worst = max(worst, abs(dH + d) / (1 + abs(d)))
        compared += 1
    return worst if compared else math.inf  # never inside dom K*: nothing was shown, so fail


# ----------------------------------------------------------------------------------------------
# The discrete rate (PAPER 4.4): (1/T) sum_{t<T} Delta_t <= (H_d(t_0) - inf H_d)/T + 2 L lr^2 d.


def average_delta(tr) -> tuple[int | None, Tensor]:
    """(entry step t_0, the running average (1/T) sum_{t_0 <= t < t_0 + T} Delta_t for T = 1, 2, ...)."""
    t0 = entry_step(tr.dist)
    if t0 is None:
        return None, torch.empty(0, dtype=DTYPE)
    delta = -tr.D[t0:]
    return t0, torch.cumsum(delta, 0) / torch.arange(1, len(delta) + 1, dtype=DTYPE)


def rate_slope(tr, lr: float, L: float, f_star: float, floor_margin: float = 10.0) -> tuple[float, int, int]:
    """Fitted slope of log (1/T) sum Delta_t against log T over the last decade of T before the floor.

    The floor is explicit: the rate's constant term 2 L lr^2 d; the fit uses T up to the T at which
    (H_d(t_0) - f*)/T has fallen to `floor_margin` times the floor (or the end of the run), and down
    to a tenth of it. Returns (slope, T_lo, T_hi); the slope is NaN when the run never enters dom K*
    or an average is <= 0 (a Delta_t < 0: the one-step inequality itself failed).
    """
    t0, avg = average_delta(tr)
    if t0 is None or len(avg) < 20:
        return math.nan, 0, 0
    floor = 2 * L * lr**2 * tr.x.shape[-1]
    T_hi = int(min(len(avg), max(20.0, float(tr.H[t0] - f_star) / (floor_margin * floor))))
    T_lo = max(2, T_hi // 10)
    T = np.unique(np.geomspace(T_lo, T_hi, 25).astype(int))
    a = avg.numpy()[T - 1]
    if not (a > 0).all():
        return math.nan, T_lo, T_hi
    return float(np.polyfit(np.log(T), np.log(a), 1)[0]), T_lo, T_hi


# ----------------------------------------------------------------------------------------------
# The radius of shape-scaled Muon (06): sigma_max(X) <= s/lambda with s = shape_scale(shape, adjust_lr_fn).


def phase1_steps(gap0: float, lr: float, lam: float, leftover: float) -> int:
    """The first T with (1 - lr lambda)^T gap0 <= leftover: when what remains of phase 1 is below it."""
    if not 0 < lr * lam < 1:
        raise ValueError(f"phase 1 contracts by (1 - lr lambda) per step; need 0 < lr * lambda < 1, got {lr * lam!r}")
    return max(0, math.ceil(math.log(leftover / gap0) / math.log(1 - lr * lam))) if gap0 > leftover else 0


def muon_radius_run(shape: tuple[int, int], adjust_lr_fn: str | None, *, lr: float, lam: float, momentum: float,
                    sigma_target: float, sigma_start: float, steps: int, generator: torch.Generator) -> dict:
    """`lionlib.Muon(exact_svd=True, adjust_lr_fn=...)` on f(X) = 1/2 ||X - A||_F^2 in float64.

    A is Gaussian with sigma_max(A) = sigma_target * r and X_0 Gaussian with sigma_max(X_0) =
    sigma_start * r, r = `lionlib.muon.radius(shape, lam, adjust_lr_fn)`. With sigma_target > 1 the
    constrained optimum (A's singular values clipped at r) has sigma_max = r, so the run measures
    whether Muon's scaled step lands on that radius. Returns the radius, gap0 = |sigma_start - 1|,
    `ratio` = sigma_max(X_t) / r for t = 0..steps, and the `ConstraintMonitor`'s `constraint`
    (lambda sigma_max / s, from the optimizer's own K) and phase-1 `bound` for t = 1..steps."""
    r = radius(shape, lam, adjust_lr_fn)

    def with_top(M, s):
        return M * (s / torch.linalg.matrix_norm(M, ord=2))

    A = with_top(torch.randn(*shape, generator=generator, dtype=DTYPE), sigma_target * r)
    X = torch.nn.Parameter(with_top(torch.randn(*shape, generator=generator, dtype=DTYPE), sigma_start * r))
    opt = Muon([X], lr=lr, momentum=momentum, weight_decay=lam, exact_svd=True, adjust_lr_fn=adjust_lr_fn)
    monitor = ConstraintMonitor(opt, [("X", X)], kkt=False)
    ratio = [float(torch.linalg.matrix_norm(X.detach(), ord=2)) / r]
    for t in range(steps):
        opt.zero_grad()
        (0.5 * (X - A).square().sum()).backward()
        opt.step()
        monitor.record(t + 1)
        ratio.append(float(torch.linalg.matrix_norm(X.detach(), ord=2)) / r)
    return {"radius": r, "gap0": abs(sigma_start - 1), "ratio": np.array(ratio),
            "constraint": np.array([row["constraint"] for row in monitor.rows]),
            "bound": np.array([row["bound"] for row in monitor.rows])}
