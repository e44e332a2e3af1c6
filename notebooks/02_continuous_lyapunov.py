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
# # The continuous-time Lyapunov theorem (paper Theorem 3.1)
#
# The continuous-time Lion-K dynamics (PAPER.md §2.5, paper's sign convention: m is minus PyTorch's
# `exp_avg`)
#
#     dm/dt = −α∇f(x) − γm,   m̃ = m + ε dm/dt,   dx/dt = ∇K(m̃) − λx
#
# has, for a convex differentiable K and εγ ≤ 1, the Lyapunov function (PAPER.md §4.3)
#
#     H(x, m) = αf(x) + (γ/λ)K*(λx) + C·(K*(λx) + K(m) − λ⟨m, x⟩),   C = (1 − εγ)/(1 + ελ),
#
# with the exact identity dH/dt = −Δ(x, m) ≤ 0, where
#
#     Δ = (λ+γ)/(1+ελ)·⟨∇K(m̃) − λx, m̃ − ∇K*(λx)⟩ + (1−εγ)/(1+ελ)·⟨∇K(m̃) − ∇K(m), dm/dt⟩.
#
# This notebook integrates the ODE accurately (scipy DOP853, rtol 1e-12) and shows:
# phase 1, dist(λx_t, dom K*) ≤ e^{−λt} dist(λx_0, dom K*); then H decreasing while f is not
# monotone; dH/dt = −Δ along the path (finite differences of H on the dense solution, and
# H(0) − H(T) = ∫Δ dt); and convergence to a KKT point of min αf(x) + (γ/λ)K*(λx) (S(x_t) → 0, with
# S the Fenchel gap K(−(α/γ)∇f) + K*(λx) + λ⟨x, (α/γ)∇f⟩).
#
# **Which coefficient.** PAPER.md warns that a recollected printed coefficient (1 − ελ)/(1 + ελ) is
# not sign-definite; the verified C = (1 − εγ)/(1 + ελ) is used (the test suite shows the other one
# failing on random states).
#
# **Settings chosen here** (the paper's figure settings for this theorem were not retrieved; all are
# parameters below): f = ½(x − c)ᵀA(x − c) with A = [[1, 0.3], [0.3, 2]], c = (2, −3); smooth K =
# logcosh (δ = 0.3, a smoothed Lion), relativistic (δ = 0.3) and ½‖·‖² (momentum SGD with weight decay);
# α = 2, γ = 0.2 and ε = 0.05 (weak friction and little gradient enhancement, so that f can oscillate),
# λ = 0.8; start x_0 = (3.5, 3.5) outside the box ‖x‖∞ ≤ 1/λ = 1.25, m_0 = 0. The phase-1 bound is an
# upper bound, not a prediction: the trajectories enter well before it reaches zero (the largest
# ratio distance / bound is printed below, with the time where it occurs).

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
T_END: Optional[float] = None  # integration time; None -> 25 (smoke), 40 (cpu, paper)
KAPPAS: tuple = ("logcosh", "relativistic", "half_sq_l2")  # smooth K (Theorem 3.1 needs differentiable K)
DELTA: float = 0.3  # smoothing width of logcosh and relativistic
ALPHA: float = 2.0  # ODE constants (EPS * GAMMA at most 1)
GAMMA: float = 0.2
EPS: float = 0.05
LAM: float = 0.8
A_MATRIX: tuple = ((1.0, 0.3), (0.3, 2.0))
C: tuple[float, float] = (2.0, -3.0)
X0: tuple[float, float] = (3.5, 3.5)  # outside the box
FD_STEP: float = 2e-3  # h of the 4th-order central difference of H

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lionlib import kappa
from lionlib.companion import theory_checks as checks
from lionlib.companion.notebook import by_scale, start
from lionlib.theory.dynamics import Quadratic, integrate
from lionlib.theory.lyapunov import H, Delta, OdeConstants, kkt_score, phase1_factor_continuous

