"""Matrix K: the nuclear norm (Lion-K with it is Muon) and Newton-Schulz, Muon's msign.

An N-D weight (a conv kernel of shape (out, in, kh, kw)) is read as the (shape[0], prod(rest))
matrix, as KellerJordan's Muon, Dion and `lionlib.experiments.nets.Conv` do: K, its gradient and
the constraint are those of that matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lionlib.kappa.base import Norm

__all__ = ["Nuclear", "newton_schulz", "shape_scale", "as_matrix", "NS_COEFFICIENTS", "SCALES"]

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic (torch.optim.Muon's default)
SCALES = (None, "original", "match_rms_adamw")


def as_matrix(x: Tensor) -> Tensor:
    """x as the (shape[0], prod(rest)) matrix (a view where the memory allows)."""
    if x.dim() < 2:
        raise ValueError(f"the nuclear norm needs a 2-D (or N-D, read as (shape[0], rest)) tensor, got shape {tuple(x.shape)}")
    return x if x.dim() == 2 else x.reshape(x.shape[0], -1)


def shape_scale(shape, scale: str | None) -> float:
    """The step multiplier s of torch.optim.Muon's `adjust_lr_fn` for a weight of this shape, read
    as the (A, B) = (shape[0], prod(rest)) matrix: 1 (None), sqrt(max(1, A/B)) ("original", Keller
    Jordan's), 0.2 sqrt(max(A, B)) ("match_rms_adamw", Moonshot's: the update's RMS near AdamW's)."""
    a, b = int(shape[0]), math.prod(int(d) for d in shape[1:])
    if scale is None:
        return 1.0
    if scale == "original":
        return math.sqrt(max(1.0, a / b))
    if scale == "match_rms_adamw":
        return 0.2 * math.sqrt(max(a, b))
    raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")


def newton_schulz(x: Tensor, steps: int = 5, eps: float = 1e-7, coefficients=NS_COEFFICIENTS,
                  dtype: torch.dtype | None = None) -> Tensor:
    """Approximate msign(x) = U V^T of a matrix with Keller Jordan's quintic Newton-Schulz iteration.

    x is scaled by its Frobenius norm (at least eps), so every singular value is <= 1, then
    y <- a y + (b G + c G^2) y with G = y y^T, on the wide orientation (G is the smaller Gram).
    `dtype` is the dtype of the iteration (None: x's own; torch.optim.Muon uses bfloat16); the
    result is in that dtype. The default coefficients trade accuracy for speed: singular values
    land roughly in [0.7, 1.2], not exactly 1, so this is NOT the exact grad of the nuclear norm
    (see Nuclear.exact).
    """
    a, b, c = coefficients
    y = x.to(dtype) if dtype is not None else x
    transposed = y.size(-2) > y.size(-1)
    if transposed:
        y = y.mT
    y = y / torch.linalg.matrix_norm(y, keepdim=True).clamp_min(eps)
    for _ in range(steps):
        gram = y @ y.mT
        if y.dim() == 2:  # fused multiply-adds: one rounding each in bf16, as torch.optim.Muon
            y = torch.addmm(y, torch.addmm(gram, gram, gram, beta=b, alpha=c), y, beta=a)
        else:  # a batch of matrices
            y = a * y + (b * gram + c * (gram @ gram)) @ y
    return y.mT if transposed else y


@dataclass(frozen=True)
class Nuclear(Norm):
    """K = s ||X||_* (s times the sum of singular values): Lion-K with this K is Muon. grad K = s U V^T.

    Constraint: spectral norm sigma_max(X) <= s/lambda. s = 1 unless `scale` names torch.optim.Muon's
    shape rule (`shape_scale`): a step lr s U V^T with decay lr lambda is Lion-K with K = s ||.||_*,
    whose conjugate is the indicator of {sigma_max(Y) <= s}, so the radius becomes s/lambda.
    `method="svd"` is exact (zero singular values get direction 0, the sign(0) = 0 convention);
    `method="newton_schulz"` is Muon's approximation, with `ns_steps`, `ns_coefficients`, `eps`,
    and `ns_dtype` (None: the input's dtype; torch.bfloat16 as torch.optim.Muon).
    """

    method: str = "svd"
    ns_steps: int = 5
    ns_coefficients: tuple = NS_COEFFICIENTS
    eps: float = 1e-7
    ns_dtype: torch.dtype | None = None
    scale: str | None = None
    name = "nuclear"
    latex = (r"\|X\|_*", r"U V^\top", r"\iota\{\|Y\|_{op} \le 1\}")

    def __post_init__(self):
        if self.method not in ("svd", "newton_schulz"):
            raise ValueError(f"nuclear method must be 'svd' or 'newton_schulz', got {self.method!r}")
        if isinstance(self.ns_steps, bool) or not isinstance(self.ns_steps, int) or not 1 <= self.ns_steps < 100:
            raise ValueError(f"ns_steps must be an int in [1, 100), got {self.ns_steps!r}")
        coefficients = tuple(self.ns_coefficients)
        if len(coefficients) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in coefficients):
            raise ValueError(f"ns_coefficients must be three finite numbers (a, b, c), got {self.ns_coefficients!r}")
        object.__setattr__(self, "ns_coefficients", coefficients)
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < math.inf):
            raise ValueError(f"eps must be a finite float > 0, got {self.eps!r}")
        if self.ns_dtype is not None and not (isinstance(self.ns_dtype, torch.dtype) and self.ns_dtype.is_floating_point):
            raise ValueError(f"ns_dtype must be None or a floating torch.dtype (torch.float32, torch.bfloat16), got {self.ns_dtype!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")

    @property
    def constraint(self) -> str:
        if self.scale is None:
            return "spectral ball: ||X||_op <= 1/lambda"
        return f"spectral ball: ||X||_op <= s/lambda, s = shape_scale(shape, {self.scale!r})"

    @property
    def exact(self):
        return self.method == "svd"

    def check_tensor(self, x: Tensor) -> None:
        as_matrix(x)

    def describe(self) -> str:
        """method and ns_steps, then only the settings that differ from their defaults."""
        extra = [f"{k}={getattr(self, k)}" for k, v in (("ns_coefficients", NS_COEFFICIENTS), ("eps", 1e-7),
                                                      ("ns_dtype", None), ("scale", None)) if getattr(self, k) != v]
        return f"{self.name}({', '.join([f'method={self.method}', f'ns_steps={self.ns_steps}', *extra])})"

    def radius(self, shape, weight_decay: float) -> float:
        """s/lambda: the bound on sigma_max of a weight of this shape after phase 1."""
        return shape_scale(shape, self.scale) / weight_decay

    def value(self, x):
        return shape_scale(x.shape, self.scale) * torch.linalg.matrix_norm(as_matrix(x), ord="nuc")

    def grad(self, x):
        m = as_matrix(x)
        s = shape_scale(x.shape, self.scale)
        if self.method == "newton_schulz":
            d = newton_schulz(m, self.ns_steps, self.eps, self.ns_coefficients, self.ns_dtype)
        else:
            work = m.float() if m.dtype in (torch.bfloat16, torch.float16) else m
            u, sv, vh = torch.linalg.svd(work, full_matrices=False)
            tol = sv.amax() * max(m.shape) * torch.finfo(sv.dtype).eps if sv.numel() else 0
            d = (u * (sv > tol)) @ vh
        d = d.to(x.dtype).reshape(x.shape)
        return d if s == 1.0 else d * s

    def gauge(self, y):
        return torch.linalg.matrix_norm(as_matrix(y), ord=2) / shape_scale(y.shape, self.scale)


#
