"""The checks of the theory notebooks: the wording, the thresholds and their tolerances, around the
measures of `lionlib.theory.measures` and `lionlib.theory.special_cases`.

Each `check_*` computes its quantity from real runs (or from K itself), states it through `report`
(a `lionlib.companion.report.Report`) and returns the verdict. `tests/test_claims_can_fail.py`
calls the same functions after breaking the maths on purpose (a Lyapunov coefficient, beta1 and
beta2 swapped in the update, the sign of grad K, explicit decay where the theorem needs implicit
decay, the decay dropped, the wrong betas for an ODE) to show that each reports FAIL.

Every slack is a named tolerance with its reason, about 10x above the rounding the maths predicts
or the value observed, never a constant hidden in a denominator:

- `STEP_ROUNDING`: one step of H_d, relative to 1 + max|H_d|;
- `phase1_tolerance(...)`: phase 1's bound is met with equality at full speed, so its excess is
  rounding (`measures.phase1_rounding`);
- `FY_ROUNDING`: Fenchel-Young at random points;
- `check_muon_radius`: the radius s/lambda of shape-scaled Muon, at `phase1_tolerance`.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from lionlib.companion.verify import FLOAT64, Tolerance
from lionlib.kappa import Kappa
from lionlib.theory import measures
from lionlib.theory.lyapunov import OdeConstants

__all__ = ["Tolerance", "STEP_ROUNDING", "FY_ROUNDING", "at_rounding", "phase1_tolerance", "check_phase1", "check_entry_step",
           "check_one_step_bound", "check_descent", "check_random_states", "check_fenchel_young",
           "check_dH_equals_minus_Delta", "check_continuous_phase1", "check_rate_slope", "check_frank_wolfe", "CHATTER_AT",
           "check_muon_radius",
           "check_mirror_descent", "identity_relaxed_mirror", "check_classical"]

STEP_ROUNDING = (1e-14, "float64 rounding of H_d's terms in one step: a few ulps (2.2e-16 each) of 1 + max|H_d|, "
                        "10x; observed <= 1e-16")
FY_ROUNDING = (1e-14, "float64 rounding of K*(grad K(z)) + K(z) - <grad K(z), z> (exp, log, powers): a few ulps "
                      "of 1 + |K(z)|, 10x; observed <= 9e-16")
ODE_PHASE1 = (1e-9, "the ODE solver's error (rtol 1e-12, atol 1e-14 per step) accumulated over a few hundred "
                    "steps, relative to dist_0, 10x")


def at_rounding(atol: float) -> Tolerance:
    """The cross-CPU promise for a value that may be at float64 rounding level: only its size, below
    `atol`, is promised then; a larger value is promised as any float64 result (`FLOAT64`)."""
    return Tolerance(FLOAT64.rtol, atol, "a value at float64 rounding level: another CPU rounds differently, so "
                                         "only its size (below the check's tolerance) is promised")


def phase1_tolerance(lr, lam: float, radius: float) -> tuple[float, str]:
    """(tol, why) of a phase-1 check: 10x `measures.phase1_rounding` (radius: the largest lambda |x|)."""
    tol = 10 * measures.phase1_rounding(lr, lam, radius)
    return tol, (f"float64 rounding of lambda|x_t| (<= {radius:g}): one ulp per step, summed by the contraction "
                 f"to ulp / (lr lambda), 10x (lr = {float(min(lr) if hasattr(lr, '__len__') else lr):g}, "
                 f"lambda = {lam:g})")


def check_phase1(report, element: str, claim: str, dists, lr, lam: float, implicit: bool = False,
                 radius: float = 5.0) -> bool:
    """dist(lambda x_t, dom K*) <= factor_t dist_0 at every step (runs starting inside stay inside)."""
    tol, why = phase1_tolerance(lr, lam, radius)
    return report.check(element, claim + " (max_t dist_t - bound_t)", measures.phase1_excess(dists, lr, lam, implicit),
                        "<=", 0.0, fmt=".1e", stable=False, tol=tol, why=why, across=at_rounding(tol))


def check_entry_step(report, element: str, tr, x0, lr: float, lam: float, implicit: bool = False) -> bool:
    """Lion's entry step equals the closed form of `lion_entry_prediction` (checks lr, decay and sign)."""
    t = measures.entry_step(tr.dist)
    pred = measures.lion_entry_prediction(x0, lr, lam, implicit)
    return report.check(element, f"Lion from {tuple(x0)}, lambda = {lam}, {'implicit' if implicit else 'explicit'} "
                        f"decay: enters the box at the closed-form step {pred} (entry step - prediction)",
                        math.inf if t is None else t - pred, "==", 0, fmt=".0f")


