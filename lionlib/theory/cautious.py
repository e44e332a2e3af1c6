"""Runs of lionlib's own optimizers with the cautious options on the toy problems of 01 and 06, and the
quantities the Lyapunov view asks of them.

The cautious options are not Lion-K updates, so `dynamics.simulate` (paper eq. (2)) cannot run them:
these runs call `lionlib.Lion` and `lionlib.Muon` themselves (float64, for-loop path) and record the
iterate x_t, the paper's momentum m_t = -exp_avg and the gradient used. What the theory says of them:

- **C-Lion / C-Muon** (`cautious=True`, arXiv 2411.16085): the direction u is masked where u g <= 0
  and rescaled by numel / kept, so |u_i| <= s := numel for Lion (and ||u||_op is whatever it is for
  Muon). The phase-1 argument of PAPER 4.2 with ||u||_inf <= s gives the box of radius s/lambda, not
  1/lambda: x' = (1 - lr lambda) x - lr u, so lambda|x'_i| - s <= (1 - lr lambda)(lambda|x_i| - s).
  `applied_direction` recovers u from two iterates (explicit decay, no cautious decay).
- **Cautious weight decay** (`cautious_weight_decay=True`, arXiv 2510.12402): the decay acts only
  where u x > 0; where u pushes |x_i| outward nothing pulls it back, so no set is invariant for any
  gradients and the box is kept only if f's gradient keeps it. In continuous time its rest points
  with m != 0 are impossible (sign(m_i) = -lambda x_i needs sign(m_i) x_i > 0 and < 0 at once), so
  it rests only where grad f = 0: it optimises f, not f on the box, and H_d (+inf outside the box)
  is no Lyapunov function for it once it leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from lionlib.muon import Muon
from lionlib.optim import Lion

__all__ = ["Run", "run_lion", "run_muon", "spectral_problem", "SpectralProblem", "box_distance", "spectral_distance",
           "applied_direction", "tail_mean"]

DTYPE = torch.float64


@dataclass
class Run:
    """One run: row t is the state after t steps (x and m: T+1 rows; g: T rows)."""

    x: Tensor  # (T+1, *shape)
    m: Tensor  # (T+1, *shape), paper convention m = -exp_avg
    g: Tensor  # (T, *shape): the gradient given to step t (noise included)


def _run(opt_cls, grad: Callable[[Tensor], Tensor], x0, steps: int, noise: float, generator, **kw) -> Run:
    p = torch.nn.Parameter(torch.as_tensor(x0, dtype=DTYPE).clone())
    opt = opt_cls([p], **kw)
    xs, ms, gs = [p.detach().clone()], [torch.zeros_like(p)], []
    for _ in range(steps):
        g = grad(p.detach())
        if noise:
            g = g + noise * torch.randn(g.shape, generator=generator, dtype=DTYPE)
        p.grad = g
        opt.step()
        xs.append(p.detach().clone())
        ms.append(-opt.state[p]["exp_avg"].clone())
        gs.append(g)
    return Run(torch.stack(xs), torch.stack(ms), torch.stack(gs))


def run_lion(grad: Callable[[Tensor], Tensor], x0, steps: int, *, lr: float, betas: tuple[float, float], lam: float,
             cautious: bool = False, cautious_weight_decay: bool = False, noise: float = 0.0,
             generator: torch.Generator | None = None) -> Run:
    """`lionlib.Lion` (explicit decay, for-loop path) on grad(x) + noise * N(0, I)."""
    return _run(Lion, grad, x0, steps, noise, generator, lr=lr, betas=betas, weight_decay=lam, foreach=False,
                cautious=cautious, cautious_weight_decay=cautious_weight_decay)


def run_muon(grad: Callable[[Tensor], Tensor], X0, steps: int, *, lr: float, momentum: float, lam: float,
             cautious: bool = False, cautious_weight_decay: bool = False, exact_svd: bool = True) -> Run:
    """`lionlib.Muon` (Nesterov, explicit decay) on the exact gradient."""
    return _run(Muon, grad, X0, steps, 0.0, None, lr=lr, momentum=momentum, weight_decay=lam, exact_svd=exact_svd,
                cautious=cautious, cautious_weight_decay=cautious_weight_decay)


@dataclass
class SpectralProblem:
    """06's matrix least squares F(X) = ||A X - B||_F^2 / (2n), its start X0 and smoothness L."""

    A: Tensor
    B: Tensor
    X0: Tensor
    L: float

    def f(self, X: Tensor) -> Tensor:
        return 0.5 * (self.A @ X - self.B).square().sum() / self.A.shape[0]

    def grad(self, X: Tensor) -> Tensor:
        return self.A.T @ (self.A @ X - self.B) / self.A.shape[0]


def spectral_problem(seed: int, rows: int, cols: int, n: int, sigma_true: float, sigma_start: float,
                     lam: float) -> SpectralProblem:
    """06's construction from one seed: Gaussian A (n x rows); the minimiser's and the start's sigma_max
    set to sigma_true / lambda and sigma_start / lambda; noise 0.1 in B."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=DTYPE)

    def top(M, s):
        return M * (s / torch.linalg.matrix_norm(M, ord=2))

    A = randn(n, rows)
    X_true = top(randn(rows, cols), sigma_true / lam)
    B = A @ X_true + 0.1 * randn(n, cols)
    X0 = top(randn(rows, cols), sigma_start / lam)
    return SpectralProblem(A, B, X0, float(torch.linalg.matrix_norm(A, ord=2) ** 2 / n))


def box_distance(x: Tensor, lam: float, radius: float = 1.0) -> Tensor:
    """dist(lambda x_t, [-radius, radius]^d) in the l_inf sense: max(lambda ||x_t||_inf - radius, 0), per row."""
    return (lam * x.abs().flatten(1).amax(1) - radius).clamp(min=0)


def spectral_distance(X: Tensor, lam: float, radius: float = 1.0) -> Tensor:
    """max(lambda sigma_max(X_t) - radius, 0), per matrix of the (T+1, rows, cols) stack."""
    return (lam * torch.linalg.matrix_norm(X, ord=2) - radius).clamp(min=0)


def applied_direction(run: Run, lr: float, lam: float) -> Tensor:
    """u_t with x_{t+1} = (1 - lr lambda) x_t - lr u_t (explicit, uncautious decay): (T, *shape)."""
    return ((1 - lr * lam) * run.x[:-1] - run.x[1:]) / lr


def tail_mean(values: Tensor, fraction: float = 0.25) -> float:
    """Mean of the last `fraction` of a per-step series (the end of a run that chatters at O(lr))."""
    n = max(1, int(len(values) * fraction))
    return float(values[-n:].mean())
