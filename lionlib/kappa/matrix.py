"""Matrix K: the nuclear norm (Lion-K with it is Muon) and Newton-Schulz, Muon's msign."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lionlib.kappa.base import Norm

__all__ = ["Nuclear", "newton_schulz"]


def newton_schulz(x: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """Approximate msign(x) = U V^T with Keller Jordan's quintic Newton-Schulz iteration.

    The coefficients trade accuracy for speed: singular values land roughly in [0.7, 1.2], not
    exactly 1, so this is NOT the exact grad of the nuclear norm (see Nuclear.exact).
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    transposed = x.size(-2) > x.size(-1)
    y = x.mT if transposed else x
    y = y / (torch.linalg.matrix_norm(y, keepdim=True) + eps)
    for _ in range(steps):
        gram = y @ y.mT
        y = a * y + (b * gram + c * gram @ gram) @ y
    return y.mT if transposed else y


@dataclass(frozen=True)
class Nuclear(Norm):
    """K = ||X||_* (sum of singular values): Lion-K with this K is Muon. grad K = U V^T.

    Constraint: spectral norm ||X||_op <= 1/lambda. `method="svd"` is exact (zero singular values
    get direction 0, the sign(0) = 0 convention); `method="newton_schulz"` is Muon's approximation.
    """

    method: str = "svd"
    ns_steps: int = 5
    name = "nuclear"
    constraint = "spectral ball: ||X||_op <= 1/lambda"
    latex = (r"\|X\|_*", r"U V^\top", r"\iota\{\|Y\|_{op} \le 1\}")

    def __post_init__(self):
        if self.method not in ("svd", "newton_schulz"):
            raise ValueError(f"nuclear method must be 'svd' or 'newton_schulz', got {self.method!r}")
        if self.ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1, got {self.ns_steps!r}")

    @property
    def exact(self):
        return self.method == "svd"

    def check_tensor(self, x: Tensor) -> None:
        self._matrix(x)

    @staticmethod
    def _matrix(x: Tensor) -> Tensor:
        if x.dim() != 2:
            raise ValueError(f"the nuclear norm needs a 2-D tensor, got shape {tuple(x.shape)}")
        return x

    def value(self, x):
        return torch.linalg.matrix_norm(self._matrix(x), ord="nuc")

    def grad(self, x):
        x = self._matrix(x)
        if self.method == "newton_schulz":
            return newton_schulz(x, self.ns_steps).to(x.dtype)
        u, s, vh = torch.linalg.svd(x.float() if x.dtype in (torch.bfloat16, torch.float16) else x, full_matrices=False)
        tol = s.amax() * max(x.shape) * torch.finfo(s.dtype).eps if s.numel() else 0
        return ((u * (s > tol)) @ vh).to(x.dtype)

    def gauge(self, y):
        return torch.linalg.matrix_norm(self._matrix(y), ord=2)


#