def check_one_step_bound(report, element: str, claim: str, trajs) -> bool:
    tol, why = STEP_ROUNDING
    return report.check(element, claim, measures.one_step_excess(trajs), "<=", 0.0, stable=False, tol=tol, why=why,
                        across=at_rounding(tol))


def check_descent(report, element: str, claim: str, trajs) -> bool:
    """D_t <= 0 after entry (the linearised one-step change of H_d), relative to 1 + max|H_d|."""
    tol, why = STEP_ROUNDING
    return report.check(element, claim, measures.max_descent(trajs), "<=", 0.0, stable=False, tol=tol, why=why,
                        across=at_rounding(tol))


SOME_STATE = Tolerance(0.25, 0.0, "a random state whose D_t lies within rounding of the violation cut-off may be "
                                  "counted differently on another CPU; the fraction is promised to 25 %")


def check_random_states(report, element: str, claim: str, K: Kappa, n: int, generator, *, expect: str = "none",
                        **kwargs) -> bool:
    """expect="none": no random state violates D_t <= 0 (the theorem); "some": a counter-example exists."""
    frac, _ = measures.random_one_step(K, n, generator, **kwargs)
    if expect == "none":
        return report.check(element, claim, frac, "==", 0.0)
    return report.check(element, claim, frac, ">", 0.0, stable=False, across=SOME_STATE)


def check_fenchel_young(report, element: str, Ks: Sequence[Kappa], n: int, generator) -> bool:
    errs = {K.describe(): measures.fenchel_young_errors(K, n, generator, (3, 2) if K.name == "nuclear" else (2,))
            for K in Ks}
    eq = max(e for e, _ in errs.values())
    gap = min(g for _, g in errs.values())
    tol, why = FY_ROUNDING
    ok1 = report.check(element, f"every K of the table ({len(Ks)} rows): Fenchel-Young equality "
                       "K*(grad K(z)) + K(z) = <grad K(z), z> at random z (max relative error)", eq, "<=", 0.0,
                       stable=False, tol=tol, why=why, across=at_rounding(tol))
    ok2 = report.check(element, "every K of the table: Fenchel-Young gap K*(y) + K(z) - <y, z> >= 0 at random "
                       "(y in dom K*, z) (min gap relative to 1 + |K(z)| + |<y, z>|)", gap, ">=", 0.0, stable=False,
                       tol=tol, why=why, across=at_rounding(tol))
    return ok1 and ok2


def check_dH_equals_minus_Delta(report, element: str, claim: str, Ks: dict, c: OdeConstants, runs: dict, problem,
                                h: float = 2e-3, every: int = 1) -> bool:
    err = max(measures.ode_dH_error(Ks[k], c, runs[k], problem, h, every) for k in runs)
    return report.check(element, claim, err, "<=", 0.0, stable=False, tol=2e-7,
                        why=f"4th-order finite difference of H with h = {h:g} (error ~ h^4 |H^(5)|) and the solver's "
                            "rtol 1e-12 divided by h: 10x the observed 1.5e-8",
                        across=Tolerance(0.5, 0.0, "finite differences of the dense output amplify the solver's "
                                                   "last bits by 1/h"))


def check_continuous_phase1(report, element: str, claim: str, runs, lam: float) -> bool:
    """max over runs and samples t > 0 of (dist_t - e^{-lambda t} dist_0) / dist_0 <= 0."""
    tol, why = ODE_PHASE1
    return report.check(element, claim + " (max relative excess over the bound)",
                        measures.continuous_phase1_excess(runs, lam), "<=", 0.0, fmt=".1e", stable=False, tol=tol,
                        why=why, across=at_rounding(tol))


def check_rate_slope(report, element: str, runs: dict, problem, f_star: float, slope_max: float = -0.5) -> float:
    """The discrete rate: (1/T) sum Delta_t falls like T^-1 until its floor 2 L lr^2 d; the fitted slope
    over the last decade of T before the floor must be <= -1/2 for every lr (no decay: 0)."""
    worst = -math.inf
    for lr, tr in runs.items():
        slope, _, _ = measures.rate_slope(tr, lr, problem.L, f_star)
        worst = max(worst, math.inf if math.isnan(slope) else slope)
    report.check(element, f"(1/T) sum Delta_t decays before its floor 2 L lr^2 d, every lr in {tuple(runs)}: fitted slope "
                 f"of log (1/T) sum Delta_t against log T over the last decade before (H_d(t_0) - f*)/T = 10 x the floor "
                 "(max over lr)", worst, "<=", slope_max, fmt=".2f", stable=False,
                 across=Tolerance(1e-6, 0.0, "a least-squares slope of float64 averages"))
    return worst


