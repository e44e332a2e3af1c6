"""Lion-K along trajectories: the ODE (Theorem 3.1), the discrete scheme (Theorem 4.1), their link,
and convergence to the constrained minimiser (PAPER.md 4.3, 4.4, 8)."""

import numpy as np
import pytest
import torch

from lionlib import LionK, kappa
from lionlib.theory.dynamics import Quadratic, Wavy, integrate, lion_k_step, simulate
from lionlib.theory.lyapunov import H, DiscreteConstants, Delta, OdeConstants, kkt_score, one_step_change

DT = torch.float64
A = torch.tensor([[1.0, 0.3], [0.3, 2.0]], dtype=DT)
TOY = Quadratic(A, torch.tensor([2.0, -3.0], dtype=DT))

# Smooth K for Theorem 3.1, with ODE constants (weak friction gamma for the last one).
ODE_CASES = {
    "logcosh": (kappa.get("logcosh", delta=0.3), OdeConstants(alpha=1.0, gamma=0.5, eps=1.0, lam=0.8)),
    "relativistic": (kappa.get("relativistic", delta=0.3), OdeConstants(alpha=2.0, gamma=0.3, eps=1.0, lam=0.5)),
    "half_sq_l2": (kappa.get("half_sq_l2"), OdeConstants(alpha=4.0, gamma=0.1, eps=0.05, lam=0.2)),
}


@pytest.fixture(scope="module", params=list(ODE_CASES))
def ode_run(request):
    K, c = ODE_CASES[request.param]
    return K, c, integrate(K, TOY, c, [0.3, -0.4], 20.0, n_eval=81)


def test_dH_dt_is_minus_Delta_along_the_solution(ode_run):
    """4th-order central differences of H on the dense solution match -Delta to ~1e-8 (h^4 + solver error)."""
    K, c, tr = ode_run
    h = 2e-3

    def H_at(t):
        x, m = tr.state(t)
        return float(H(K, c, x, m, TOY.f(x)))

    for t, delta in zip(tr.t[1:-1], tr.Delta[1:-1].tolist()):
        dH = (-H_at(t + 2 * h) + 8 * H_at(t + h) - 8 * H_at(t - h) + H_at(t - 2 * h)) / (12 * h)
        assert dH == pytest.approx(-delta, abs=1e-7 * (1 + abs(delta)))


def test_H_decrease_is_the_integral_of_Delta(ode_run):
    """H(0) - H(T) = int_0^T Delta dt, by 6-point Gauss-Legendre on each solver step (where the
    dense output is one polynomial), to ~solver tolerance."""
    K, c, tr = ode_run
    nodes, weights = np.polynomial.legendre.leggauss(6)
    integral = 0.0
    for a, b in zip(tr.sol.ts[:-1], tr.sol.ts[1:]):
        for node, w in zip(nodes, weights):
            x, m = tr.state(0.5 * (a + b) + 0.5 * (b - a) * node)
            integral += 0.5 * (b - a) * w * float(Delta(K, c, x, m, TOY.grad(x)))
    assert float(tr.H[0] - tr.H[-1]) == pytest.approx(integral, rel=1e-8)


def test_H_never_increases_while_f_does(ode_run):
    K, c, tr = ode_run
    assert torch.isfinite(tr.H).all()
    assert float(torch.diff(tr.H).max()) <= 1e-9
    assert float(tr.H[0] - tr.H[-1]) > 0.1
    if K.name == "half_sq_l2":  # weak friction: the momentum overshoots, f is not monotone
        assert float(torch.diff(tr.f).max()) > 0.1


def test_ode_is_the_small_lr_limit_of_the_discrete_scheme():
    """Fixed ODE constants, lr -> 0 (beta1 fixed, beta2 = 1 - gamma lr): first-order convergence."""
    K, c = ODE_CASES["logcosh"]
    c = OdeConstants(alpha=c.gamma, gamma=c.gamma, eps=c.eps, lam=c.lam)  # the discrete scheme has alpha == gamma
    T, x0 = 4.0, torch.tensor([0.3, -0.4], dtype=DT)
    x_ode = integrate(K, TOY, c, x0, T, n_eval=2).x[-1]
    errs = []
    for lr in [2e-2, 1e-2, 5e-3]:
        tr = simulate(K, TOY, c.to_discrete(lr), x0, round(T / lr))
        errs.append(float((tr.x[-1] - x_ode).norm()))
    assert errs[-1] < 1e-2
    for coarse, fine in zip(errs, errs[1:]):
        assert 0.4 < fine / coarse < 0.6  # error proportional to lr


