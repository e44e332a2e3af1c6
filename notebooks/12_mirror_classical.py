# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill,-execution,-ExecuteTime
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version,-papermill
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lion-K as mirror descent, and the classical momentum ODEs (paper Section 3.1)
#
# The paper's summary calls Lion a "Hamiltonian mirror descent" (PAPER.md §5, [S5]), and relates the
# Lion-K ODE to Polyak's heavy ball and Nesterov's method. This notebook turns both readings into
# identities that are checked against references written from the textbook definitions
# (`lionlib.theory.special`), which share no code with the update or with ∇K.
#
# **1. Mirror descent** (derived here; the paper's exact statement was not retrieved). Write
# ψ(x) = (1/λ)K*(λx), the regulariser of the problem Lion-K solves, F = f + ψ (PAPER.md §3). Then
# ∇ψ*(z) = ∇K(z)/λ = argmin_x {ψ(x) − ⟨z, x⟩}. With β1 = β2 = β, explicit decay and ελ = 1, the update
# is x_{t+1} = ∇K(m_{t+1})/λ and m_{t+1} = βm_t − (1 − β)∇f(x_t). If m_t = ∇ψ(x_t) (true after one step,
# and at the start when m_0 = ∇ψ(x_0)), this is
#
#     ∇ψ(x_{t+1}) = ∇ψ(x_t) − (1 − β) ∇F(x_t),
#
# **mirror descent on F with mirror map ψ and step 1 − β**; at β1 = β2 = 0 it is a unit step. For general
# β's and ελ < 1, Lion-K relaxes x toward the mirror image of the gradient-enhanced momentum,
# x_{t+1} = (1 − ελ)x_t + ελ·argmin_x{ψ(x) − ⟨m̃_{t+1}, x⟩}: the dual variable m carries momentum (the
# "Hamiltonian" part), the primal x follows its mirror image at rate ελ. The reference mirror step is
# solved numerically from K* alone (autograd through `K.conjugate`, L-BFGS-B, Newton polish).
#
# **2. Classical ODEs.** With K = ½‖·‖² and λ → 0 the Lion-K ODE (PAPER.md §2.5) is, after eliminating
# m (x' = m̃ = (1 − εγ)m − εα∇f):
#
#     x'' = −α∇f(x) − γx' − εα ∇²f(x) x',
#
# Polyak's heavy ball for ε = 0 and the high-resolution ODE of Nesterov's method (Shi, Du, Jordan, Su
# 2018; its gradient-correction term ∇²f x') for ε > 0. Then H reduces to the classical energy
# E = αf(x) + ‖x' + εα∇f(x)‖²/(2(1 − εγ)) (αf + ½‖x'‖² for heavy ball), with
# −dE/dt = γ‖x'‖² + ε(1 − εγ)‖m'‖² ≥ 0 (γ‖x'‖² for heavy ball). λ → 0 is evaluated at λ = 1e-11
# (H contains (1/λ)K*(λx)).
#
# **Settings chosen here** (the paper gives none for this section; parameters below): f = ½(x − c)ᵀA(x − c)
# with A = [[1, 0.3], [0.3, 2]], c = (2, −3); λ = 2.5 for the mirror-descent part (so that the unit
# step at β = 0 is stable for K = ½‖·‖²); K ∈ {logcosh, relativistic, ½‖·‖²} (smooth, strictly convex
# K*); the non-convex f = ½‖x − c‖² + 0.5 Σ cos(3x_i) for the ODEs, α = 2, γ = 0.3, ε = 0.5 (Nesterov).

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
MD_STEPS: Optional[int] = None  # mirror-descent steps compared; None -> 5 (smoke), 12 (cpu), 40 (paper)
MD_KAPPAS: tuple = ("logcosh", "relativistic", "half_sq_l2")  # smooth strictly convex K*
MD_BETAS: tuple[float, float] = (0.0, 0.9)  # beta1 and beta2 both equal to beta
MD_LAM: float = 2.5
RELAXED: tuple = (0.05, 0.9, 0.99)  # (lr, beta1, beta2) of the relaxed reading (lr lambda < 1)
A_MATRIX: tuple = ((1.0, 0.3), (0.3, 2.0))
C: tuple[float, float] = (2.0, -3.0)
X0_MD: tuple[float, float] = (0.3, -0.2)
ALPHA: float = 2.0  # ODE constant alpha
GAMMA: float = 0.3  # ODE constant gamma (eps gamma < 1)
EPS_NESTEROV: float = 0.5  # eps of the Nesterov ODE
X0_ODE: tuple[float, float] = (3.5, 3.5)
T_END: Optional[int] = None  # ODE time; None -> 15 (smoke), 30 (cpu, paper)
ODE_LR: float = 0.01  # step of lionlib.LionK run as the Euler scheme of the classical ODEs (and half of it)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lionlib import kappa
from lionlib.companion import theory_checks as checks
from lionlib.companion.notebook import by_scale, start
from lionlib.theory import special_cases
from lionlib.theory.dynamics import Quadratic, Wavy
from lionlib.theory.lyapunov import DiscreteConstants

