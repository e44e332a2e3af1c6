"""The independent references of lionlib.theory.references (the special cases of Section 3.1) and the helpers of
agree with closed forms where those exist (so the references are right before they judge the library)."""

import numpy as np
import pytest
import torch

from lionlib import kappa
from lionlib.theory import measures, references, stochastic
from lionlib.theory.dynamics import Quadratic, simulate
from lionlib.theory.lyapunov import DiscreteConstants

DT = torch.float64


def test_lmo_linprog_matches_the_vertices():
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = rng.normal(size=5)
        np.testing.assert_allclose(references.lmo_linprog(g, "linf", 2.0), -2.0 * np.sign(g), atol=1e-12)
        s = np.zeros(5)
        i = np.argmax(np.abs(g))
        s[i] = -2.0 * np.sign(g[i])
        np.testing.assert_allclose(references.lmo_linprog(g, "l1", 2.0), s, atol=1e-12)
    with pytest.raises(ValueError, match="ball"):
        references.lmo_linprog(np.ones(2), "l2", 1.0)


@pytest.mark.parametrize("name", ["logcosh", "relativistic", "half_sq_l2"])
def test_mirror_step_is_grad_K_over_lambda(name):
    K, lam = kappa.get(name), 2.5
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        z = 2 * torch.randn(2, dtype=DT, generator=gen)
        torch.testing.assert_close(references.mirror_step(K, lam, z), K.grad(z) / lam, atol=1e-9, rtol=0)
        x = K.grad(z) / lam  # grad psi(x) = grad K*(lambda x) = z
        torch.testing.assert_close(references.mirror_potential_grad(K, lam, x), z, atol=1e-8, rtol=1e-8)


def test_classical_energy_heavy_ball_is_potential_plus_kinetic():
    q = Quadratic.isotropic((1.0, -2.0))
    x, v = torch.tensor([0.3, 0.4], dtype=DT), torch.tensor([-1.0, 2.0], dtype=DT)
    torch.testing.assert_close(references.classical_energy(q, 2.0, 0.5, 0.0, x, v), 2.0 * q.f(x) + 0.5 * v.square().sum())
    torch.testing.assert_close(references.classical_dissipation(q, 2.0, 0.5, 0.0, x, v), 0.5 * v.square().sum())
    with pytest.raises(ValueError, match="eps"):
        references.classical_energy(q, 2.0, 0.5, 2.0, x, v)


def test_noisy_batch_without_noise_is_simulate():
    q, K = Quadratic.isotropic((0.5, -3.0)), kappa.get("l1")
    X = stochastic.noisy_lion_batch(K, q, (-3.0, 4.0), 200, torch.tensor([0.01, 0.03], dtype=DT), 1.0, (0.9, 0.99),
                                      torch.zeros(2, dtype=DT), [0, 1])
    for j, lr in enumerate((0.01, 0.03)):
        tr = simulate(K, q, DiscreteConstants(lr, 0.9, 0.99, 1.0), (-3.0, 4.0), 200)
        torch.testing.assert_close(X[:, j], tr.x, atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="elementwise"):
        stochastic.noisy_lion_batch(kappa.get("l2"), q, (0.0, 0.0), 1, torch.ones(1), 1.0, (0.9, 0.99),
                                      torch.zeros(1), [0])


def test_entry_prediction_is_the_full_speed_recursion():
    for lam in (0.5, 1.0, 3.0):
        for implicit in (False, True):
            x, t = 4.0, 0
            while x > 1 / lam:
                x = (x - 0.01) / (1 + 0.01 * lam) if implicit else (1 - 0.01 * lam) * x - 0.01
                t += 1
            assert measures.lion_entry_prediction((-0.1, 4.0), 0.01, lam, implicit) == t
    assert measures.entry_step(torch.tensor([1.0, 0.5, 0.0, 0.0])) == 2
    assert measures.entry_step(torch.tensor([1.0, 0.5, 0.1])) is None