def check_frank_wolfe(report, element: str, name: str, xs, grads, ball: str, lam: float, lr: float, tol: float,
                      why: str) -> float:
    """Lion-K without momentum against Frank-Wolfe with a linprog oracle, one step from every state."""
    from lionlib.theory.special_cases import frank_wolfe_error

    err = frank_wolfe_error(xs, grads, ball, lam, lr)
    report.check(element, f"{name}: Lion-K step = Frank-Wolfe step with a linprog oracle (scipy HiGHS) from every "
                 "state of the run (max |difference|)", err, "<=", 0.0, stable=False, tol=tol, why=why,
                 across=at_rounding(tol))
    return err


def CHATTER_AT(atol: float) -> Tolerance:  # noqa: N802 - a tolerance factory, named like the constants it makes
    """The cross-CPU promise for a maximum over a chattering run: the maximum moves with the chattering, but
    a value below 0 stays below and one at rounding level stays below `atol`."""
    return Tolerance(0.5, atol, "a maximum over an O(lr)-chattering run, whose steps move with the CPU's SVD kernels: "
                                "promised to 50 %, or to the check's tolerance at rounding level")


# ----------------------------------------------------------------------------------------------
# 06: the radius of shape-scaled Muon.


def check_muon_radius(report, element: str, shape: tuple[int, int], fns, *, lr: float, lam: float, momentum: float,
                      sigma_target: float, sigma_start: float, generator) -> dict:
    """For each `adjust_lr_fn` in `fns`: exact-msign Muon on 1/2 ||X - A||^2 with sigma_max(A) =
    sigma_target * radius (`measures.muon_radius_run`) ends on its radius, |sigma_max(X_T)/radius - 1|
    <= tol, at the first T where what is left of phase 1, (1 - lr lambda)^T gap_0, is tol/10 (so tol
    covers rounding alone); and the monitor's lambda sigma_max / s never exceeds its phase-1 bound.
    tol = `phase1_tolerance(lr, lam, sigma_start)`. Returns {fn: run} with T and the verdicts added."""
    tol, why = phase1_tolerance(lr, lam, sigma_start)
    steps = measures.phase1_steps(abs(sigma_start - 1), lr, lam, tol / 10)
    runs, excess = {}, -math.inf
    for fn in fns:
        run = measures.muon_radius_run(shape, fn, lr=lr, lam=lam, momentum=momentum, sigma_target=sigma_target,
                                       sigma_start=sigma_start, steps=steps, generator=generator)
        run["steps"], run["tol"] = steps, tol
        run["ok"] = report.check(element, f"shape-scaled Muon (exact SVD, adjust_lr_fn={fn!r}, {shape[0]}x{shape[1]}): "
                                 f"|sigma_max(X_T) / radius - 1| with radius = s/lambda = {run['radius']:.4g}, "
                                 f"sigma_max(A) = {sigma_target:g} radius, at T = {steps} where (1 - lr lambda)^T "
                                 "gap_0 = tol/10", abs(run["ratio"][-1] - 1), "<=", 0.0, fmt=".1e", stable=False,
                                 tol=tol, why=why, across=at_rounding(tol))
        excess = max(excess, float((run["constraint"] - run["bound"]).max()))
        runs[fn] = run
    report.check(element, f"shape-scaled Muon (exact SVD, adjust_lr_fn in {tuple(fns)}): the monitor's lambda sigma_max "
                 "/ s never exceeds its phase-1 bound (max over scalings and steps of constraint - bound)", excess,
                 "<=", 0.0, fmt=".1e", stable=False, tol=tol, why=why, across=at_rounding(tol))
    return runs


# ----------------------------------------------------------------------------------------------
# 12: mirror descent and the classical momentum ODEs.


def check_mirror_descent(report, element: str, runs: dict) -> float:
    """runs: name -> (Lion-K x's, mirror-descent x's), from `special_cases.mirror_runs`."""
    from lionlib.theory.special_cases import mirror_error

    err = mirror_error(runs)
    report.check(element, "Lion-K with beta1 = beta2 = beta, lr lambda = 1 is mirror descent on f + psi with mirror map "
                 "psi(x) = K*(lambda x)/lambda and step 1 - beta (every K and beta; max relative |difference| "
                 "to an independent mirror step from K* alone)", err, "<=", 0.0, stable=False, tol=3e-8,
                 why="the reference mirror step is solved numerically (L-BFGS-B, then Newton on K*'s autograd "
                     "Hessian) to ~1e-9 per step: 10x the observed 3e-9",
                 across=Tolerance(0.5, 3e-8, "an iterative solver's stopping point"))
    return err


