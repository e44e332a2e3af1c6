"""Every check of the theory notebooks can fail: break the maths on purpose and the same check
function the notebook calls reports FAIL.

Each test first runs the check on the correct maths (it must PASS, so the failure below is caused by
the break and not by the setup), then applies one break with monkeypatch and runs it again:

- `coef_discrete` / `coef_continuous`: the Lyapunov coefficient C_d without its leading lr, and C as
  the recollected (1 - eps lambda)/(1 + eps lambda) (PAPER.md 4.3-4.4 warn about both);
- `swap_betas`: beta1 and beta2 swapped in the update (the momentum that is stored vs the one used);
- `flip_grad`: the sign convention of grad K (grad K(-z) instead of grad K(z));
- `explicit_for_implicit`: the update applies explicit decay where the theorem's implicit scheme is asked.

The sizes are small (a few hundred steps and states): the breaks change the checked quantities by
orders of magnitude, not at the tolerance's edge.
"""

import pytest
import torch

from lionlib import LionK, kappa
from lionlib.companion.report import Report
from lionlib.theory import claims, claims_extra, dynamics
from lionlib.theory.dynamics import Quadratic, Wavy, integrate, simulate
from lionlib.theory.lyapunov import DiscreteConstants, OdeConstants

DT = torch.float64
QUAD = Quadratic.isotropic((2.0, -3.0))
SKEW = Quadratic(torch.tensor([[1.0, 0.3], [0.3, 2.0]], dtype=DT), torch.tensor([2.0, -3.0], dtype=DT))


@pytest.fixture
def report(tmp_path):
    return Report("test", out_dir=tmp_path)


# ----------------------------------------------------------------------------------------------
# The breaks.


def coef_discrete(mp):
    mp.setattr(DiscreteConstants, "C_d", property(lambda h: h.beta1 / (h.lr * h.lam * (1 - h.beta1) + 1 - h.beta2)))


def coef_continuous(mp):
    mp.setattr(OdeConstants, "C", property(lambda c: (1 - c.eps * c.lam) / (1 + c.eps * c.lam)))


def swap_betas(mp):
    step = dynamics.lion_k_step
    mp.setattr(dynamics, "lion_k_step", lambda K, x, m, g, lr, b1, b2, lam, implicit=False:
               step(K, x, m, g, lr, b2, b1, lam, implicit))


def explicit_for_implicit(mp):
    step = dynamics.lion_k_step
    mp.setattr(dynamics, "lion_k_step", lambda K, x, m, g, lr, b1, b2, lam, implicit=False:
               step(K, x, m, g, lr, b1, b2, lam, False))


def flip_grad(mp, *classes):
    for cls in classes:
        grad = cls.grad
        mp.setattr(cls, "grad", lambda self, x, grad=grad: grad(self, -x))


def passes_then_fails(monkeypatch, check, *breaks):
    """check() -> bool with the true maths, then with the breaks applied."""
    assert check(), "the check must pass before the maths is broken"
    with monkeypatch.context() as mp:
        for b in breaks:
            b(mp)
        assert not check(), "the check still passes with the maths broken"


# ----------------------------------------------------------------------------------------------
# 01_box_constraint (Figure 1) and 03_discrete_lyapunov (Theorem 4.1, B.9).


def test_01_entry_step_fails_with_flipped_sign(report, monkeypatch):
    def check():
        tr = simulate(kappa.get("l1"), QUAD, DiscreteConstants(0.01, 0.9, 0.99, 1.0), (-3.0, 4.0), 300)
        return claims.check_entry_step(report, "Figure 1", tr, (-3.0, 4.0), 0.01, 1.0)

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.L1))


def test_11_entry_step_tells_the_decay_schemes_apart(report, monkeypatch):
    def check():
        tr = simulate(kappa.get("l1"), QUAD, DiscreteConstants(0.01, 0.9, 0.99, 1.0), (-3.0, 4.0), 300, implicit=True)
        return claims.check_entry_step(report, "Figure 1", tr, (-3.0, 4.0), 0.01, 1.0, implicit=True)

    passes_then_fails(monkeypatch, check, explicit_for_implicit)


@pytest.mark.parametrize("brk", [explicit_for_implicit, swap_betas, coef_discrete], ids=["explicit", "swap", "coef"])
def test_01_03_random_states_fail(report, monkeypatch, brk):
    """The one-step inequality of Theorem 4.1 on random states (01 with lr lambda >= 0.5, 03 with any)."""
    def check():
        gen = torch.Generator().manual_seed(0)
        return claims.check_random_states(report, "Theorem 4.1", "no violation", kappa.get("l1"), 600, gen,
                                          lr_lam_min=0.5 if brk is explicit_for_implicit else 1e-3)

    passes_then_fails(monkeypatch, check, brk)


