"""Every K against its conjugate: Fenchel-Young, a numerical supremum, autograd, the domain."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import minimize

from lionlib import kappa

# One instance of every K, with non-default parameters where they have any.
ALL = [
    kappa.get("l1"),
    kappa.get("lp", p=1.0),
    kappa.get("lp", p=1.5),
    kappa.get("lp", p=3.0),
    kappa.get("l2"),
    kappa.get("half_sq_l2"),
    kappa.get("linf"),
    kappa.get("huber", delta=0.7),
    kappa.get("relativistic", delta=0.5),
    kappa.get("relativistic_norm", delta=0.5),
    kappa.get("logcosh", delta=0.3),
    kappa.get("l1_plus_sq_l2", a=0.5),
    kappa.get("logsumexp"),
    kappa.get("nuclear"),
]
VECTOR_K = [K for K in ALL if K.name != "nuclear"]
SHAPE = (3, 4)  # every K accepts a matrix (nuclear needs one)

finite = st.floats(-4, 4, allow_nan=False, width=64)
points = arrays(np.float64, SHAPE, elements=finite)


def t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def ids(K):
    return K.describe()


def test_registry_names_and_errors():
    assert set(kappa.names()) >= {"l1", "lp", "l2", "half_sq_l2", "linf", "huber", "relativistic",
                                  "relativistic_norm", "logcosh", "l1_plus_sq_l2", "logsumexp", "nuclear"}
    with pytest.raises(ValueError, match="unknown kappa 'l7'"):
        kappa.get("l7")
    with pytest.raises(ValueError, match="p=0.5"):
        kappa.get("lp", p=0.5)
    with pytest.raises(ValueError, match="delta"):
        kappa.get("huber", delta=-1.0)
    with pytest.raises(ValueError, match="bad parameters"):
        kappa.get("l1", p=2)
    for K in ALL:
        assert kappa.get(**K.spec()) == K
        assert K.constraint and all(K.latex)


@pytest.mark.parametrize("K", ALL, ids=ids)
@settings(max_examples=25, deadline=None)
@given(x=points, y=points)
def test_fenchel_young(K, x, y):
    """K(x) + K*(y) >= <x, y> always, with equality at y = grad K(x)."""
    x, y = t(x), t(y)
    g = K.grad(x)
    assert float(K.domain_distance(g)) == 0.0, "grad K must land in dom K*"
    gap = K.value(x) + K.conjugate(g) - (x * g).sum()
    assert abs(float(gap)) <= 1e-9 * (1 + float(K.value(x).abs()))
    scaled = y / 3  # keeps many draws inside bounded domains
    for z in (y, scaled, g):
        assert float(K.value(x) + K.conjugate(z) - (x * z).sum()) >= -1e-9


def _numerical_conjugate(K, y: np.ndarray) -> float:
    """sup_z <y, z> - K(z) by L-BFGS from several starts (finite inside dom K* only)."""
    best = -math.inf
    rng = np.random.default_rng(0)
    # grad K*(y) is the maximiser when the formulas are right; starting there only helps the
    # search: a wrong K* is still caught, since the numerical value is an honest lower bound.
    hint = K.conjugate_grad(t(y)).numpy().ravel()
    for start in [hint, np.zeros(y.size), rng.normal(size=y.size)]:
        def neg(z):
            zt = torch.tensor(z.reshape(y.shape), dtype=torch.float64, requires_grad=True)
            val = K.value(zt) - (zt * t(y)).sum()
            (grad,) = torch.autograd.grad(val, zt)
            return float(val.detach()), grad.numpy().ravel()
        res = minimize(neg, start, jac=True, method="L-BFGS-B", options=dict(maxiter=500, gtol=1e-12))
        best = max(best, -res.fun)
    return best


@pytest.mark.parametrize("K", ALL, ids=ids)
def test_conjugate_matches_numerical_supremum(K):
    rng = np.random.default_rng(1)
    for _ in range(2):
        # A point well inside dom K* (finite supremum), scaled to gauge 0.6 where dom K* is a ball.
        y = rng.normal(size=SHAPE)
        gauge = K.gauge(t(y))
        if gauge is not None:
            y = 0.6 * y / float(gauge)
        if K.name == "logsumexp":
            y = rng.dirichlet(np.ones(y.size)).reshape(SHAPE)
            numeric = _numerical_conjugate_simplex(K, y)
        else:
            numeric = _numerical_conjugate(K, y)
        assert float(K.conjugate(t(y))) == pytest.approx(numeric, abs=2e-5, rel=2e-5)
    if K.gauge(t(np.ones(SHAPE))) is not None:
        outside = 2.0 * np.ones(SHAPE)
        assert math.isinf(float(K.conjugate(t(outside))))
        assert float(K.domain_distance(t(outside))) > 0
        # The supremum really diverges there: <y, z> - K(z) grows along z = s * grad K*(...) rays.
        z = t(outside) * 1e3
        assert float((t(outside) * z).sum() - K.value(z)) > 1e2


def _numerical_conjugate_simplex(K, y):
    """For logsumexp, K*(y) = sup_z <y,z> - K(z) is reached only at infinity along some rays;
    the objective is shift-invariant, so optimise with z_0 pinned to 0."""
    def neg(z):
        zt = torch.tensor(np.concatenate([[0.0], z]).reshape(y.shape), dtype=torch.float64, requires_grad=True)
        val = K.value(zt) - (zt * t(y)).sum()
        (grad,) = torch.autograd.grad(val, zt)
        return float(val.detach()), grad.numpy().ravel()[1:]
    res = minimize(neg, np.zeros(y.size - 1), jac=True, method="L-BFGS-B", options=dict(maxiter=5000, gtol=1e-13))
    return -res.fun


@pytest.mark.parametrize("K", [K for K in ALL if K.smooth], ids=ids)
@settings(max_examples=20, deadline=None)
@given(x=points)
def test_grad_matches_autograd(K, x):
    xt = t(x).requires_grad_()
    (auto,) = torch.autograd.grad(K.value(xt), xt)
    torch.testing.assert_close(K.grad(t(x)), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("K", [K for K in VECTOR_K if not K.smooth and K.name != "linf"], ids=ids)
@settings(max_examples=20, deadline=None)
@given(x=points)
def test_nonsmooth_grad_matches_autograd_away_from_kinks(K, x):
    x = t(x)
    x = torch.where(x.abs() < 1e-3, torch.full_like(x, 0.5), x)  # away from sign's kink
    xt = x.clone().requires_grad_()
    (auto,) = torch.autograd.grad(K.value(xt), xt)
    torch.testing.assert_close(K.grad(x), auto, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("K", [K for K in ALL if K.smooth], ids=ids)
def test_conjugate_grad_inverts_grad(K):
    """grad K* (grad K(x)) recovers x for strictly convex smooth K (up to a constant for logsumexp)."""
    x = t(np.random.default_rng(2).normal(size=SHAPE))
    back = K.conjugate_grad(K.grad(x))
    if K.name == "logsumexp":
        back, x = back - back.mean(), x - x.mean()
    if K.name == "huber":  # clip loses information outside [-delta, delta]
        inside = x.abs() < K.delta
        back, x = back[inside], x[inside]
    torch.testing.assert_close(back, x, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("K", ALL, ids=ids)
def test_sign_zero_convention_and_dtypes(K):
    zero = torch.zeros(SHAPE, dtype=torch.float64)
    g = K.grad(zero)
    if K.symmetric:
        assert torch.equal(g, torch.zeros_like(g)), "a symmetric K has grad 0 at 0 (sign(0) = 0)"
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(SHAPE).to(dtype)
        assert K.grad(x).dtype == dtype


def test_lp_interpolates_lion_and_l2():
    x = t(np.random.default_rng(3).normal(size=10))
    torch.testing.assert_close(kappa.get("lp", p=1.0).grad(x), x.sign())
    torch.testing.assert_close(kappa.get("lp", p=2.0).grad(x), x / x.norm())
    torch.testing.assert_close(kappa.get("l2").grad(x), x / x.norm())
    # Extreme magnitudes: no overflow or underflow in |x|^(p-1).
    big = torch.tensor([1e300, -3e299, 0.0], dtype=torch.float64)
    assert torch.isfinite(kappa.get("lp", p=1.7).grad(big)).all()


def test_nuclear_exact_and_newton_schulz():
    x = torch.randn(6, 4, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    torch.testing.assert_close(kappa.get("nuclear").grad(x), u @ vh)
    ns = kappa.get("nuclear", method="newton_schulz")
    assert not ns.exact and kappa.get("nuclear").exact
    sv = torch.linalg.svdvals(ns.grad(x))
    assert 0.5 < float(sv.min()) and float(sv.max()) < 1.3, sv  # approximate polar factor
    # Rank-deficient input: zero singular values get direction 0.
    low = torch.randn(6, 1, dtype=torch.float64) @ torch.randn(1, 4, dtype=torch.float64)
    assert int((torch.linalg.svdvals(kappa.get("nuclear").grad(low)) > 0.5).sum()) == 1
    with pytest.raises(ValueError, match="2-D"):
        kappa.get("nuclear").value(torch.randn(3))


def test_linf_subgradient_and_l1_ball():
    K = kappa.get("linf")
    x = t([0.5, -3.0, 2.0])
    assert K.grad(x).tolist() == [0.0, -1.0, 0.0]
    assert float(K.gauge(t([0.5, -0.25]))) == 0.75
    assert float(K.domain_distance(t([1.0, -1.0]))) == pytest.approx(1.0)


def test_simplex_projection_distance():
    K = kappa.get("logsumexp")
    assert float(K.domain_distance(t([0.2, 0.3, 0.5]))) == 0.0
    assert float(K.domain_distance(t([1.0, 1.0]))) == pytest.approx(math.sqrt(0.5))
    assert math.isinf(float(K.conjugate(t([-0.1, 1.1]))))


def test_norm_type_k_share_one_norm_base():
    """Every norm-type K derives from `kappa.Norm`, whose conjugate is the indicator of the dual
    ball: 0 inside (gauge <= 1), +inf outside, with 0 as its gradient inside."""
    for name in kappa.names():
        K = kappa.get(name)
        assert isinstance(K, kappa.Norm) == K.is_norm, name
        if K.is_norm:
            y = torch.randn(4, 3, dtype=torch.float64)
            inside, outside = y / (2 * K.gauge(y)), y * (2 / K.gauge(y))
            assert float(K.conjugate(inside)) == 0.0 and float(K.conjugate(outside)) == float("inf"), name
            assert torch.equal(K.conjugate_grad(inside), torch.zeros_like(y)), name
