"""The checks and findings of `14_cautious`: the cautious options of Lion and Muon against the box and
the spectral ball of the Lyapunov view (runs and measures in `lionlib.theory.cautious`).

Checks, where the maths decides (`tests/test_claims_can_fail.py` breaks each):

- `check_phase1_radius`: dist(lambda x_t, ball of radius s) <= (1 - lr lambda)^t dist_0 for a run whose
  directions satisfy ||u_t|| <= s (s = 1: plain Lion / exact-SVD Muon, the control; s = numel:
  C-Lion). Slack: `theory_checks.phase1_tolerance`. With s measured from the same iterates (C-Muon's
  max_t ||u_t||_op) the bound holds for any iterates: `identity_phase1_radius` records it as an identity.
- `check_leaves`: a run of cautious weight decay that starts inside the box leaves it (a
  counter-example to invariance: nothing pulls back the coordinates u pushes outward).

Findings, where it does not (`finding`): per-seed effects, their 95 % interval and `stats.decide`'s
verdict against a smallest effect of interest fixed in the notebook before the runs (`DECISION_RULE`).
"""

from __future__ import annotations

from typing import Sequence

from lionlib.companion.claims import Protocol
from lionlib.companion.theory_checks import at_rounding, phase1_tolerance
from lionlib.theory import measures

__all__ = ["DECISION_RULE", "check_phase1_radius", "identity_phase1_radius", "check_leaves", "protocol", "finding"]

DECISION_RULE = ("per-seed effects signed so the hypothesis predicts > 0; one-sided t tests at alpha = 0.025 (the "
                 "two-sided 95 % interval), MDE at 80 % power from the effects' SD (lionlib.companion.stats.decide): "
                 "fewer than 5 seeds -> inconclusive; MDE > SESOI -> not testable at this scale; superiority: "
                 "effect < SESOI shown -> not reproduced, effect > 0 shown -> reproduced; non-inferiority (margin = "
                 "SESOI): effect < -margin shown -> not reproduced, effect > -margin shown -> reproduced; else "
                 "inconclusive")


def check_phase1_radius(report, element: str, claim: str, dists: Sequence, lr: float, lam: float, radius: float) -> bool:
    """dists: per run, max(lambda ||x_t|| - s, 0) (the ball of radius s the directions allow); the bound
    of PAPER 4.2 at every step. `radius`: the largest lambda ||x|| of the runs (for the rounding slack)."""
    tol, why = phase1_tolerance(lr, lam, radius)
    return report.check(element, claim + " (max_t dist_t - bound_t)", measures.phase1_excess(dists, lr, lam),
                        "<=", 0.0, fmt=".1e", stable=False, tol=tol, why=why, across=at_rounding(tol))


def identity_phase1_radius(report, element: str, claim: str, dists: Sequence, lr: float, lam: float,
                           radius: float) -> bool:
    """As `check_phase1_radius`, for a radius s measured from the same iterates (C-Muon's max_t ||u_t||_op
    with u_t recovered from x_t and x_{t+1}): true of any iterates, so an identity, never a check."""
    tol, why = phase1_tolerance(lr, lam, radius)
    return report.identity(element, claim + " (max_t dist_t - bound_t)", measures.phase1_excess(dists, lr, lam),
                           "<=", 0.0, fmt=".1e", tol=tol, why=why, across=at_rounding(tol))


def check_leaves(report, element: str, claim: str, dist, lr: float, lam: float, radius: float) -> bool:
    """A run starting inside (dist_0 = 0) has max_t dist_t above phase 1's rounding: it left."""
    tol, why = phase1_tolerance(lr, lam, radius)
    if float(dist[0]) != 0.0:
        raise ValueError(f"check_leaves needs a run starting inside the set (dist_0 = 0), got {float(dist[0])}")
    return report.check(element, claim + " (max_t dist_t)", float(max(dist)), ">", tol, fmt=".1e", stable=False,
                        across=at_rounding(tol))


def protocol(hypothesis: str, metric: str, seeds, source: str, choices: str) -> Protocol:
    """A paired protocol of this notebook with `DECISION_RULE`."""
    return Protocol(hypothesis=hypothesis, metric=metric, seeds=tuple(seeds), design="paired", source=source,
                    choices=choices, decision_rule=DECISION_RULE)


def finding(report, element: str, claim: str, effects: Sequence[float], protocol: Protocol, sesoi: float,
            test: str = "superiority") -> str:
    """Record the finding with its SESOI (or non-inferiority margin) stated in the claim."""
    words = "SESOI" if test == "superiority" else "non-inferiority margin"
    return report.finding(element, f"{claim} ({words} {sesoi:g})", effects, protocol=protocol, sesoi=sesoi, test=test)
