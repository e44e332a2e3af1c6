"""The statistics of a finding: a mean effect over seeds, its 95 % interval, and the verdict rule.

Kept to one design on purpose: each seed gives one effect (for a paired design, the per-seed
difference treatment - control, so seed-to-seed variation common to both arms cancels), signed so
that the hypothesis predicts a positive effect. The interval is Student's t over those effects; it
assumes the per-seed effects are independent and roughly normal, which is the usual reading of
"n seeds"; with n = 5 it is wide (t = 2.78), and that is the honest width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_SEEDS", "Interval", "t_interval", "verdict", "VERDICTS"]

MIN_SEEDS = 5  # below this a finding is never decided
VERDICTS = ("reproduced", "not reproduced", "inconclusive at this scale")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int
    level: float = 0.95


def t_interval(effects: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of `effects` and its two-sided t interval (needs at least 2 finite effects)."""
    from scipy import stats

    xs = [float(x) for x in effects]
    if len(xs) < 2:
        raise ValueError(f"an interval needs at least 2 effects (one per seed), got {len(xs)}")
    if not all(math.isfinite(x) for x in xs):
        raise ValueError(f"effects must be finite, got {xs}")
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def verdict(interval: Interval, min_seeds: int = MIN_SEEDS) -> str:
    """`reproduced` when the interval lies above 0 (the hypothesis' direction), `not reproduced` when
    it lies below 0 (it excludes that direction), else `inconclusive at this scale`; always
    inconclusive with fewer than `min_seeds` seeds."""
    if interval.n < min_seeds:
        return VERDICTS[2]
    if interval.low > 0:
        return VERDICTS[0]
    if interval.high < 0:
        return VERDICTS[1]
    return VERDICTS[2]
