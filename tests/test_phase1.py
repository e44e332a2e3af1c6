"""Phase 1 (PAPER.md 4.2): dist(lambda x_t, dom K*) <= prod_s (1 - lr_s lambda) dist(lambda x_0, dom K*)
(prod 1/(1 + lr_s lambda) with implicit decay, e^{-lambda t} in continuous time), for EVERY K and ANY
gradient sequence, checked on the real optimizer `lionlib.LionK` and on the simulator.

The gradients are random with scales over six decades, half of the steps adversarial: g = -s x, so
the momentum lines up with x and grad K pushes outward as hard as it can. Then the bound is tight for
norm K (the tests check it is nearly attained, so a looser bound would be caught as well).
"""

import numpy as np
import pytest
import torch

from lionlib import LionK, kappa
from lionlib.theory.dynamics import Quadratic, integrate, simulate
from lionlib.theory.lyapunov import DiscreteConstants, OdeConstants, phase1_distance, phase1_factor, phase1_factor_continuous

DT = torch.float64
LAM = 2.0
STEPS = 150
# Every K whose dom K* is bounded (for half_sq_l2 and l1_plus_sq_l2 it is everything: no phase 1).
KS = [K for K in [kappa.get(n) for n in kappa.names() if n != "lp"] + [kappa.get("lp", p=1.5), kappa.get("lp", p=3.0)]
      if K.domain_distance(torch.full((4, 3), 1e3, dtype=DT)) > 0]
IDS = [K.describe() for K in KS]


class NoLoss:
    """f = 0: with `grad_fn` the simulator gets every gradient from the test."""

    L = 0.0

    def f(self, x):
        return x.new_zeros(())

    def grad(self, x):
        return torch.zeros_like(x)


def shape_for(K):
    return (4, 3) if K.name == "nuclear" else (5,)


def schedule(t):
    """Warm-up then cosine decay: the bound becomes a product of per-step factors."""
    return 0.05 * min(1.0, (t + 1) / 10) * (0.55 + 0.45 * np.cos(np.pi * t / STEPS))


def adversarial_gradient(t, x, gen):
    scale = float(10 ** (6 * torch.rand(1, generator=gen, dtype=DT) - 3))
    if t % 2 == 0:
        return -scale * x  # momentum aligned with x: grad K pushes lambda x outward
    return scale * torch.randn(x.shape, dtype=DT, generator=gen)


def check_bound(dist, factor, tight):
    """dist_t <= factor_t dist_0 at every t (up to rounding), and nearly attained when `tight`."""
    dist, bound = np.asarray(dist, dtype=np.float64), factor * float(dist[0])
    assert dist[0] > 1.0  # started well outside the feasible set
    assert np.all(dist <= bound * (1 + 1e-12) + 1e-12), float(np.max(dist - bound))
    if tight:
        assert np.max(dist[1:] / bound[1:]) > 0.9


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("K", KS, ids=IDS)
def test_phase1_bound_real_optimizer(K, implicit):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape_for(K), dtype=DT, generator=gen) * 5 / LAM
    p = torch.nn.Parameter(x0.clone())
    opt = LionK([p], kappa=K, lr=0.05, betas=(0.9, 0.99), weight_decay=LAM, implicit_decay=implicit)
    dist, lrs = [float(phase1_distance(K, p.detach(), LAM))], []
    for t in range(STEPS):
        lrs.append(schedule(t))
        opt.param_groups[0]["lr"] = lrs[-1]
        p.grad = adversarial_gradient(t, p.detach(), gen)
        opt.step()
        dist.append(float(phase1_distance(K, p.detach(), LAM)))
    check_bound(dist, phase1_factor(lrs, LAM, implicit=implicit), tight=K.is_norm)


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
@pytest.mark.parametrize("K", KS, ids=IDS)
def test_phase1_bound_simulator(K, implicit):
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(shape_for(K), dtype=DT, generator=gen) * 5 / LAM
    tr = simulate(K, NoLoss(), DiscreteConstants(0.05, 0.9, 0.99, LAM), x0, STEPS, implicit=implicit,
                  lr_schedule=schedule, grad_fn=lambda t, x, m: adversarial_gradient(t, x, gen))
    check_bound(tr.dist, phase1_factor(tr.lr.numpy(), LAM, implicit=implicit), tight=K.is_norm)


def test_explicit_bound_fails_for_the_implicit_scheme_and_vice_versa():
    """The two factors differ and each is attained by its own scheme: the tests above can fail."""
    K, gen = kappa.get("l1"), torch.Generator().manual_seed(2)
    x0 = torch.full((3,), 4.0, dtype=DT)
    grad = lambda t, x, m: -x  # adversarial at every step
    hp = DiscreteConstants(0.05, 0.9, 0.99, LAM)
    implicit = simulate(K, NoLoss(), hp, x0, 50, implicit=True, grad_fn=grad).dist.numpy()
    explicit = simulate(K, NoLoss(), hp, x0, 50, implicit=False, grad_fn=grad).dist.numpy()
    assert np.any(implicit > phase1_factor(0.05, LAM, 50) * implicit[0] * 1.01)
    np.testing.assert_allclose(explicit, phase1_factor(0.05, LAM, 50) * explicit[0], rtol=1e-12)
    np.testing.assert_allclose(implicit, phase1_factor(0.05, LAM, 50, implicit=True) * implicit[0], rtol=1e-12)


@pytest.mark.parametrize("K", KS, ids=IDS)
def test_feasible_stays_feasible(K):
    """Once lambda x is in dom K*, it stays there (explicit decay with lr lambda <= 1)."""
    gen = torch.Generator().manual_seed(3)
    p = torch.nn.Parameter(K.grad(torch.randn(shape_for(K), dtype=DT, generator=gen)) / LAM)  # in dom K*/lambda
    opt = LionK([p], kappa=K, lr=0.5 / LAM, betas=(0.9, 0.99), weight_decay=LAM)
    for t in range(40):
        p.grad = adversarial_gradient(t, p.detach(), gen)
        opt.step()
        assert float(phase1_distance(K, p.detach(), LAM)) == 0.0


@pytest.mark.parametrize("name", ["logcosh", "relativistic"])
def test_phase1_continuous_time(name):
    """ODE with a smooth K from outside the box: dist(lambda x_t) <= e^{-lambda t} dist(lambda x_0)."""
    K = kappa.get(name, delta=0.5)
    c = OdeConstants(alpha=1.0, gamma=1.0, eps=0.5, lam=1.5)
    problem = Quadratic.isotropic([3.0, -4.0])  # pulls outward too
    tr = integrate(K, problem, c, [-4.0, 5.0], 4.0, n_eval=201)
    bound = phase1_factor_continuous(tr.t, c.lam) * float(tr.dist[0])
    assert np.all(tr.dist.numpy() <= bound * (1 + 1e-9))
    assert float(tr.dist[-1]) == 0.0  # entered the feasible set