@pytest.mark.parametrize("name", ["l1", "lp", "logcosh", "linf", "logsumexp", "nuclear"])
@pytest.mark.parametrize("implicit", [False, True])
def test_simulator_matches_the_real_optimizer(name, implicit):
    """dynamics.lion_k_step (paper convention) == lionlib.LionK (PyTorch convention, m = -exp_avg)."""
    K = kappa.get(name, **({"p": 1.5} if name == "lp" else {}))
    gen = torch.Generator().manual_seed(0)
    shape = (3, 2) if name == "nuclear" else (4,)
    x = torch.randn(shape, dtype=DT, generator=gen)
    p = torch.nn.Parameter(x.clone())
    opt = LionK([p], kappa=K, lr=0.05, betas=(0.8, 0.95), weight_decay=0.7, implicit_decay=implicit)
    m = torch.zeros_like(x)
    for _ in range(20):
        g = torch.randn(shape, dtype=DT, generator=gen)
        p.grad = g.clone()
        opt.step()
        x, m, _ = lion_k_step(K, x, m, g, 0.05, 0.8, 0.95, 0.7, implicit)
        torch.testing.assert_close(p.detach(), x, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(-opt.state[p]["exp_avg"], m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["l1", "linf", "logcosh", "huber", "lp"])
@pytest.mark.parametrize("problem", [TOY, Wavy(torch.tensor([2.0, -3.0], dtype=DT))], ids=["quadratic", "wavy"])
def test_discrete_lyapunov_along_trajectories(name, problem):
    """Implicit scheme, beta2 >= beta1, after phase 1: D_t <= 0 and H_d(t+1) - H_d(t) <= (L/2)||dx||^2."""
    K = kappa.get(name, **({"p": 1.5} if name == "lp" else {}))
    hp = DiscreteConstants(lr=0.02, beta1=0.9, beta2=0.99, weight_decay=1.0)
    tr = simulate(K, problem, hp, [0.2, 0.1], 600, implicit=True)
    assert torch.isfinite(tr.H).all()  # started feasible, stays feasible
    scale = 1 + tr.H.abs().max()
    assert float(tr.D.max()) <= 1e-12 * scale
    assert float((torch.diff(tr.H) - tr.remainder_bound).max()) <= 1e-12 * scale
    assert float(tr.D.min()) < -1e-4  # the bound is not vacuous: H_d does decrease
    for t in (0, 50, 599):  # the simulator's D_t (from per-state values) is lyapunov.one_step_change
        D = one_step_change(K, hp, tr.x[t], tr.m[t], tr.x[t + 1], tr.m[t + 1], tr.grad[t])
        assert float(D) == pytest.approx(float(tr.D[t]), abs=1e-12 * float(scale))
    if isinstance(problem, Quadratic):  # the remainder is exactly 1/2 dx^T A dx
        dx = torch.diff(tr.x, dim=0)
        torch.testing.assert_close(torch.diff(tr.H) - tr.D, 0.5 * ((dx @ A) * dx).sum(1), rtol=0, atol=1e-12)


def test_lion_converges_to_the_clipped_optimum():
    """f = 1/2||x - c||^2: Lion ends at clip(c, -1/lambda, 1/lambda) up to O(lr), S(x) -> 0 up to O(lr)."""
    K, lam = kappa.get("l1"), 1.0
    q = Quadratic.isotropic([2.0, -3.0, 0.3])  # the last coordinate's optimum is inside the box
    x_star = q.box_minimiser(lam)
    for lr in [0.02, 0.005]:
        tr = simulate(K, q, DiscreteConstants(lr, 0.9, 0.99, lam), [-3.0, 4.0, 0.0], round(25 / lr))
        tail = tr.x[-round(3 / lr):]
        err = float((tail - x_star).abs().max())
        kkt = max(float(kkt_score(K, x, q.grad(x), lam)) for x in tail)
        assert err <= 2 * lr and kkt <= 4 * lr
        # Active constraints: no O(lr) floor, x_i -> +-1/lambda geometrically like (1 - lr lambda)^t.
        assert float((tail[:, :2] - x_star[:2]).abs().max()) <= 1e-8
    # The O(lr) floor is real: the interior coordinate keeps oscillating with amplitude ~ lr.
    assert err > lr / 10
    # The same through the real optimizer (PyTorch convention; p is x, grads are +grad f).
    p = torch.nn.Parameter(torch.tensor([-3.0, 4.0, 0.0], dtype=DT))
    opt = LionK([p], kappa="l1", lr=0.02, betas=(0.9, 0.99), weight_decay=lam)
    for _ in range(1250):
        p.grad = q.grad(p.detach())
        opt.step()
    assert float((p.detach() - x_star).abs().max()) <= 2 * 0.02
    assert float(kkt_score(K, p.detach(), q.grad(p.detach()), lam)) <= 4 * 0.02


@pytest.mark.parametrize("name", ["l1", "l2", "linf", "half_sq_l2", "huber", "logcosh", "l1_plus_sq_l2", "logsumexp"])
def test_lion_k_converges_to_the_regularised_minimiser(name):
    """Every K: the limit is argmin f + (1/lambda) K*(lambda x) (PAPER 7.3); exact forms where known."""
    K, lam = kappa.get(name), 1.0
    x_star = TOY.regularised_minimiser(K, lam)
    tr = simulate(K, TOY, DiscreteConstants(0.01, 0.9, 0.99, lam), [-3.0, 4.0], 2000)
    assert float((tr.x[-200:] - x_star).abs().max()) <= 0.03
    assert float(kkt_score(K, tr.x[-1], TOY.grad(tr.x[-1]), lam)) <= 0.02


def test_regularised_minimiser_matches_closed_forms():
    q = Quadratic.isotropic([2.0, -3.0])
    lam = 0.8
    torch.testing.assert_close(q.regularised_minimiser(kappa.get("l1"), lam), q.box_minimiser(lam), atol=1e-7, rtol=0)
    torch.testing.assert_close(q.regularised_minimiser(kappa.get("l2"), lam), q.c / (lam * q.c.norm()), atol=1e-7, rtol=0)
    torch.testing.assert_close(q.regularised_minimiser(kappa.get("half_sq_l2"), lam), q.c / (1 + lam), atol=1e-7, rtol=0)
    with pytest.raises(ValueError, match="diagonal"):
        TOY.box_minimiser(lam)
