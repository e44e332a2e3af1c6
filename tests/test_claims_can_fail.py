"""Every check of the theory notebooks can fail: break the maths on purpose and the same check
function the notebook calls reports FAIL.

Each test first runs the check on the correct maths (it must PASS, so the failure below is caused by
the break and not by the setup), then applies one break with monkeypatch and runs it again:

- `coef_discrete` / `coef_continuous`: the Lyapunov coefficient C_d without its leading lr, and C as
  the recollected (1 - eps lambda)/(1 + eps lambda) (PAPER.md 4.3-4.4 warn about both);
- `swap_betas`: beta1 and beta2 swapped in the update (the momentum that is stored vs the one used);
- `flip_grad`: the sign convention of grad K (grad K(-z) instead of grad K(z));
- `explicit_for_implicit`: the update applies explicit decay where the theorem's implicit scheme is asked;
- `drop_decay` / `drop_ode_decay`: the weight decay left out of the update (discrete) or the ODE, so
  nothing contracts lambda x into dom K* (the phase-1 bounds hold for any gradients, not without decay);
- `wrong_mapping`: lionlib.LionK run with heavy ball's betas where Nesterov's ODE is compared, so it
  discretises another ODE (the first-order convergence check of 12);
- `unscaled_muon`: Muon's step without its `adjust_lr_fn` shape factor s (lr msign instead of
  lr s msign), so the iterate settles on 1/lambda instead of the radius s/lambda (06).

The sizes are small (a few hundred steps and states): the breaks change the checked quantities by
orders of magnitude, not at the tolerance's edge.
"""

import pytest
import torch

from lionlib import LionK, kappa
from lionlib.companion import theory_checks as checks
from lionlib.companion.report import Report
from lionlib.kappa.matrix import shape_scale
from lionlib.theory import dynamics, special_cases
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


def drop_decay(mp):
    step = dynamics.lion_k_step
    mp.setattr(dynamics, "lion_k_step", lambda K, x, m, g, lr, b1, b2, lam, implicit=False:
               step(K, x, m, g, lr, b1, b2, 0.0, implicit))


def drop_ode_decay(mp):
    velocity = dynamics.ode_velocity
    mp.setattr(dynamics, "ode_velocity", lambda K, c, x, m, g: velocity(
        K, OdeConstants(c.alpha, c.gamma, c.eps, 1e-9), x, m, g))


def wrong_mapping(mp):
    betas = special_cases.euler_betas
    mp.setattr(special_cases, "euler_betas", lambda lr, gamma, eps: betas(lr, gamma, 0.0))  # no gradient enhancement


def unscaled_muon(mp):
    grad = kappa.Nuclear.grad
    mp.setattr(kappa.Nuclear, "grad", lambda self, x: grad(self, x) / shape_scale(x.shape, self.scale))


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
        return checks.check_entry_step(report, "Figure 1", tr, (-3.0, 4.0), 0.01, 1.0)

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.L1))


def test_11_entry_step_tells_the_decay_schemes_apart(report, monkeypatch):
    def check():
        tr = simulate(kappa.get("l1"), QUAD, DiscreteConstants(0.01, 0.9, 0.99, 1.0), (-3.0, 4.0), 300, implicit=True)
        return checks.check_entry_step(report, "Figure 1", tr, (-3.0, 4.0), 0.01, 1.0, implicit=True)

    passes_then_fails(monkeypatch, check, explicit_for_implicit)


@pytest.mark.parametrize("brk", [explicit_for_implicit, swap_betas, coef_discrete], ids=["explicit", "swap", "coef"])
def test_01_03_random_states_fail(report, monkeypatch, brk):
    """The one-step inequality of Theorem 4.1 on random states (01 with lr lambda >= 0.5, 03 with any)."""
    def check():
        gen = torch.Generator().manual_seed(0)
        return checks.check_random_states(report, "Theorem 4.1", "no violation", kappa.get("l1"), 600, gen,
                                          lr_lam_min=0.5 if brk is explicit_for_implicit else 1e-3)

    passes_then_fails(monkeypatch, check, brk)


@pytest.mark.parametrize("brk", [swap_betas, coef_discrete], ids=["swap", "coef"])
def test_06_muon_random_states_fail(report, monkeypatch, brk):
    """06_muon: Theorem 4.1 with K = the nuclear norm (Muon) on random matrix states."""
    def check():
        return checks.check_random_states(report, "Muon note", "no violation", kappa.get("nuclear"), 200,
                                          torch.Generator().manual_seed(0), shape=(3, 2))

    passes_then_fails(monkeypatch, check, brk)


def test_06_muon_radius_fails_without_the_shape_scale(report, monkeypatch):
    """06_muon: shape-scaled Muon ends on its radius s/lambda; without s in the step it ends on 1/lambda,
    which differs for "original" (s = 2 on 32x8) and "match_rms_adamw" (s = 0.2 sqrt(32))."""
    def check():
        report.claims.clear()
        checks.check_muon_radius(report, "Muon note", (32, 8), (None, "original", "match_rms_adamw"), lr=0.05, lam=1.0,
                                 momentum=0.95, sigma_target=3.0, sigma_start=4.0, generator=torch.Generator().manual_seed(0))
        return all(c.verdict for c in report.claims.values())

    passes_then_fails(monkeypatch, check, unscaled_muon)


