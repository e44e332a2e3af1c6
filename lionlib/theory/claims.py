"""The checks of the theory notebooks, as functions that can fail.

Each `check_*` computes a quantity from real runs of the update (or from K itself), states it through
`report.check` (any object with the `lionlib.companion.report.Report.check` signature; theory does not
import the companion) and returns the verdict. The notebooks call these functions, and
`tests/test_claims_can_fail.py` calls the same functions after breaking the maths on purpose (a
Lyapunov coefficient, beta1 and beta2 swapped in the update, the sign of grad K, explicit decay
where the theorem needs implicit decay) to show that each reports FAIL.

The update is reached through the module attribute `dynamics.lion_k_step` (never a copy imported by
name), so a test that replaces it replaces it everywhere, `dynamics.simulate` included.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from lionlib.kappa import Kappa
from lionlib.theory import dynamics
from lionlib.theory.lyapunov import (DiscreteConstants, OdeConstants, H, coupling, one_step_change,
                                     phase1_factor, phase1_factor_continuous)

__all__ = ["phase1_ratio", "check_phase1", "lion_entry_prediction", "entry_step", "check_entry_step",
           "one_step_excess", "check_one_step_bound", "check_descent", "random_one_step", "check_random_states",
           "fenchel_young_errors", "check_fenchel_young", "ode_dH_error", "check_dH_equals_minus_Delta",
           "check_continuous_phase1"]

DTYPE = torch.float64
TINY = 1e-12  # absolute slack once a bound is at rounding level


# ----------------------------------------------------------------------------------------------
# Phase 1 (PAPER 4.2): dist(lambda x_t, dom K*) <= factor_t * dist_0, for any gradients.


def phase1_ratio(dists: Iterable[Tensor], lr, lam: float, implicit: bool = False) -> float:
    """max over runs starting outside dom K* and over steps t >= 1 of dist_t / (factor_t dist_0).

    `dists` are per-step distance sequences (entry 0 = the start); the factor is (1 - lr lam)^t
    (explicit decay) or (1 + lr lam)^-t (implicit), the product of the per-step factors for a schedule.
    """
    worst = 0.0
    for d in dists:
        d = torch.as_tensor(d, dtype=DTYPE)
        if not d[0] > 0:
            continue
        bound = torch.as_tensor(phase1_factor(lr, lam, len(d) - 1, implicit=implicit), dtype=DTYPE) * d[0]
        worst = max(worst, float((d[1:] / (bound[1:] + TINY)).max()))
    return worst


def check_phase1(report, element: str, claim: str, dists, lr, lam: float, implicit: bool = False) -> bool:
    return report.check(element, claim, phase1_ratio(dists, lr, lam, implicit), "<=", 1.0, fmt=".4f")


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


def check_entry_step(report, element: str, tr, x0, lr: float, lam: float, implicit: bool = False) -> bool:
    """Lion's entry step equals the closed form of `lion_entry_prediction` (checks lr, decay and sign)."""
    t = entry_step(tr.dist)
    pred = lion_entry_prediction(x0, lr, lam, implicit)
    return report.check(element, f"Lion from {tuple(x0)}, lambda = {lam}, {'implicit' if implicit else 'explicit'} "
                        f"decay: enters the box at the closed-form step {pred} (entry step - prediction)", math.inf if t is None else t - pred, "==", 0, fmt=".0f")


# ----------------------------------------------------------------------------------------------
# Theorem 4.1 along trajectories and on random states.


def one_step_excess(trajs) -> float:
    """max over runs and steps after entry of [H_d(t+1) - H_d(t) - (L/2)||x_{t+1} - x_t||^2] / (1 + max|H_d|)."""
    worst, scale = -math.inf, 1.0
    for tr in trajs:
        gap = torch.diff(tr.H) - tr.remainder_bound
        fin = torch.isfinite(gap)
        if fin.any():
            worst = max(worst, float(gap[fin].max()))
            scale = max(scale, 1 + float(tr.H[torch.isfinite(tr.H)].abs().max()))
    return math.inf if worst == -math.inf else worst / scale  # no step after entry: nothing shown, so fail


def check_one_step_bound(report, element: str, claim: str, trajs, tol: float = 1e-13) -> bool:
    return report.check(element, claim, one_step_excess(trajs), "<=", tol, stable=False)


def check_descent(report, element: str, claim: str, trajs, tol: float = 1e-13) -> bool:
    """D_t <= 0 after entry (the linearised one-step change of H_d), relative to 1 + max|H_d|."""
    worst, scale = -math.inf, 1.0
    for tr in trajs:
        fin = torch.isfinite(tr.D)
        if fin.any():
            worst = max(worst, float(tr.D[fin].max()))
            scale = max(scale, 1 + float(tr.H[torch.isfinite(tr.H)].abs().max()))
    value = math.inf if worst == -math.inf else worst / scale  # no step after entry: nothing shown, so fail
    return report.check(element, claim, value, "<=", tol, stable=False)


