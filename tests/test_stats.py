"""The statistics of `lionlib.companion.stats`, each tested so that a broken version fails: known
values (Holm on textbook p-values), scipy as the reference, and simulation (interval coverage, MDE
power, the intersection-union test's size)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from lionlib.companion import stats

N_SIM = 20_000  # Monte Carlo runs: standard error of a rate near 0.8-0.95 is <= 0.003


def simulate(n, mean, sd=1.0, seed=0):
    return np.random.default_rng(seed).normal(mean, sd, size=(N_SIM, n))


def t_stats(x, bound=0.0):
    n = x.shape[1]
    return (x.mean(1) - bound) / (x.std(1, ddof=1) / math.sqrt(n))


def test_interval_covers_the_true_mean_95_percent_of_the_time():
    """At n = 5 a z interval (1.96 instead of t = 2.78) covers ~88 %: this test tells them apart."""
    x = simulate(5, mean=0.7, sd=2.0)
    covered = 0
    for row in x[:4000]:
        ci = stats.t_interval(row)
        covered += ci.low <= 0.7 <= ci.high
    assert covered / 4000 == pytest.approx(0.95, abs=0.015)


def test_p_greater_matches_scipy_and_the_interval():
    xs = [0.3, -0.1, 0.5, 0.2, 0.4]
    assert stats.p_greater(xs) == pytest.approx(sps.ttest_1samp(xs, 0, alternative="greater").pvalue, rel=1e-12)
    assert stats.p_greater(xs, -0.2) == pytest.approx(sps.ttest_1samp(xs, -0.2, alternative="greater").pvalue, rel=1e-12)
    assert stats.p_less(xs, 0.6) == pytest.approx(sps.ttest_1samp(xs, 0.6, alternative="less").pvalue, rel=1e-12)
    ci = stats.t_interval(xs)  # the one-sided test at 0.025 is the two-sided 95 % interval
    assert stats.p_greater(xs, ci.low - 1e-9) < stats.ALPHA < stats.p_greater(xs, ci.low + 1e-9)
    assert stats.p_greater([1.0, 1.0, 1.0]) == 0.0 and stats.p_greater([0.0, 0.0]) == 1.0


def test_sd_is_the_n_minus_1_sample_sd():
    assert stats.sd([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    with pytest.raises(ValueError, match="at least 2"):
        stats.sd([1.0])


@pytest.mark.parametrize("n", [5, 10])
def test_mde_has_80_percent_power_by_simulation(n):
    """A true effect equal to the MDE is detected 80 % of the time, and the MDE is larger than the
    normal-approximation one (which has too little power at small n)."""
    d = stats.mde(2.0, n)
    rate = (t_stats(simulate(n, d, 2.0, seed=n)) > sps.t.ppf(1 - stats.ALPHA, n - 1)).mean()
    assert rate == pytest.approx(0.80, abs=0.012)
    z = (sps.norm.ppf(1 - stats.ALPHA) + sps.norm.ppf(0.8)) * 2.0 / math.sqrt(n)
    assert d > z * 1.02
    assert stats.mde(0.0, 5) == 0.0 and stats.mde(4.0, 5) == pytest.approx(2 * stats.mde(2.0, 5))


def test_mde_rejects_bad_input():
    with pytest.raises(ValueError, match="pilot SD"):
        stats.mde(float("nan"), 5)
    with pytest.raises(ValueError, match="n >= 2"):
        stats.mde(1.0, 1)


def test_holm_on_known_p_values():
    # sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]) == [0.02] and stats.holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([1.5])


def test_holm_controls_the_family_wise_error_rate():
    """Five true nulls: Holm rejects any of them at most ALPHA of the time; unadjusted ~5x that."""
    x = np.random.default_rng(1).normal(0, 1, size=(4000, 5, 5))
    p = sps.t.sf(x.mean(2) / (x.std(2, ddof=1) / math.sqrt(5)), 4)
    holm_any = np.mean([min(stats.holm(row)) < stats.ALPHA for row in p])
    raw_any = np.mean((p < stats.ALPHA).any(1))
    assert holm_any <= stats.ALPHA + 0.006 and raw_any > 3 * stats.ALPHA


def test_intersection_union_has_size_alpha():
    """One component a true null (mean 0), the other certain: "A and B" is wrongly shown <= ALPHA."""
    a = simulate(5, 0.0, seed=2)
    crit = sps.t.ppf(1 - stats.ALPHA, 4)
    p_a = sps.t.sf(t_stats(a), 4)
    rate = np.mean([stats.intersection_union([pa, 0.0]) < stats.ALPHA for pa in p_a])
    assert rate == pytest.approx((t_stats(a) > crit).mean()) and rate <= stats.ALPHA + 0.004
    assert stats.intersection_union([0.01, 0.2]) == 0.2
    with pytest.raises(ValueError):
        stats.intersection_union([])


def test_non_inferiority_is_a_shifted_one_sided_test():
    """Effects of -0.3 with margin 1 show non-inferiority; with margin 0.1 they do not."""
    xs = [-0.3, -0.2, -0.4, -0.35, -0.25]
    assert stats.p_greater(xs, -1.0) < stats.ALPHA < stats.p_greater(xs, -0.1)


@pytest.mark.parametrize("kw,expected", [
    (dict(p_support=0.001, p_against=0.99, n=5), stats.REPRODUCED),
    (dict(p_support=0.99, p_against=0.001, n=5), stats.NOT_REPRODUCED),
    (dict(p_support=0.2, p_against=0.3, n=5), stats.INCONCLUSIVE),
    (dict(p_support=0.001, p_against=0.001, n=5), stats.NOT_REPRODUCED),  # real, but below the SESOI
    (dict(p_support=0.001, p_against=0.99, n=4), stats.INCONCLUSIVE),  # too few seeds, however clear
    (dict(p_support=0.001, p_against=0.99, n=5, mde=2.0, sesoi=1.0), stats.NOT_TESTABLE),
    (dict(p_support=0.001, p_against=0.99, n=5, mde=0.5, sesoi=1.0), stats.REPRODUCED),
    (dict(p_support=0.001, p_against=0.99, n=5, checks_pass=False), stats.NOT_TESTABLE),
])
def test_decide(kw, expected):
    assert stats.decide(**kw) == expected


def test_decision_words_are_exact():
    assert stats.DECISIONS == ("reproduced", "not reproduced", "inconclusive", "not testable at this scale")