# ----------------------------------------------------------------------------------------------
# 02_continuous_lyapunov (Theorem 3.1).


@pytest.mark.parametrize("brk", [coef_continuous, lambda mp: flip_grad(mp, kappa.LogCosh)], ids=["coef", "flip"])
def test_02_dH_equals_minus_Delta_fails(report, monkeypatch, brk):
    c = OdeConstants(alpha=2.0, gamma=0.2, eps=0.05, lam=0.8)

    def check():
        K = kappa.get("logcosh", delta=0.3)
        runs = {"logcosh": integrate(K, SKEW, c, (3.5, 3.5), 6.0, n_eval=61)}
        return checks.check_dH_equals_minus_Delta(report, "Theorem 3.1", "dH/dt = -Delta", {"logcosh": K}, c, runs,
                                                  SKEW)

    passes_then_fails(monkeypatch, check, brk)


# ----------------------------------------------------------------------------------------------
# 04_lionk_family (Table 2).


def test_04_fenchel_young_fails_with_flipped_sign(report, monkeypatch):
    Ks = [kappa.get("lp", p=1.5) if n == "lp" else kappa.get(n) for n in kappa.names()]

    def check():
        return checks.check_fenchel_young(report, "Table 2", Ks, 20, torch.Generator().manual_seed(0))

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
        err = checks.check_frank_wolfe(report, "Section 3.1", name, torch.stack(xs), torch.stack(gs), ball, 1.0,
                                       0.02, 1e-14, "rounding")
        return err <= 1e-14

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, cls))


# ----------------------------------------------------------------------------------------------
# 12_mirror_classical (mirror descent, heavy ball and Nesterov).


def test_12_mirror_descent_fails_with_flipped_sign(report, monkeypatch):
    def check():
        runs = {("logcosh", b): special_cases.mirror_runs(kappa.get("logcosh"), SKEW, 2.5, b, (0.3, -0.2), 3)
                for b in (0.0, 0.9)}
        checks.check_mirror_descent(report, "Section 3.1 (mirror descent)", runs)
        return all(c.verdict for c in report.claims.values())

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.LogCosh))


@pytest.mark.parametrize("brk", [coef_continuous, wrong_mapping], ids=["coef", "mapping"])
def test_12_classical_checks_fail(report, monkeypatch, brk):
    """The Lion-K ODE against Nesterov's ODE (a wrong C breaks H = E) and lionlib.LionK as its Euler
    scheme (the wrong ODE constants break the first-order convergence)."""
    wavy = Wavy(torch.tensor([2.0, -3.0], dtype=DT), 0.5, 3.0)

    def check():
        report.claims.clear()
        checks.check_classical(report, "Section 3.1 (classical ODEs)", "Nesterov", wavy, 2.0, 0.3, 0.5, (3.5, 3.5),
                               4.0, 0.02, n_eval=41)
        return all(c.verdict for c in report.claims.values() if c.kind == "check")

    passes_then_fails(monkeypatch, check, brk)


# ----------------------------------------------------------------------------------------------
# Phase 1 (01, 03, 04, 11, 13 discrete; 02 continuous): the bound holds for any gradients, not without decay.


@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_phase1_fails_without_decay(report, monkeypatch, implicit):
    def check():
        runs = [simulate(kappa.get(k), QUAD, DiscreteConstants(0.01, 0.9, 0.99, 1.0), x0, 300, implicit=implicit)
                for k in ("l1", "l2") for x0 in ((-3.0, 4.0), (0.2, 0.3))]
        return checks.check_phase1(report, "Figure 1", "phase 1", [tr.dist for tr in runs], 0.01, 1.0, implicit,
                                   radius=4.0)

    passes_then_fails(monkeypatch, check, drop_decay)


def test_02_continuous_phase1_fails_without_decay(report, monkeypatch):
    c = OdeConstants(alpha=2.0, gamma=0.2, eps=0.05, lam=0.8)

    def check():
        runs = [integrate(kappa.get("logcosh", delta=0.3), SKEW, c, (3.5, 3.5), 6.0, n_eval=61)]
        return checks.check_continuous_phase1(report, "Theorem 3.1", "phase 1", runs, 0.8)

    passes_then_fails(monkeypatch, check, drop_ode_decay)


def test_one_step_bound_and_descent_fail_with_flipped_sign(report, monkeypatch):
    """01/03/11: D_t <= 0 and the one-step bound along trajectories fail when grad K has the wrong sign (the
    printed coefficient, swapped betas and explicit decay leave them true along these toy runs: the
    random-state checks above catch those)."""
    def check():
        runs = [simulate(kappa.get(k), SKEW, DiscreteConstants(0.02, 0.9, 0.99, 1.0), (-3.0, 4.0), 300, implicit=True)
                for k in ("l1", "logcosh")]
        return (checks.check_descent(report, "Theorem 4.1", "D_t", runs)
                and checks.check_one_step_bound(report, "Theorem 4.1", "one step", runs))

    passes_then_fails(monkeypatch, check, lambda mp: flip_grad(mp, kappa.L1, kappa.LogCosh))


