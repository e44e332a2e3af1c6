"""Interactive reading of the toy notebooks: redraw a Lion-K run (trajectory, constraint, H_d) when a
control changes, in JupyterLab.

`explore(**defaults)` draws the run for `defaults` (the notebook's parameters cell) and, when
`widgets=True` and ipywidgets is importable, puts controls for K, lambda, beta1, beta2, lr, the start
and the decay scheme above it. Under papermill and nbval the notebooks call it with `widgets=False`
(their INTERACTIVE parameter), so the parameters cell drives the one static drawing and no widget
front end is needed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lionlib import kappa
from lionlib.theory.dynamics import Quadratic, simulate
from lionlib.theory.lyapunov import DiscreteConstants

__all__ = ["draw_run", "explore"]


def draw_run(K_name: str = "l1", lam: float = 1.0, beta1: float = 0.9, beta2: float = 0.99, lr: float = 0.01,
             x0: float = -3.0, y0: float = 4.0, implicit: bool = True, c=(2.0, -3.0), steps: int = 1500):
    """One Lion-K run on f = 1/2||x - c||^2, drawn as trajectory | dist(lambda x, dom K*) | H_d."""
    import matplotlib.pyplot as plt

    K = kappa.get(K_name)
    problem = Quadratic.isotropic(c)
    tr = simulate(K, problem, DiscreteConstants(lr, beta1, beta2, lam), (x0, y0), steps, implicit=implicit)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    lim = max(4.5, float(tr.x.abs().max()) + 0.5)
    g = np.linspace(-lim, lim, 120)
    X, Y = np.meshgrid(g, g)
    Z = problem.f(torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))).numpy().reshape(X.shape)
    axes[0].contour(X, Y, Z, levels=15, cmap="Greys", linewidths=0.5)
    axes[0].plot(tr.x[:, 0], tr.x[:, 1], lw=1.5)
    axes[0].plot(x0, y0, "o")
    axes[0].set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim),
                title=f"{K.describe()}, lambda={lam}, betas=({beta1}, {beta2}), lr={lr}")
    dist = tr.dist.numpy()
    axes[1].plot(dist + 1e-16)
    if dist[0] > 0:
        q = 1 / (1 + lr * lam) if implicit else 1 - lr * lam
        axes[1].plot(dist[0] * q ** np.arange(steps + 1), "k--", lw=1, label="phase-1 bound")
        axes[1].legend()
    axes[1].set(yscale="log", ylim=(1e-10, max(10.0, 2 * float(dist[0]))), title="dist(lambda x_t, dom K*)")
    H = tr.H.numpy()
    fin = np.isfinite(H)
    if fin.any():
        axes[2].plot(np.arange(steps + 1)[fin], H[fin] - H[fin].min() + 1e-12)
    axes[2].set(yscale="log", title=f"H_d - min H_d ({'implicit' if implicit else 'explicit'} decay)")
    fig.tight_layout()
    plt.show()
    return tr


def explore(widgets: bool = False, **defaults):
    """Draw `draw_run(**defaults)`; with widgets=True (JupyterLab) add controls that redraw it."""
    if not widgets:
        return draw_run(**defaults)
    import ipywidgets as w

    d = {**dict(K_name="l1", lam=1.0, beta1=0.9, beta2=0.99, lr=0.01, x0=-3.0, y0=4.0, implicit=True), **defaults}
    names = [n for n in kappa.names() if n != "nuclear"]
    return w.interact(
        draw_run, K_name=w.Dropdown(options=names, value=d["K_name"], description="K"),
        lam=w.FloatLogSlider(value=d["lam"], base=10, min=-1, max=1, step=0.05, description="lambda"),
        beta1=w.FloatSlider(value=d["beta1"], min=0, max=0.999, step=0.01, description="beta1"),
        beta2=w.FloatSlider(value=d["beta2"], min=0, max=0.999, step=0.01, description="beta2"),
        lr=w.FloatLogSlider(value=d["lr"], base=10, min=-3, max=math.log10(0.3), step=0.1, description="lr"),
        x0=w.FloatSlider(value=d["x0"], min=-4, max=4, step=0.1, description="x0"),
        y0=w.FloatSlider(value=d["y0"], min=-4, max=4, step=0.1, description="y0"),
        implicit=w.Checkbox(value=d["implicit"], description="implicit decay"),
        c=w.fixed(tuple(d.get("c", (2.0, -3.0)))), steps=w.fixed(int(d.get("steps", 1500))))
