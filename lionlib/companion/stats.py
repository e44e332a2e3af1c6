"""The statistics of a finding: effects over seeds, their 95 % interval, the tests and the verdict.

One design throughout: each evaluation seed gives one effect (for arms that share seeds, the per-seed
linear contrast of their metrics, e.g. treatment - control, so seed-to-seed variation common to the
arms cancels), signed so that the hypothesis predicts a positive effect. Intervals and p-values are
Student's t over those effects; they assume independent, roughly normal per-seed effects, the usual
reading of "n seeds"; with n = 5 the interval is wide (t = 2.78), and that is the honest width.

The tests are one-sided at `ALPHA` = 0.025, so "the 95 % two-sided interval lies above b" and "the
one-sided p-value for H0: mean <= b is below ALPHA" are the same statement:

- **superiority** (`p_greater(effects, 0)`): the effect is positive;
- **non-inferiority** with margin M (`p_greater(effects, -M)`): the effect is above -M;
- **intersection-union** (`intersection_union`): "A and B" is shown when each is shown at ALPHA; its
  p-value is the largest component p-value, and it needs no multiplicity correction of its own;
- **Holm-Bonferroni** (`holm`) across the primary family controls the family-wise error rate;
- **minimum detectable effect** (`mde`): the smallest true effect the test detects with 80 % power at
  n seeds, from a pilot's SD of the per-seed effects (exact, with the noncentral t).

`decide` turns them into one of `DECISIONS`: "not testable at this scale" when the design cannot
detect the smallest effect of interest (MDE > SESOI) or the regime checks fail, "reproduced" when the
support test rejects and the test against the hypothesis does not, "not reproduced" when the test
against it rejects (for superiority: H0 effect >= SESOI, so a real but smaller-than-interesting effect
is not reproduced), else "inconclusive". The older `verdict`/`VERDICTS` (interval above / below 0)
stay for the notebooks that still use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_SEEDS", "Interval", "t_interval", "verdict", "VERDICTS",
           "ALPHA", "POWER", "REPRODUCED", "NOT_REPRODUCED", "INCONCLUSIVE", "NOT_TESTABLE", "DECISIONS", "RULE",
           "sd", "p_greater", "p_less", "mde", "intersection_union", "holm", "decide"]

MIN_SEEDS = 5  # below this a finding is never decided
VERDICTS = ("reproduced", "not reproduced", "inconclusive at this scale")  # of `verdict` (older rule)

ALPHA = 0.025  # one-sided level of every test: the same decision as a two-sided 95 % interval
POWER = 0.8  # the power at which the minimum detectable effect is stated
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = (
    "reproduced", "not reproduced", "inconclusive", "not testable at this scale")
DECISIONS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)
RULE = ("per-seed effects signed so the hypothesis predicts > 0; one-sided t tests at alpha (the two-sided "
        "1 - 2 alpha interval): fewer than 5 seeds -> inconclusive; a failed regime check or MDE (at the stated "
        "power, from the pilot SD, else the evaluation runs' SD) > SESOI -> not testable at this scale; the test "
        "against the hypothesis (superiority: H0 effect >= SESOI; non-inferiority: H0 effect >= -margin) rejects "
        "-> not reproduced; the test of the hypothesis (H0 effect <= 0, or <= -margin) rejects -> reproduced; "
        "else inconclusive; intersection-union: the largest component p for, twice the smallest against; "
        "Holm-Bonferroni over the primary family for verdict_holm")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95


def _finite(effects: Sequence[float], need: int = 2) -> list[float]:
    xs = [float(x) for x in effects]
    if len(xs) < need:
        raise ValueError(f"need at least {need} effects (one per seed), got {len(xs)}")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"effects must be finite, got {xs}")
    return xs


def sd(effects: Sequence[float]) -> float:
    """The sample standard deviation (n - 1) of the per-seed effects: what a pilot reports for `mde`."""
    xs = _finite(effects)
    mean = sum(xs) / len(xs)
    return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))


def t_interval(effects: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `effects` and its two-sided t interval (needs at least 2 finite effects)."""
    from scipy import stats

    xs = _finite(effects)
    n = len(xs)
    mean = sum(xs) / n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd(xs) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def verdict(interval: Interval, min_seeds: int = MIN_SEEDS) -> str:
    """`reproduced` when the interval lies above 0 (the hypothesis' direction), `not reproduced` when
    it lies below 0 (it excludes that direction), else `inconclusive at this scale`; always
    inconclusive with fewer than `min_seeds` seeds. (The older rule; `decide` is the protocols' rule.)"""
    if interval.n < min_seeds:
        return VERDICTS[2]
    if interval.low > 0:
        return VERDICTS[0]
    if interval.high < 0:
        return VERDICTS[1]
    return VERDICTS[2]