report = start("12_mirror_classical", OUT_DIR)
md_steps = by_scale(MD_STEPS, smoke=5, cpu=12, paper=40)
t_end = by_scale(T_END, smoke=15.0, cpu=30.0, paper=30.0)
dt = torch.float64
quad = Quadratic(torch.tensor(A_MATRIX, dtype=dt), torch.tensor(C, dtype=dt))
wavy = Wavy(torch.tensor(C, dtype=dt), 0.5, 3.0)
Ks = {name: kappa.get(name) for name in MD_KAPPAS}
print(f"scale={SCALE} md_steps={md_steps} t_end={t_end}")

# %% [markdown]
# ## 1. Lion-K with β1 = β2 = β and ελ = 1 is mirror descent on F = f + ψ

# %%
md = {(k, beta): special_cases.mirror_runs(K, quad, MD_LAM, beta, X0_MD, md_steps) for k, K in Ks.items()
      for beta in MD_BETAS}
err = checks.check_mirror_descent(report, "Section 3.1 (mirror descent)", md)
print(f"max relative |Lion-K - mirror descent| over {len(md)} runs x {md_steps} steps: {err:.1e}")
hp = DiscreteConstants(RELAXED[0], RELAXED[1], RELAXED[2], MD_LAM)
for k, K in Ks.items():
    e = checks.identity_relaxed_mirror(report, "Section 3.1 (mirror descent)", K, quad, hp, X0_MD, md_steps)
    print(f"{k}: relaxed reading, max relative |difference| {e:.1e}")

# %%
fig, axes = plt.subplots(1, len(Ks), figsize=(5.2 * len(Ks), 5))
allx = torch.cat([torch.cat([a, b]) for a, b in md.values()]).numpy()
lim = max(0.6, float(np.abs(allx).max()) + 0.1)
g = np.linspace(-lim, lim, 160)
X, Y = np.meshgrid(g, g)
for ax, (k, K) in zip(np.atleast_1d(axes), Ks.items()):
    pts = torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))
    psi = torch.stack([K.conjugate(MD_LAM * p) / MD_LAM for p in pts]).numpy().reshape(X.shape)
    Fv = quad.f(pts).numpy().reshape(X.shape) + psi
    ax.contour(X, Y, np.where(np.isfinite(Fv), Fv, np.nan), levels=25, cmap="Greys", linewidths=0.6)
    for (kk, beta), (a, b) in md.items():
        if kk != k:
            continue
        line, = ax.plot(a[:, 0], a[:, 1], "-", lw=1.5, label=f"Lion-K, beta = {beta}")
        ax.plot(b[1:, 0], b[1:, 1], "o", mfc="none", ms=9, color=line.get_color(), label=f"mirror step, beta = {beta}")
    r = 1 / MD_LAM
    if K.gauge(torch.ones(2, dtype=dt)) is not None:
        ax.plot([-r, r, r, -r, -r], [-r, -r, r, r, -r], "k--", lw=1, label="dom: ||x||_inf <= 1/lambda")
    ax.set(aspect="equal", xlim=(-lim, lim), ylim=(-lim, lim), title=f"{k}: contours of F = f + psi", xlabel="x1",
           ylabel="x2")
    ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
