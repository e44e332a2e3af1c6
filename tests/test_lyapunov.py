"""The Lyapunov identities of PAPER.md 4.3-4.4 on random states, for every K of the registry.

States are drawn with lambda x inside dom K* (`random_dual_point`), as both theorems assume after
phase 1.
"""

import math

import numpy as np
import pytest
import torch

from lionlib import kappa
from lionlib.theory.dynamics import Quadratic, lion_k_step, random_dual_point
from lionlib.theory.lyapunov import (DiscreteConstants, OdeConstants, H, Delta, coupling, H_d, kkt_score, objective,
                              ode_velocity, one_step_change, phase1_factor)

DT = torch.float64
SMOOTH = ["logcosh", "relativistic", "relativistic_norm", "half_sq_l2", "huber", "logsumexp"]
ALL = kappa.names()


def shape_for(K):
    return (3, 2) if K.name == "nuclear" else (3,)


def log_uniform(gen, lo, hi):
    return float(10 ** (lo + (hi - lo) * torch.rand(1, generator=gen, dtype=DT)))


# ----------------------------------------------------------------------------------------------
# Converters (PAPER 2.5).


def test_converters_round_trip_and_mapping():
    for lr, b1, b2, lam in [(1e-2, 0.9, 0.99, 1.0), (3e-4, 0.95, 0.98, 0.1), (0.1, 0.0, 0.5, 2.0)]:
        hp = DiscreteConstants(lr, b1, b2, lam)
        c = hp.to_ode()
        assert c.alpha == c.gamma == pytest.approx((1 - b2) / lr, rel=1e-14)
        assert c.eps * c.gamma == pytest.approx(1 - b1, rel=1e-14)  # eps*gamma <= 1 automatically
        back = c.to_discrete(lr)
        assert (back.beta1, back.beta2, back.weight_decay) == pytest.approx((b1, b2, lam), rel=1e-12, abs=1e-15)
        # The discrete coefficient is the continuous one divided by alpha (PAPER 4.4).
        assert hp.C_d == pytest.approx(c.C / c.alpha, rel=1e-13)
    c = OdeConstants(alpha=2.0, gamma=2.0, eps=0.3, lam=0.5)
    again = c.to_discrete(1e-3).to_ode()
    assert (again.alpha, again.gamma, again.eps, again.lam) == pytest.approx((2.0, 2.0, 0.3, 0.5), rel=1e-12)
    with pytest.raises(ValueError, match="alpha == gamma"):
        OdeConstants(alpha=1.0, gamma=2.0, eps=0.1, lam=1.0).to_discrete(1e-3)
    with pytest.raises(ValueError, match="beta2"):
        DiscreteConstants(1e-3, 0.9, 1.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Continuous time (Theorem 3.1).


def random_ode_state(K, gen):
    c = OdeConstants(alpha=log_uniform(gen, -1, 0.5), gamma=log_uniform(gen, -1, 0.5), eps=0.0,
                     lam=log_uniform(gen, -1, 0.5))
    c = OdeConstants(c.alpha, c.gamma, float(torch.rand(1, generator=gen)) / c.gamma, c.lam)  # eps*gamma <= 1
    Q = torch.randn(3, 3, dtype=DT, generator=gen)
    problem = Quadratic(Q @ Q.T + 0.1 * torch.eye(3, dtype=DT), 2 * torch.randn(3, dtype=DT, generator=gen))
    x = random_dual_point(K, (3,), gen) / c.lam
    m = 2 * torch.randn(3, dtype=DT, generator=gen)
    return c, problem, x, m


def dH_dt(K, c, problem, x, m, coefficient=None):
    """d/dt H(x(t), m(t)) = <grad H, velocity> by autograd; `coefficient` replaces C (counter-checks)."""
    x, m = x.clone().requires_grad_(), m.clone().requires_grad_()
    if coefficient is None:
        h = H(K, c, x, m, problem.f(x))
    else:
        h = objective(K, problem.f(x), x, c.lam, c.alpha, c.gamma) + coefficient * coupling(K, x, m, c.lam)
    gx, gm = torch.autograd.grad(h, (x, m))
    dx, dm, _ = ode_velocity(K, c, x.detach(), m.detach(), problem.grad(x.detach()))
    return (gx * dx).sum() + (gm * dm).sum()


@pytest.mark.parametrize("name", SMOOTH)
def test_dH_dt_equals_minus_Delta(name):
    K, gen = kappa.get(name), torch.Generator().manual_seed(1)
    for _ in range(100):
        c, problem, x, m = random_ode_state(K, gen)
        delta = Delta(K, c, x, m, problem.grad(x))
        assert delta >= 0
        assert float(dH_dt(K, c, problem, x, m) + delta) == pytest.approx(0, abs=1e-11 * (1 + float(delta)))


def test_recollected_coefficient_is_not_a_lyapunov_function():
    """With C = (1 - eps lambda)/(1 + eps lambda) (the warned-about recollection) dH/dt > 0 somewhere."""
    K, gen = kappa.get("logcosh"), torch.Generator().manual_seed(2)
    worst = -math.inf
    for _ in range(300):
        c, problem, x, m = random_ode_state(K, gen)
        wrong = (1 - c.eps * c.lam) / (1 + c.eps * c.lam)
        worst = max(worst, float(dH_dt(K, c, problem, x, m, coefficient=wrong)))
    assert worst > 1e-3


def test_heavy_ball_limit():
    """K = 1/2||.||^2, eps = 0, lambda -> 0: H - (alpha f + 1/2||m||^2) -> 0 (PAPER 4.3)."""
    K, x, m = kappa.get("half_sq_l2"), torch.tensor([0.7, -1.2], dtype=DT), torch.tensor([0.4, 2.0], dtype=DT)
    gaps = []
    for lam in [1e-2, 1e-4, 1e-6]:
        c = OdeConstants(alpha=1.5, gamma=0.7, eps=0.0, lam=lam)
        gaps.append(abs(float(H(K, c, x, m, 3.0)) - (1.5 * 3.0 + 0.5 * float(m @ m))))
    assert gaps[0] > 1e-3 and gaps[2] < 1e-5 and gaps[0] > gaps[1] > gaps[2]


# ----------------------------------------------------------------------------------------------
# Discrete time (Theorem 4.1): implicit scheme, random states.


def worst_one_step_change(name, n, betas, coefficient=None, seed=0):
    """max over random states of D_t / scale, scale = 1 + |<g, dx>| (so the tolerance is relative)."""
    K, gen = kappa.get(name), torch.Generator().manual_seed(seed)
    shape, worst = shape_for(K), -math.inf
    for _ in range(n):
        lam = log_uniform(gen, -1, 0.5)
        b1, b2 = betas(gen)
        hp = DiscreteConstants(min(log_uniform(gen, -3, 0), 0.99 / lam), b1, b2, lam)
        x = random_dual_point(K, shape, gen) / lam
        m = torch.randn(shape, dtype=DT, generator=gen) * log_uniform(gen, -1, 1)
        g = torch.randn(shape, dtype=DT, generator=gen) * log_uniform(gen, -1, 1)
        x1, m1, _ = lion_k_step(K, x, m, g, hp.lr, b1, b2, lam, implicit=True)
        if coefficient is None:
            D = one_step_change(K, hp, x, m, x1, m1, g)
        else:
            C = coefficient(hp)
            D = ((g * (x1 - x)).sum() + (K.conjugate(lam * x1) - K.conjugate(lam * x)) / lam
                 + C * (coupling(K, x1, m1, lam) - coupling(K, x, m, lam)))
        worst = max(worst, float(D) / (1 + float((g * (x1 - x)).sum().abs())))
    return worst


def betas_ordered(gen):  # beta2 >= beta1
    b1 = float(torch.rand(1, generator=gen))
    return b1, b1 + (1 - b1) * float(torch.rand(1, generator=gen))


def betas_reversed(gen):  # beta2 < beta1
    b2 = float(torch.rand(1, generator=gen))
    return b2 + (1 - b2) * float(torch.rand(1, generator=gen)), b2


@pytest.mark.parametrize("name", ALL)
def test_one_step_change_nonpositive_when_beta2_ge_beta1(name):
    assert worst_one_step_change(name, 300, betas_ordered) <= 1e-12


@pytest.mark.parametrize("name", ["l1", "logcosh", "half_sq_l2", "lp"])
def test_one_step_change_violated_when_beta2_lt_beta1(name):
    assert worst_one_step_change(name, 300, betas_reversed) > 1e-3


def test_coefficient_without_leading_lr_fails():
    """The recollected C_d = beta1/(lr lambda (1-beta1) + 1-beta2) (no leading lr) breaks D_t <= 0."""
    wrong = lambda hp: hp.beta1 / (hp.lr * hp.lam * (1 - hp.beta1) + (1 - hp.beta2))
    assert worst_one_step_change("l1", 300, betas_ordered, coefficient=wrong) > 1e-3


def test_H_d_is_H_over_alpha():
    K, x, m = kappa.get("logcosh"), torch.tensor([0.3, -0.5], dtype=DT), torch.tensor([1.0, 0.2], dtype=DT)
    hp = DiscreteConstants(1e-2, 0.9, 0.99, 1.5)
    c = hp.to_ode()
    assert float(H_d(K, hp, x, m, 0.7)) == pytest.approx(float(H(K, c, x, m, 0.7)) / c.alpha, rel=1e-13)


# ----------------------------------------------------------------------------------------------
# KKT score and phase-1 factors.


def test_kkt_score_zero_exactly_at_the_constrained_minimiser():
    K, lam = kappa.get("l1"), 1.0
    q = Quadratic.isotropic([2.0, -3.0, 0.4])
    x_star = q.box_minimiser(lam)
    assert torch.equal(x_star, torch.tensor([1.0, -1.0, 0.4], dtype=DT))
    assert float(kkt_score(K, x_star, q.grad(x_star), lam)) == pytest.approx(0, abs=1e-15)
    # Paper form for a norm: ||grad f||_1 + lambda <x, grad f>; positive at other feasible points.
    x = torch.tensor([0.5, -1.0, 0.4], dtype=DT)
    g = q.grad(x)
    assert float(kkt_score(K, x, g, lam)) == pytest.approx(float(g.abs().sum() + lam * x @ g), rel=1e-14)
    assert float(kkt_score(K, x, g, lam)) > 0.5
    # For a penalty K the score vanishes at argmin f + (1/lambda) K*(lambda x) too: x = c/(1+lambda).
    K2 = kappa.get("half_sq_l2")
    x2 = q.c / (1 + lam)
    assert float(kkt_score(K2, x2, q.grad(x2), lam)) == pytest.approx(0, abs=1e-14)
    assert float(kkt_score(K2, 1.1 * x2, q.grad(1.1 * x2), lam)) > 1e-3


def test_phase1_factors():
    f = phase1_factor(0.01, 2.0, steps=3)
    np.testing.assert_allclose(f, [1, 0.98, 0.98**2, 0.98**3], rtol=1e-15)
    np.testing.assert_allclose(phase1_factor(0.01, 2.0, steps=2, implicit=True), [1, 1 / 1.02, 1 / 1.02**2], rtol=1e-15)
    np.testing.assert_allclose(phase1_factor([0.1, 0.2], 1.0), [1, 0.9, 0.9 * 0.8], rtol=1e-15)
    with pytest.raises(ValueError, match="lr \\* lambda <= 1"):
        phase1_factor(0.6, 2.0, steps=3)