def p_greater(effects: Sequence[float], bound: float = 0.0) -> float:
    """One-sided t-test p-value of H0: mean <= `bound` against mean > `bound`. With zero spread the
    data are decisive: 0 when every effect is above `bound`, else 1."""
    from scipy import stats

    xs = _finite(effects)
    n, mean, s = len(xs), sum(xs) / len(xs), sd(xs)
    if s == 0:
        return 0.0 if mean > bound else 1.0
    return float(stats.t.sf((mean - bound) / (s / math.sqrt(n)), n - 1))


def p_less(effects: Sequence[float], bound: float) -> float:
    """One-sided t-test p-value of H0: mean >= `bound` against mean < `bound`."""
    return p_greater([-float(x) for x in effects], -bound)


def mde(sd_pilot: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable effect of the one-sided one-sample (paired) t-test at level `alpha`
    with `n` seeds: the true mean effect that it detects with probability `power` when the per-seed
    effects have standard deviation `sd_pilot`. Exact: solves 1 - F_nct(t_crit; n - 1, d sqrt(n) / sd)
    = power for the standardised effect d. About (t_{1-alpha} + t_power) sd / sqrt(n); 1.66 sd at n = 5."""
    from scipy import optimize, stats

    if not (sd_pilot >= 0 and math.isfinite(sd_pilot)):
        raise ValueError(f"the pilot SD must be a finite number >= 0, got {sd_pilot}")
    if n < 2:
        raise ValueError(f"an MDE needs n >= 2 seeds, got {n}")
    if sd_pilot == 0:
        return 0.0
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha, df))

    def shortfall(d: float) -> float:
        return float(stats.nct.sf(crit, df, d * math.sqrt(n))) - power

    hi = 4.0 * (crit + float(stats.norm.ppf(power)) + 1.0) / math.sqrt(n)
    while shortfall(hi) < 0:
        hi *= 2
    return float(optimize.brentq(shortfall, 0.0, hi, xtol=1e-12)) * sd_pilot  # d is in units of the SD


def intersection_union(p_values: Sequence[float]) -> float:
    """p-value of "every component holds" from the components' p-values: the largest. Rejecting at
    alpha when each component rejects at alpha has size <= alpha (Berger 1982)."""
    ps = [float(p) for p in p_values]
    if not ps or not all(0 <= p <= 1 for p in ps):
        raise ValueError(f"p-values must be a non-empty list of numbers in [0, 1], got {ps}")
    return max(ps)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given: the k-th smallest of m is multiplied
    by m - k + 1, made non-decreasing along that order and capped at 1. Rejecting where the adjusted
    p-value is below alpha controls the family-wise error rate at alpha."""
    ps = [float(p) for p in p_values]
    if not all(0 <= p <= 1 for p in ps):
        raise ValueError(f"p-values must be numbers in [0, 1], got {ps}")
    m, adjusted, running = len(ps), [0.0] * len(ps), 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: ps[i])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def decide(p_support: float, p_against: float, *, n: int, mde: float | None = None, sesoi: float | None = None,
           checks_pass: bool = True, min_seeds: int = MIN_SEEDS, alpha: float = ALPHA) -> str:
    """The verdict of one finding, from the p-value of the test of the hypothesis (`p_support`) and of
    the test against it (`p_against`), in this order: fewer than `min_seeds` seeds -> inconclusive;
    a failed regime check or MDE > SESOI -> not testable at this scale; p_against < alpha -> not
    reproduced; p_support < alpha -> reproduced; else inconclusive. The test against a superiority
    hypothesis is H0: effect >= SESOI, so when both reject (the interval lies between 0 and the SESOI)
    the effect is real but smaller than the smallest of interest, and the verdict is not reproduced."""
    if n < min_seeds:
        return INCONCLUSIVE
    if not checks_pass or (mde is not None and sesoi is not None and mde > sesoi):
        return NOT_TESTABLE
    if p_against < alpha:
        return NOT_REPRODUCED
    if p_support < alpha:
        return REPRODUCED
    return INCONCLUSIVE