def identity_relaxed_mirror(report, element: str, K: Kappa, problem, hp, x0, steps: int) -> float:
    """Any betas and lr: Lion-K is a relaxed step toward the mirror image of m~ (true by construction)."""
    from lionlib.theory.special_cases import relaxed_mirror_error

    err = relaxed_mirror_error(K, problem, hp, x0, steps)
    report.identity(element, f"{K.name}, betas ({hp.beta1}, {hp.beta2}), lr lambda = {hp.lr * hp.lam:g}: x_(t+1) = (1 - "
                    "lr lambda) x_t + lr lambda (mirror image of m~_(t+1)) (max relative |difference|)", err, "<=", 0.0,
                    tol=3e-8, why="the numerical mirror step's accuracy, as for the mirror-descent check",
                    across=Tolerance(0.5, 3e-8, "an iterative solver's stopping point"))
    return err


def check_classical(report, element: str, name: str, problem, alpha: float, gamma: float, eps: float, x0,
                    t_end: float, lr: float, n_eval: int = 301):
    """Heavy ball (eps = 0) or Nesterov's high-resolution ODE (eps > 0) against lionlib: the Lion-K ODE
    follows it, lionlib's H is its energy, and `lionlib.LionK` itself converges to it at first order in
    lr. The reference's own energy facts are identities of the textbook method."""
    import numpy as np

    from lionlib.theory.special_cases import classical_run, lionk_optimizer_vs_ode

    run = classical_run(problem, alpha, gamma, eps, x0, t_end, n_eval)
    report.check(element, f"{name}: the Lion-K ODE (K = 1/2||.||^2, lambda = 1e-11) follows the second-order ODE "
                 "solved independently (max |x - x_ref|)", float((run.x_lionk - run.x).abs().max()), "<=", 0.0,
                 stable=False, tol=1e-8, why="two DOP853 solutions at rtol 1e-12 over the run (observed <= 6e-10) and "
                 "lambda = 1e-11 instead of 0: 10x", across=at_rounding(1e-8))
    scale = 1 + float(run.E.abs().max())
    report.check(element, f"{name}: lionlib's H equals the classical energy along the path (max |H - E| / (1 + |E|))",
                 float(((run.H - run.E).abs() / (1 + run.E.abs())).max()), "<=", 0.0, stable=False, tol=1e-9,
                 why="(1/lambda) K*(lambda x) at lambda = 1e-11 rounds at ~1e-11 relative (observed <= 7e-11): 10x",
                 across=at_rounding(1e-9))
    # its own reference: LionK starts at m_0 = 0, so at x'(0) = -eps alpha grad f(x0), not at rest as `run` does
    errs = [lionk_optimizer_vs_ode(problem, alpha, gamma, eps, x0, t_end, h) for h in (lr, lr / 2)]
    report.check(element, f"{name}: lionlib.LionK (K = 1/2||.||^2, betas from PAPER 2.5) is its Euler scheme: the error "
                 f"max_k |x_k - x_ref(k lr)| halves with lr (error at lr/2 over error at lr = {lr:g}; first order: 0.5)",
                 errs[1] / errs[0], "<=", 0.6, fmt=".2f", stable=False,
                 across=Tolerance(1e-6, 0.0, "a ratio of float64 errors of size lr"))
    report.illustration(element, f"{name}: max |x_LionK - x_ref| of lionlib.LionK at lr = {lr:g}", errs[0])
    report.identity(element, f"{name} (the reference): the classical energy never increases (max E(t_(i+1)) - E(t_i), "
                    "relative)", float(torch.diff(run.E).max()) / scale, "<=", 0.0, tol=1e-12,
                    why="the ODE solver's rtol 1e-12 carried into E", across=at_rounding(1e-12))
    ok = np.isfinite(run.dE_fd)
    diss = run.dissipation.numpy()
    report.identity(element, f"{name} (the reference): -dE/dt = classical dissipation (max relative error, finite "
                    "differences)", float(np.max(np.abs(run.dE_fd[ok] - diss[ok]) / (1 + diss[ok]))), "<=", 0.0,
                    tol=1e-7, why="4th-order finite differences with h = 1e-3 (observed <= 1e-8): 10x",
                    across=Tolerance(0.5, 1e-7, "finite differences amplify the solver's last bits"))
    return run, errs