report = start("02_continuous_lyapunov", OUT_DIR)
t_end = by_scale(T_END, smoke=25.0, cpu=40.0, paper=40.0)
consts = OdeConstants(alpha=ALPHA, gamma=GAMMA, eps=EPS, lam=LAM)
problem = Quadratic(torch.tensor(A_MATRIX, dtype=torch.float64), torch.tensor(C, dtype=torch.float64))
Ks = {name: kappa.get(name, **({"delta": DELTA} if name in ("logcosh", "relativistic") else {})) for name in KAPPAS}
print(f"scale={SCALE} t_end={t_end} C={consts.C:.4f}")

# %% [markdown]
# ## Integrate, then evaluate H, Δ, f, dist and S along the path
#
# `integrate` returns samples on a uniform grid plus scipy's dense interpolant (`state(t)`), which the
# finite differences use between samples.

# %%
n_eval = round(t_end / 0.1) + 1  # samples every 0.1 time units, the same times at every scale
runs = {name: integrate(K, problem, consts, X0, t_end, n_eval=n_eval) for name, K in Ks.items()}


def finite_difference_dH(name, t):
    """4th-order central difference of H along the dense solution."""
    K, tr = Ks[name], runs[name]

    def H_at(s):
        x, m = tr.state(s)
        return float(H(K, consts, x, m, problem.f(x)))

    h = FD_STEP
    return (-H_at(t + 2 * h) + 8 * H_at(t + h) - 8 * H_at(t - h) + H_at(t - 2 * h)) / (12 * h)


rows = []
for name, tr in runs.items():
    K = Ks[name]
    feasible = torch.isfinite(tr.H).numpy()
    entry = int(np.argmax(feasible))
    for i, t in enumerate(tr.t):
        inside = feasible[i] and i > entry + 1 and i < len(tr.t) - 1  # FD stencil inside the feasible part
        rows.append({"K": name, "t": t, "f": float(tr.f[i]), "H": float(tr.H[i]), "Delta": float(tr.Delta[i]),
                     "dist": float(tr.dist[i]),
                     "dH/dt": finite_difference_dH(name, t) if inside else np.nan,
                     "S": float(kkt_score(K, tr.x[i], problem.grad(tr.x[i]), LAM, ratio=ALPHA / GAMMA))})
df = pd.DataFrame(rows)
df["bound"] = df.groupby("K")["dist"].transform("first") * phase1_factor_continuous(df.t, LAM)
df["|dH/dt + Delta|"] = (df["dH/dt"] + df.Delta).abs()

# %% [markdown]
# ## Phase 1: e^{−λt}
#
# For logcosh and relativistic dom K* is the box |y_i| ≤ 1, so λx must enter ‖x‖∞ ≤ 1/λ; for ½‖·‖²,
# dom K* is everything and there is no phase 1.

# %%
ph = df[df.groupby("K")["dist"].transform("first") > 0]
ratios = (ph.dist / ph.bound)[ph.t > 0]
entries = ph[ph.dist == 0].groupby("K")["t"].min()
print(f"max dist(lambda x_t, dom K*) / (e^(-lambda t) dist_0): {ratios.max():.4f}, at t = {ph.t[ratios.idxmax()]:.1f}; "
      f"at the entry times the bound is still {ph.bound[ph.t.isin(entries)].min():.2f} or more")
print("entry time into dom K*:", entries.round(2).to_dict())
checks.check_continuous_phase1(report, "Theorem 3.1", "phase 1: dist(lambda x_t, dom K*) <= e^{-lambda t} dist_0",
                               [runs[k] for k in ph.K.unique()], LAM)
report.check("Theorem 3.1", "phase 1: every K with a bounded dom K* enters it",
             float(len(entries) == len(ph.K.unique())), "==", 1.0)

