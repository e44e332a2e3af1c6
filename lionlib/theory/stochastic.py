"""Lion under stochastic gradients (PAPER.md 4.5): many seeded runs at once, and Lion's KKT score.

Pure maths; `13_stochastic_rate` states what is checked and what is a finding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lionlib.kappa import Kappa
from lionlib.theory import dynamics

__all__ = ["noisy_lion_batch", "kkt_l1_rows"]

DTYPE = torch.float64


def noisy_lion_batch(K: Kappa, problem, x0, steps: int, lr: Tensor, lam: float, betas, sigma: Tensor, seeds,
                     implicit: bool = False):
    """Lion-K on a batch of B independent runs (rows): lr and sigma are (B,) tensors, seeds (B,) ints.

    The gradient of row b at step t is grad f(x) + sigma_b xi with xi ~ N(0, I) from a generator seeded
    by seeds[b] (so paired arms share their noise). K must act elementwise (the update is applied
    to the (B, d) tensor at once). Returns X (steps+1, B, d).
    """
    if not K.elementwise:
        raise ValueError(f"noisy_lion_batch needs an elementwise K, got {K.describe()}")
    B, x = len(seeds), torch.as_tensor(x0, dtype=DTYPE).expand(len(seeds), -1).clone()
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    d = x.shape[1]
    m, xs = torch.zeros_like(x), [x]
    lr_col, sig_col = lr.view(B, 1), sigma.view(B, 1)
    for _ in range(steps):
        noise = torch.stack([torch.randn(d, dtype=DTYPE, generator=g) for g in gens])
        g = problem.grad(x) + sig_col * noise
        x, m, _ = dynamics.lion_k_step(K, x, m, g, lr_col, betas[0], betas[1], lam, implicit)
        xs.append(x)
    return torch.stack(xs)


def kkt_l1_rows(problem, X: Tensor, lam: float) -> Tensor:
    """Lion's KKT score S(x) = ||grad f||_1 + lambda <x, grad f> per row of X (..., d), at x projected on
    the box (S is +inf outside it; runs approach a face from outside by at most the phase-1 rest)."""
    Xp = X.clamp(-1 / lam, 1 / lam)
    g = problem.grad(Xp)
    return g.abs().sum(-1) + lam * (Xp * g).sum(-1)