def random_one_step(K: Kappa, n: int, generator: torch.Generator, *, order: str = "beta2 >= beta1",
                    implicit: bool = True, coefficient: Callable[[DiscreteConstants], float] | None = None,
                    lr_lam_min: float = 1e-3, shape: tuple = (2,)) -> tuple[float, float]:
    """One Lion-K step from n random states after phase 1; returns (fraction with D_t > 0, max relative D_t).

    A state: lambda x a random point of dom K* (`random_dual_point`), m and g Gaussian of random
    scale (10^[-1, 1]), lambda log-uniform in [0.1, 3.2], lr lambda log-uniform in [lr_lam_min, 1],
    betas uniform with the given order ("beta2 >= beta1", "beta2 < beta1"). `coefficient(hp)`
    replaces C_d (to test other printed forms). D_t > 1e-12 (1 + |<g, dx>|) counts as a violation.
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
        bad += rel > 1e-12
        worst = max(worst, rel)
    return bad / n, worst


def check_random_states(report, element: str, claim: str, K: Kappa, n: int, generator, *, expect: str = "none",
                        **kwargs) -> bool:
    """expect="none": no random state violates D_t <= 0 (the theorem); "some": a counter-example exists."""
    frac, _ = random_one_step(K, n, generator, **kwargs)
    if expect == "none":
        return report.check(element, claim, frac, "==", 0.0)
    return report.check(element, claim, frac, ">", 0.0, stable=False)


# ----------------------------------------------------------------------------------------------
# Table 2: every K against its conjugate (Fenchel-Young), from random points.


def fenchel_young_errors(K: Kappa, n: int, generator: torch.Generator, shape: tuple = (2,)) -> tuple[float, float]:
    """(max |K*(grad K(z)) + K(z) - <grad K(z), z>| / (1 + |K(z)|), min of the gap at random (y, z)).

    The equality holds iff grad K(z) is a subgradient of K at z, so it fails for a wrong grad (a sign
    flip, a wrong scale) or a wrong conjugate; the gap at random y in dom K* must be >= 0.
    """
    eq, gap = 0.0, math.inf
    for _ in range(n):
        z = 3 * torch.randn(shape, dtype=DTYPE, generator=generator)
        y = dynamics.random_dual_point(K, shape, generator)
        gz = K.grad(z)
        eq = max(eq, float((K.conjugate(gz) + K.value(z) - (gz * z).sum()).abs() / (1 + K.value(z).abs())))
        gap = min(gap, float(K.conjugate(y) + K.value(z) - (y * z).sum()))
    return eq, gap


def check_fenchel_young(report, element: str, Ks: Sequence[Kappa], n: int, generator) -> bool:
    errs = {K.describe(): fenchel_young_errors(K, n, generator, (3, 2) if K.name == "nuclear" else (2,)) for K in Ks}
    eq = max(e for e, _ in errs.values())
    gap = min(g for _, g in errs.values())
    ok1 = report.check(element, f"every K of the table ({len(Ks)} rows): Fenchel-Young equality "
                       "K*(grad K(z)) + K(z) = <grad K(z), z> at random z (max relative error)", eq, "<=", 1e-9,
                       stable=False)
    ok2 = report.check(element, "every K of the table: Fenchel-Young gap K*(y) + K(z) - <y, z> >= 0 at random "
                       "(y in dom K*, z) (min gap)", gap, ">=", -1e-12, stable=False)
    return ok1 and ok2


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


def check_dH_equals_minus_Delta(report, element: str, claim: str, Ks: dict, c: OdeConstants, runs: dict, problem,
                                h: float = 2e-3, tol: float = 1e-6, every: int = 1) -> bool:
    err = max(ode_dH_error(Ks[k], c, runs[k], problem, h, every) for k in runs)
    return report.check(element, claim, err, "<=", tol, stable=False)


def check_continuous_phase1(report, element: str, claim: str, runs: Iterable, lam: float) -> bool:
    """max over runs and samples t > 0 of dist(lambda x_t, dom K*) / (e^{-lambda t} dist_0)."""
    worst = 0.0
    for tr in runs:
        d = tr.dist
        if d[0] > 0:
            bound = torch.as_tensor(phase1_factor_continuous(tr.t, lam), dtype=DTYPE) * d[0]
            worst = max(worst, float((d[1:] / (bound[1:] + TINY)).max()))
    return report.check(element, claim, worst, "<=", 1.0, fmt=".4f")