# ----------------------------------------------------------------------------------------------
# 13_stochastic_rate (the rate: a fitted slope of the average Delta_t before its explicit floor).


@pytest.mark.parametrize("brk", [lambda mp: flip_grad(mp, kappa.L1), drop_decay], ids=["flip", "no_decay"])
def test_13_rate_slope_fails(report, monkeypatch, brk):
    """A wrong sign of grad K, or no decay, keeps Lion out of the box: no step after entry, no rate."""
    problem = Quadratic.isotropic((0.5, -3.0))

    def check():
        runs = {lr: simulate(kappa.get("l1"), problem, DiscreteConstants(lr, 0.9, 0.99, 1.0), (-3.0, 4.0), 1500,
                             implicit=True) for lr in (0.01, 0.03)}
        f_star = float(problem.f(problem.box_minimiser(1.0)))
        return checks.check_rate_slope(report, "Theorem 4.1 (rate)", runs, problem, f_star) <= -0.5

    passes_then_fails(monkeypatch, check, brk)


# ----------------------------------------------------------------------------------------------
# 14_cautious: the cautious options of lionlib.Lion / lionlib.Muon against the box and the ball.


def _lion_without(mp, *drop):
    """lionlib.Lion as the runs of lionlib.theory.cautious build it, with the keywords `drop` reset."""
    from lionlib.theory import cautious

    real = cautious.Lion
    mp.setattr(cautious, "Lion", lambda params, **kw: real(params, **{**kw, **{k: type(kw[k])(0) for k in drop}}))


def _muon_without_decay(mp):
    from lionlib.theory import cautious

    real = cautious.Muon
    mp.setattr(cautious, "Muon", lambda params, **kw: real(params, **{**kw, "weight_decay": 0.0}))


def _overscaled_caution(mp):
    """C-Lion's rescaled direction made 3x larger than numel / kept allows."""
    from lionlib.fused import eager

    real = eager.cautious_update
    mp.setattr(eager, "cautious_update", lambda p, u, g, lr, *a: real(p, 3 * u, g, lr, *a))


def _box_runs(**kw):
    from lionlib.theory import cautious

    return [cautious.run_lion(QUAD.grad, x0, 400, lr=0.01, betas=(0.9, 0.99), lam=1.0, **kw)
            for x0 in ((-3.0, 4.0), (0.2, 0.3))]


def test_14_control_phase1_fails_without_decay(report, monkeypatch):
    from lionlib.companion import cautious_checks as cc
    from lionlib.theory import cautious

    def check():
        return cc.check_phase1_radius(report, "Figure 1", "control", [cautious.box_distance(r.x, 1.0) for r in _box_runs()],
                                      0.01, 1.0, 5.0)

    passes_then_fails(monkeypatch, check, lambda mp: _lion_without(mp, "weight_decay"))


def test_14_clion_radius_fails_with_a_larger_rescale(report, monkeypatch):
    from lionlib.companion import cautious_checks as cc
    from lionlib.theory import cautious

    def check():
        return cc.check_phase1_radius(report, "Figure 1", "C-Lion", [cautious.box_distance(r.x, 1.0, 2)
                                      for r in _box_runs(cautious=True)], 0.01, 1.0, 5.0)

    passes_then_fails(monkeypatch, check, _overscaled_caution)


def test_14_cwd_leaves_fails_with_plain_decay(report, monkeypatch):
    from lionlib.companion import cautious_checks as cc
    from lionlib.theory import cautious

    def check():
        run = _box_runs(cautious_weight_decay=True)[1]
        return cc.check_leaves(report, "Figure 1", "CWD leaves", cautious.box_distance(run.x, 1.0), 0.01, 1.0, 5.0)

    passes_then_fails(monkeypatch, check, lambda mp: _lion_without(mp, "cautious_weight_decay"))


def test_14_muon_phase1_fails_without_decay(report, monkeypatch):
    """(C-Muon's ball of radius max_t ||u_t||_op, u_t recovered from the iterates, is an identity of
    14, not a check: any iterates satisfy it.)"""
    from lionlib.companion import cautious_checks as cc
    from lionlib.theory import cautious

    def check():
        P = cautious.spectral_problem(0, 8, 6, 32, 3.0, 4.0, 1.0)
        run = cautious.run_muon(P.grad, P.X0, 150, lr=0.05, momentum=0.95, lam=1.0)
        return cc.check_phase1_radius(report, "Muon note", "phase 1", [cautious.spectral_distance(run.x, 1.0)],
                                      0.05, 1.0, 5.0)

    passes_then_fails(monkeypatch, check, _muon_without_decay)