@pytest.mark.parametrize("brk", [swap_betas, coef_discrete], ids=["swap", "coef"])
def test_06_muon_random_states_fail(report, monkeypatch, brk):
    """06_muon: Theorem 4.1 with K = the nuclear norm (Muon) on random matrix states."""
    def check():
        return claims.check_random_states(report, "Muon note", "no violation", kappa.get("nuclear"), 200,
                                          torch.Generator().manual_seed(0), shape=(3, 2))

    passes_then_fails(monkeypatch, check, brk)


# ----------------------------------------------------------------------------------------------
# 02_continuous_lyapunov (Theorem 3.1).


@pytest.mark.parametrize("brk", [coef_continuous, lambda mp: flip_grad(mp, kappa.LogCosh)], ids=["coef", "flip"])
def test_02_dH_equals_minus_Delta_fails(report, monkeypatch, brk):
    c = OdeConstants(alpha=2.0, gamma=0.2, eps=0.05, lam=0.8)

    def check():
        K = kappa.get("logcosh", delta=0.3)
        runs = {"logcosh": integrate(K, SKEW, c, (3.5, 3.5), 6.0, n_eval=61)}
        return claims.check_dH_equals_minus_Delta(report, "Theorem 3.1", "dH/dt = -Delta", {"logcosh": K}, c, runs,
                                                  SKEW)

    passes_then_fails(monkeypatch, check, brk)


# ----------------------------------------------------------------------------------------------
# 04_lionk_family (Table 2).


def test_04_fenchel_young_fails_with_flipped_sign(report, monkeypatch):
    Ks = [kappa.get("lp", p=1.5) if n == "lp" else kappa.get(n) for n in kappa.names()]

    def check():
        return claims.check_fenchel_young(report, "Table 2", Ks, 20, torch.Generator().manual_seed(0))

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, *{type(K) for K in Ks}))


# ----------------------------------------------------------------------------------------------
# 05_connections (Frank-Wolfe against a linprog oracle).


@pytest.mark.parametrize("name, ball, cls", [("l1", "linf", kappa.L1), ("linf", "l1", kappa.LInf)])
def test_05_frank_wolfe_fails_with_flipped_sign(report, monkeypatch, name, ball, cls):
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(32, 6, generator=gen, dtype=DT)
    b = A @ (3 * torch.randn(6, generator=gen, dtype=DT))

    def check():
        x = torch.nn.Parameter(torch.zeros(6, dtype=DT))
        opt = LionK([x], kappa.get(name), lr=0.02, betas=(0.0, 0.0), weight_decay=1.0, foreach=False)
        xs, gs = [x.detach().clone()], []
        for _ in range(40):
            opt.zero_grad()
            (0.5 * (A @ x - b).square().sum() / 32).backward()
            gs.append(x.grad.detach().clone())
            opt.step()
            xs.append(x.detach().clone())
        err = claims_extra.check_frank_wolfe(report, "Section 3.1", name, torch.stack(xs), torch.stack(gs), ball, 1.0,
                                             0.02)
        return err <= 1e-12

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, cls))


# ----------------------------------------------------------------------------------------------
# 12_mirror_classical (mirror descent, heavy ball and Nesterov).


def test_12_mirror_descent_fails_with_flipped_sign(report, monkeypatch):
    def check():
        runs = {("logcosh", b): claims_extra.mirror_runs(kappa.get("logcosh"), SKEW, 2.5, b, (0.3, -0.2), 3)
                for b in (0.0, 0.9)}
        return claims_extra.check_mirror_descent(report, "Section 3.1", runs) <= 1e-7

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.LogCosh))


def test_12_nesterov_energy_fails_with_wrong_coefficient(report, monkeypatch):
    wavy = Wavy(torch.tensor([2.0, -3.0], dtype=DT), 0.5, 3.0)

    def check():
        claims_extra.check_classical_ode(report, "Section 3.1", "Nesterov", wavy, 2.0, 0.3, 0.5, (3.5, 3.5), 4.0,
                                         n_eval=41)
        return all(c.verdict for c in report.claims.values())

    passes_then_fails(monkeypatch, check, coef_continuous)


# ----------------------------------------------------------------------------------------------
# 13_stochastic_rate (the summed-form rate).


def test_13_summed_rate_fails_with_flipped_sign(report, monkeypatch):
    """The summed form is a loose bound: a wrong coefficient, swapped betas or explicit decay leave it
    true on these runs (it is implied by the one-step inequality, whose own checks catch those); a
    wrong sign of grad K keeps Lion out of the box and the check fails (nothing after entry)."""
    problem = Quadratic.isotropic((0.5, -3.0))

    def check():
        runs = {lr: simulate(kappa.get("l1"), problem, DiscreteConstants(lr, 0.9, 0.99, 1.0), (-3.0, 4.0), 600,
                             implicit=True) for lr in (0.01, 0.03)}
        f_star = float(problem.f(problem.box_minimiser(1.0)))
        return claims_extra.check_summed_rate(report, "Theorem 4.1 (rate)", runs, problem, 1.0, f_star) <= 0

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.L1))