report.savefig(fig, "mirror_descent", element="Section 3.1 (mirror descent)")
plt.show()

# %% [markdown]
# ## 2. Heavy ball and Nesterov: the Lion-K ODE with K = ½‖·‖², λ → 0, and H = the classical energy
#
# Three checks per method compare lionlib with the independently solved second-order ODE: the Lion-K ODE
# (`lionlib.theory.dynamics.integrate`) follows it, lionlib's H equals its energy, and the optimizer
# `lionlib.LionK` itself, with the betas PAPER.md §2.5 maps to the ODE (β2 = 1 − γε_step, β1 = 1 − εγ, or
# β1 = β2 for heavy ball), is its Euler scheme: the error halves when the step halves. The reference's own
# energy facts (E never increases, −dE/dt is the dissipation) are textbook identities of the reference,
# stated as identities: they do not involve lionlib.

# %%
classical, euler = {}, {}
for name, eps in (("heavy ball (eps = 0)", 0.0), (f"Nesterov (eps = {EPS_NESTEROV})", EPS_NESTEROV)):
    classical[name], euler[name] = checks.check_classical(report, "Section 3.1 (classical ODEs)", name, wavy, ALPHA,
                                                          GAMMA, eps, X0_ODE, t_end, ODE_LR)
for name, run in classical.items():
    print(f"{name}: max |x_LionK - x_ref| = {float((run.x_lionk - run.x).abs().max()):.1e}, "
          f"max |H - E| = {float((run.H - run.E).abs().max()):.1e}, E: {float(run.E[0]):.3f} -> {float(run.E[-1]):.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
allx = torch.cat([run.x for run in classical.values()]).numpy()
lo, hi = float(allx.min()) - 0.5, float(allx.max()) + 0.5  # every path inside the axes
g = np.linspace(lo, hi, 200)
X, Y = np.meshgrid(g, g)
Z = wavy.f(torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))).numpy().reshape(X.shape)
axes[0].contour(X, Y, Z, levels=30, cmap="Greys", linewidths=0.5)
rows = []
for (name, run), ls in zip(classical.items(), ("-", "--")):
    axes[0].plot(run.x[:, 0], run.x[:, 1], ls, lw=1.5, label=f"{name}: second-order ODE")
    axes[0].plot(run.x_lionk[::10, 0], run.x_lionk[::10, 1], "o", ms=4, mfc="none", color=axes[0].lines[-1].get_color(),
                 label=f"{name}: Lion-K ODE")
    rows.append(pd.DataFrame({"ODE": name, "t": run.t, "E": run.E.numpy(), "H (lionlib, lambda -> 0)": run.H.numpy(),
                              "dissipation": run.dissipation.numpy(), "-dE/dt (finite diff.)": run.dE_fd}))
axes[0].set(aspect="equal", xlim=(lo, hi), ylim=(lo, hi), title="trajectories on the non-convex f", xlabel="x1",
            ylabel="x2")
axes[0].legend(fontsize=8)
df = pd.concat(rows)
sns.lineplot(df, x="t", y="E", hue="ODE", ax=axes[1], lw=3, alpha=0.4)
sns.scatterplot(df.iloc[::6], x="t", y="H (lionlib, lambda -> 0)", hue="ODE", style="ODE", ax=axes[1], s=14, legend=False)
axes[1].set(ylabel="energy", title="classical energy E (lines) = lionlib H (markers)")
sns.lineplot(df, x="t", y="dissipation", hue="ODE", ax=axes[2], lw=3, alpha=0.4)
sns.scatterplot(df.dropna().iloc[::6], x="t", y="-dE/dt (finite diff.)", hue="ODE", style="ODE", ax=axes[2], s=14,
                legend=False)
axes[2].set(yscale="log", ylim=(1e-14, None), ylabel="-dE/dt", title="-dE/dt (markers) = gamma|x'|^2 + eps(1-eps gamma)|m'|^2 (lines)")
fig.tight_layout()
report.savefig(fig, "classical_odes", element="Section 3.1 (classical ODEs)")
plt.show()

# %% [markdown]
# ## Claims

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