# %% [markdown]
# ## Phase 2: H decreases while f does not; dH/dt = −Δ
#
# With ½‖·‖² (heavy ball with weak friction) the momentum overshoots and f goes up and down while
# H still decreases. With the two box-type K the speed |dx/dt| is bounded and, on this problem, f
# may or may not decrease monotonically after entry (the largest increase of f per K is printed below);
# H decreases for all three.

# %%
fin = df[np.isfinite(df.H)]
h_rise = fin.groupby("K")["H"].apply(lambda s: s.diff().max()).max()
f_rise = fin.groupby("K")["f"].apply(lambda s: s.diff().max())
fd_err = (df["|dH/dt + Delta|"] / (1 + df.Delta.abs())).max()
print(f"largest increase of H between samples after entry (all K): {h_rise:.2e}")
print("largest increase of f between samples after entry:", f_rise.round(4).to_dict())
print(f"max |dH/dt + Delta| / (1 + |Delta|) along the paths: {fd_err:.2e}")
report.illustration("Theorem 3.1", "min Delta along the paths (Delta >= 0 follows from its formula, a sum of "
                    "monotonicity terms)", df.Delta.min())

nodes, weights = np.polynomial.legendre.leggauss(6)
rel_err = {}
for name, tr in runs.items():
    K, t0 = Ks[name], float(fin[fin.K == name].t.min())
    steps = tr.sol.ts[tr.sol.ts >= t0]
    integral = 0.0  # Gauss-Legendre on each solver step, where the dense output is one polynomial
    for a, b in zip(steps[:-1], steps[1:]):
        for node, w in zip(nodes, weights):
            x, m = tr.state(0.5 * (a + b) + 0.5 * (b - a) * node)
            integral += 0.5 * (b - a) * w * float(Delta(K, consts, x, m, problem.grad(x)))
    x0, m0 = tr.state(steps[0])
    decrease = float(H(K, consts, x0, m0, problem.f(x0)) - tr.H[-1])
    rel_err[name] = abs(decrease - integral) / decrease
    print(f"{name}: H(t_entry) - H(T) = {decrease:.10f}, integral of Delta = {integral:.10f}")
H_scale = 1 + float(fin.H.abs().max())
report.check("Theorem 3.1", "H never increases after entry: max (H(t_{i+1}) - H(t_i)) / (1 + max |H|)",
             h_rise / H_scale, "<=", 0.0, stable=False, tol=1e-12,
             why="the solver's rtol 1e-12 on the state, carried into H: 10x the rounding of H's terms (observed "
                 "<= 2e-16 relative)", across=checks.at_rounding(1e-12))
report.check("Theorem 3.1", "f is not monotone meanwhile (half_sq_l2, weak friction): max increase of f",
             f_rise["half_sq_l2"], ">", 0.1, stable=False)
checks.check_dH_equals_minus_Delta(report, "Theorem 3.1", "dH/dt = -Delta: max |dH/dt + Delta| / (1 + |Delta|) "
                                   "(finite differences of H on the dense solution)", Ks, consts, runs, problem,
                                   h=FD_STEP)
report.check("Theorem 3.1", "H(t_entry) - H(T) = integral of Delta: max relative error", max(rel_err.values()), "<=",
             0.0, stable=False, tol=2e-12, why="6-point Gauss-Legendre on each solver step (exact for the dense "
             "output's polynomials up to Delta's nonlinearity) and the solver's rtol 1e-12: 10x the observed 1.5e-13",
             across=checks.at_rounding(2e-12))

# %% [markdown]
# ## Convergence to a KKT point
#
# S(x) ≥ 0 on the feasible set and S = 0 exactly at stationary points of αf + (γ/λ)K*(λx); it should
# decay to solver precision.

