"""The convex functions K of Lion-K (paper Table 2), with gradient, conjugate and feasible set.

Lion-K moves the parameters along grad K of the momentum (paper eq. (2)); K's convex conjugate
K* then decides what problem is solved: min_x f(x) + (1/lambda) K*(lambda x) (paper eq. (3)).
When K* is an indicator (K a norm) that is a hard constraint, lambda x in dom K*; otherwise a
penalty. Each K below is a small frozen dataclass so it can live in an optimizer's param group
and be pickled with its state_dict.

Conventions, shared by every K:
- Inputs are torch tensors of any float dtype; values are 0-d tensors of the input's dtype.
- `grad` returns a subgradient with the sign(0) = 0 convention (the zero vector at a kink of a norm).
- `conjugate` returns +inf outside dom K*; `conjugate_grad` returns an element of the
  subdifferential of K* inside dom K* (0 in the interior of an indicator's domain).
- `gauge(y)` is the norm whose unit ball is dom K* (||y||_inf for Lion's box; None when dom K* is
  everything or not a ball), so lambda * gauge(x) <= 1 is the constraint on x.
- `domain_distance(y)` is the distance from y to dom K*, measured in that norm (max(gauge - 1, 0)),
  Euclidean for the simplex. Any norm works for
  the phase-1 contraction dist(lambda x_t) <= (1 - lr lambda)^t dist(lambda x_0) (PAPER.md 4.2).
- Elementwise K act coordinate by coordinate. Whole-tensor K (lp, l2, linf, relativistic_norm,
  logsumexp, nuclear) treat each parameter tensor as one vector (nuclear: one matrix), so in an
  optimizer the constraint holds per parameter tensor, not over the whole model.
- `kernel()` names the fused kernel that computes grad K and its parameter (None: no kernel);
  the kernels' side of that contract is `lionlib.fused.contract`.

The K live in four small modules: `base` (the `Kappa` interface and the `Norm` base), `norms`
(l1, lp, l2, linf), `smooth` (penalty and barrier K) and `matrix` (nuclear, Newton-Schulz). Every
K is importable from here (`lionlib.kappa.L1`), and `get` builds one by name.
"""

from __future__ import annotations

from lionlib.kappa.base import Kappa, Norm
from lionlib.kappa.matrix import Nuclear, newton_schulz
from lionlib.kappa.norms import L1, L2, LInf, Lp
from lionlib.kappa.smooth import HalfSqL2, Huber, L1PlusSqL2, LogCosh, LogSumExp, Relativistic, RelativisticNorm

__all__ = [
    "Kappa", "Norm", "get", "names", "newton_schulz",
    "L1", "Lp", "L2", "LInf", "Nuclear", "HalfSqL2", "Huber", "Relativistic", "RelativisticNorm", "LogCosh",
    "L1PlusSqL2", "LogSumExp",
]

_REGISTRY: dict[str, type[Kappa]] = {
    cls.name: cls
    for cls in (L1, Lp, L2, HalfSqL2, LInf, Huber, Relativistic, RelativisticNorm, LogCosh, L1PlusSqL2, LogSumExp, Nuclear)
}


def names() -> list[str]:
    """Names accepted by `get`, in the order of the paper's table."""
    return list(_REGISTRY)


def get(name: str | Kappa, **params) -> Kappa:
    """K by name, e.g. `get("lp", p=1.5)`; a Kappa instance is returned unchanged."""
    if isinstance(name, Kappa):
        if params:
            raise ValueError(f"parameters {sorted(params)} given together with a Kappa instance {name.describe()}")
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown kappa {name!r}; choose one of {names()}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters for kappa {name!r}: {err}") from None