# %%
S_end = df[df.t == df.t.max()].set_index("K")["S"]
print("S(x_T):", S_end.map("{:.2e}".format).to_dict())
S_limit = by_scale(None, smoke=2e-5, cpu=3e-8, paper=3e-8)  # 10x the slowest K's S(x_T) at this scale's T
report.check("Theorem 3.1", "KKT score S(x_T) for every K (10x the slowest K's value at the scale's T)",
             S_end.max(), "<=", S_limit, stable=False, scaled=True, across=checks.Tolerance(0.5, 1e-10, "an exponentially decaying "
                                                                               "score near solver precision"))

# %% [markdown]
# ## Figure

# %%
fig, axes = plt.subplots(2, 3, figsize=(16, 9))
styles = dict(zip(runs, ["-", "--", ":"]))
ax = axes[0, 0]
xy = torch.cat([tr.x for tr in runs.values()]).numpy()
lo, hi = min(xy.min(), -1 / LAM) - 0.5, max(xy.max(), 1 / LAM) + 0.5  # every path inside the axes
g = np.linspace(lo, hi, 200)
X, Y = np.meshgrid(g, g)
Z = problem.f(torch.tensor(np.stack([X.ravel(), Y.ravel()], 1))).numpy().reshape(X.shape)
ax.contour(X, Y, Z, levels=25, cmap="Greys", linewidths=0.6)
r = 1 / LAM
ax.plot([-r, r, r, -r, -r], [-r, -r, r, r, -r], "k--", lw=1.2, label="box ||x||_inf = 1/lambda")
for name, tr in runs.items():
    ax.plot(tr.x[:, 0], tr.x[:, 1], lw=1.6, ls=styles[name], label=name)
ax.set(aspect="equal", title="trajectories (x0 outside the box)", xlabel="x1", ylabel="x2", xlim=(lo, hi), ylim=(lo, hi))
ax.legend(fontsize=8)
sns.lineplot(ph.assign(ratio=ph.dist / ph.bound), x="t", y="ratio", hue="K", style="K", ax=axes[0, 1], lw=1.6)
axes[0, 1].axhline(1.0, color="black", ls="--", lw=1.5, label="bound (ratio = 1)")
axes[0, 1].set(ylim=(0, 1.1), xlim=(0, float(entries.max()) + 1), ylabel="dist / (e^{-lambda t} dist_0)",
               title="phase 1: distance to dom K* relative to its bound")
axes[0, 1].legend(fontsize=8)
sns.lineplot(df, x="t", y="f", hue="K", style="K", ax=axes[0, 2], lw=1.6)
axes[0, 2].set(yscale="log", title="f(x_t): not monotone for half_sq_l2")
fin_gap = fin.assign(gap=fin.H - fin.groupby("K").H.transform("min") + 1e-12)
sns.lineplot(fin_gap, x="t", y="gap", hue="K", style="K", ax=axes[1, 0], lw=1.6)
axes[1, 0].set(yscale="log", ylabel="H - min H (+1e-12)", title="H(x_t, m_t) after entry: non-increasing")
ok = df.dropna(subset=["dH/dt"])
sns.lineplot(ok, x="t", y="Delta", hue="K", ax=axes[1, 1], lw=3, alpha=0.35)
sns.scatterplot(ok.iloc[::4].assign(minus_dH=-ok["dH/dt"]), x="t", y="minus_dH", hue="K", style="K", ax=axes[1, 1],
                s=14, legend=False)
axes[1, 1].set(yscale="log", ylabel="-dH/dt", title="-dH/dt (markers: finite differences) = Delta (lines)")
sns.lineplot(df, x="t", y="S", hue="K", style="K", ax=axes[1, 2], lw=1.6)
axes[1, 2].set(yscale="log", title="KKT score S(x_t) -> 0")
fig.tight_layout()
report.savefig(fig, "continuous_lyapunov", element="Theorem 3.1")
plt.show()

# %% [markdown]
# ## Claims
#
# Every number above, then the checked verdicts (values at solver-precision level differ between
# machines and are not printed in the checked cell).

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
