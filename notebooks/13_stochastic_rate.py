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
# # Stochastic gradients, and the discrete-time rate
#
# **Stochastic gradients.** Later arXiv versions extend the analysis to stochastic gradients (PAPER.md
# §4.5, [S2]); the statement itself was not retrieved. Two things can be said without it:
#
# - phase 1 does not depend on the gradients at all: |x_{t+1,i}| ≤ (1 − ελ)|x_{t,i}| + ε, so the
#   violation max(‖x_t‖∞ − 1/λ, 0) ≤ (1 − ελ)^t·violation_0 **for any noise** (a check);
# - in phase 2 the KKT score S(x) = ‖∇f(x)‖₁ + λ⟨x, ∇f(x)⟩ (true gradient, PAPER.md §3) does not go to
#   0 but floors at a level that should grow with the noise σ and with the step size ε, as in the
#   O(1/√T + σ)-type rates of the Muon follow-up (PAPER.md §10, [S8]) (two findings, with seeds).
#
# **The discrete rate.** PAPER.md §4.4 sums Theorem 4.1's one-step inequality into
# (1/T)Σ_{t<T} Δ_t ≤ (H_d(x_0, m_0) − inf H_d)/T + 2Lε²d for Lion after phase 1 (‖sign − λx‖² ≤ 4d).
# It is checked along runs for several step sizes, with inf H_d replaced by the smaller f* (the box
# minimum of f: H_d ≥ f on the box because the coupling term is ≥ 0). The KKT score's best value up to
# t is plotted against t; the O(1/√T) rate the digest quotes for min_t S (with ε ∝ 1/√T) is the Muon
# follow-up's, shown for orientation (a fitted slope, not a claim).
#
# **Settings chosen here** (parameters below): Lion (K = ℓ1), f = ½‖x − c‖² with c = (0.5, −3) so that one
# coordinate of the optimum x* = (0.5, −1) is interior (with c = (2, −3) both coordinates sit on the box and
# S is exactly 0 without noise); λ = 1, β = (0.9, 0.99), x_0 = (−3, 4), m_0 = 0; gradient noise
# ∇f(x) + σξ, ξ ~ N(0, I), σ ∈ {0, 0.3, 1, 3}; ε ∈ {0.003, 0.01, 0.03}; explicit decay (Lion as used) for
# the stochastic part, the implicit scheme of Theorem 4.1 for the rate.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
SEED: int = 0  # first seed; the runs use SEED, SEED+1, ...
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
N_SEEDS: Optional[int] = None  # None -> 2 (smoke), 5 (cpu), 10 (paper)
STEPS: Optional[int] = None  # None -> 1500 (smoke), 3000 (cpu), 6000 (paper)
C: tuple[float, float] = (0.5, -3.0)
LAM: float = 1.0
BETAS: tuple[float, float] = (0.9, 0.99)
X0: tuple[float, float] = (-3.0, 4.0)
SIGMAS: tuple = (0.0, 0.3, 1.0, 3.0)
LRS: tuple = (0.003, 0.01, 0.03)
NOISE_PAIR: tuple[float, float] = (0.3, 1.0)  # finding 1: floor(sigma_hi) vs floor(sigma_lo) at lr LR_FIXED
LR_FIXED: float = 0.01
LR_PAIR: tuple[float, float] = (0.01, 0.03)  # finding 2: floor(lr_hi) vs floor(lr_lo) at sigma SIGMA_FIXED
SIGMA_FIXED: float = 1.0
RATE_LRS: tuple = (0.003, 0.01, 0.03)  # deterministic runs for the rate
RATE_T: tuple = (300, 1000, 3000, 10000)  # lr RATE_EPS0 / sqrt(T): runs for the O(1/sqrt(T)) orientation
RATE_EPS0: float = 0.3

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lionlib import kappa
from lionlib.companion import theory_checks as checks
from lionlib.companion.notebook import by_scale, say, start
from lionlib.companion.report import Protocol
from lionlib.theory import measures, stochastic
from lionlib.theory.dynamics import Quadratic, simulate
from lionlib.theory.lyapunov import DiscreteConstants

report = start("13_stochastic_rate", OUT_DIR)
n_seeds = by_scale(N_SEEDS, smoke=2, cpu=5, paper=10)
steps = by_scale(STEPS, smoke=1500, cpu=3000, paper=6000)
seeds = tuple(range(SEED, SEED + n_seeds))
problem = Quadratic.isotropic(C)
l1 = kappa.get("l1")
dt = torch.float64
print(f"scale={SCALE} steps={steps} seeds={seeds}")

# %% [markdown]
# ## Protocols (written before the runs)
#
# The floor of a run is the mean of S(x_t) over its last quarter of steps (x_t projected on the box,
# where S is defined). Effects are paired by seed (both arms of a seed share the noise draws) and taken
# on a log scale, so that a positive effect means "higher floor".

# %%
noise_protocol = Protocol(
    hypothesis=f"Lion's KKT floor grows with the gradient noise: sigma = {NOISE_PAIR[1]} gives a higher floor than "
               f"sigma = {NOISE_PAIR[0]} (lr = {LR_FIXED})",
    metric="log10(floor(sigma_hi) / floor(sigma_lo)), floor = mean S(x_t) over the last quarter of the run",
    seeds=seeds, design="paired", source="paper [inferred] (stochastic extension, PAPER.md 4.5; rates of [S8])",
    choices=f"toy f = 1/2||x - c||^2, c = {C}, lambda = {LAM}, betas {BETAS}, {steps} steps, Gaussian noise")
step_protocol = Protocol(
    hypothesis=f"Lion's KKT floor grows with the step size: lr = {LR_PAIR[1]} gives a higher floor than lr = "
               f"{LR_PAIR[0]} (sigma = {SIGMA_FIXED})",
    metric="log10(floor(lr_hi) / floor(lr_lo)), floor = mean S(x_t) over the last quarter of the run",
    seeds=seeds, design="paired", source="paper [inferred] (O(lr) floor of the discrete theorem, PAPER.md 4.4)",
    choices=f"toy f = 1/2||x - c||^2, c = {C}, lambda = {LAM}, betas {BETAS}, {steps} steps, Gaussian noise")

# %% [markdown]
# ## Stochastic runs: every (σ, ε, seed) at once

# %%
cfg = list(itertools.product(SIGMAS, LRS, seeds))
X = stochastic.noisy_lion_batch(l1, problem, X0, steps, torch.tensor([c[1] for c in cfg], dtype=dt), LAM, BETAS,
                                torch.tensor([c[0] for c in cfg], dtype=dt), [c[2] for c in cfg])
S = stochastic.kkt_l1_rows(problem, X, LAM)  # (steps+1, runs)
floor = S[-(steps // 4):].mean(0)
dists = [LAM * (X[:, j].abs().amax(-1) - 1 / LAM).clamp(min=0) for j in range(len(cfg))]  # dist(lambda x, box)
entered = [measures.entry_step(d) for d in dists]
print(f"phase 1 under noise: entry steps from {min(entered)} to {max(entered)}")
for lr in LRS:
    checks.check_phase1(report, "Stochastic gradients (arXiv v2+)", f"phase 1 under gradient noise, lr = {lr}, every "
                        "sigma and seed: dist_t <= (1 - lr lambda)^t dist_0 at every step",
                        [d for d, c in zip(dists, cfg) if c[1] == lr], lr, LAM, radius=LAM * max(map(abs, X0)))
report.check("Stochastic gradients (arXiv v2+)", "every noisy run enters the box and stays (runs ending outside)",
             sum(e is None for e in entered), "==", 0, fmt=".0f")

floors = pd.DataFrame([{"sigma": s, "lr": lr, "seed": sd, "floor": float(fl)} for (s, lr, sd), fl in zip(cfg, floor)])
print(floors.groupby(["sigma", "lr"]).floor.agg(["mean", "std"]).unstack("lr").to_string(float_format="{:.3g}".format))


def paired(key, lo, hi, fixed_key, fixed):
    sub = floors[floors[fixed_key] == fixed].set_index([key, "seed"]).floor
    return [float(np.log10(sub[(hi, sd)] / sub[(lo, sd)])) for sd in seeds]


report.finding("Stochastic gradients (arXiv v2+)", "the KKT floor grows with the gradient noise",
               paired("sigma", *NOISE_PAIR, "lr", LR_FIXED), protocol=noise_protocol)
report.finding("Stochastic gradients (arXiv v2+)", "the KKT floor grows with the step size",
               paired("lr", *LR_PAIR, "sigma", SIGMA_FIXED), protocol=step_protocol)

# %%
# NBVAL_IGNORE_OUTPUT
say("Noise: " + report.sentence("the KKT floor grows with the gradient noise"))
say("Step size: " + report.sentence("the KKT floor grows with the step size"))
report.findings()

# %%
fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
t = np.arange(steps + 1)
for (s, lr, sd), j in zip(cfg, range(len(cfg))):
    if lr == LR_FIXED and sd == seeds[0]:
        axes[0].plot(t, S[:, j].numpy() + 1e-12, lw=0.8, label=f"sigma={s}")
axes[0].set(yscale="log", ylim=(1e-5, 30), xlabel="step", ylabel="S(x_t)", title=f"KKT score, lr = {LR_FIXED}, seed {seeds[0]}")
axes[0].legend(fontsize=9)
sns.pointplot(floors, x="sigma", y="floor", hue="lr", ax=axes[1], errorbar=("ci", 95), seed=SEED, dodge=0.2,
              markersize=4)  # seeded bootstrap: the same PNG on every run
axes[1].set(yscale="log", ylabel="floor: mean S over the last quarter", title="KKT floor vs noise and step size")
for j, (s, lr, sd) in enumerate(cfg):
    if sd == seeds[0] and s == SIGMAS[-1]:
        axes[2].plot(t, dists[j].numpy() / LAM + 1e-16, lw=1, label=f"lr={lr}, sigma={s}")
        axes[2].plot(t, (1 - lr * LAM) ** t * float(dists[j][0]) / LAM, "k--", lw=0.8)
axes[2].set(yscale="log", ylim=(1e-6, 10), xlim=(0, 600), xlabel="step", title="phase 1 under the largest noise (dashed: bounds)")
axes[2].legend(fontsize=9)
fig.tight_layout()
report.savefig(fig, "stochastic_kkt_floor", element="Stochastic gradients (arXiv v2+)")
plt.show()

# %% [markdown]
# ## The discrete rate (implicit scheme, no noise)
#
# Identity: for every step size and every T after entry,
# (1/(T − t_0))Σ_{t_0 ≤ t < T} Δ_t ≤ (H_d(t_0) − f*)/(T − t_0) + 2Lε²d, with t_0 the entry step. It
# telescopes from the one-step inequality (checked in 03 and 11), so it holds by construction and is
# not counted as a check. The check is the rate itself: (1/T)ΣΔ_t must fall like a power of T until it
# meets its floor 2Lε²d, which is explicit; its fitted slope against log T over the last decade before
# (H_d(t_0) − f*)/T reaches 10× the floor must be ≤ −1/2 for every ε (no decay would give 0, the
# theorem's 1/T gives −1).

# %%
f_star = float(problem.f(problem.box_minimiser(LAM)))
rate_runs = {lr: simulate(l1, problem, DiscreteConstants(lr, *BETAS, weight_decay=LAM), X0, steps, implicit=True)
             for lr in RATE_LRS}
summed = -np.inf
for lr, tr in rate_runs.items():
    t0, avg = measures.average_delta(tr)
    n = torch.arange(1, len(avg) + 1, dtype=dt)
    summed = max(summed, float((avg - (tr.H[t0] - f_star) / n - 2 * problem.L * lr**2 * tr.x.shape[-1]).max()))
report.identity("Theorem 4.1 (rate)", "summed form: average Delta_t after entry <= (H_d(t_0) - f*)/T + 2 L lr^2 d, every "
                "lr and T (max lhs - rhs; telescoped one-step inequality)", summed, "<=", 0.0)
checks.check_rate_slope(report, "Theorem 4.1 (rate)", rate_runs, problem, f_star)
for lr, tr in rate_runs.items():
    slope, T_lo, T_hi = measures.rate_slope(tr, lr, problem.L, f_star)
    print(f"lr = {lr}: fitted slope of (1/T) sum Delta_t over T in [{T_lo}, {T_hi}]: {slope:.2f}")
rate_rows = []
for lr, tr in rate_runs.items():
    S_det = stochastic.kkt_l1_rows(problem, tr.x, LAM)
    rate_rows.append(pd.DataFrame({"lr": lr, "step": np.arange(steps + 1), "best S up to t": torch.cummin(S_det, 0).values,
                                   "running mean of S": torch.cumsum(S_det, 0) / torch.arange(1, steps + 2)}))

sqrt_rows = []
for T in RATE_T:
    lr = RATE_EPS0 / np.sqrt(T)
    Xs = stochastic.noisy_lion_batch(l1, problem, X0, T, torch.tensor([lr], dtype=dt), LAM, BETAS,
                                     torch.zeros(1, dtype=dt), [SEED], implicit=True)
    Ss = stochastic.kkt_l1_rows(problem, Xs[:, 0], LAM)
    sqrt_rows.append({"T": T, "lr": lr, "mean S over the last quarter": float(Ss[-(T // 4):].mean())})
sqrt_df = pd.DataFrame(sqrt_rows)
slope = np.polyfit(np.log(sqrt_df["T"]), np.log(sqrt_df["mean S over the last quarter"]), 1)[0]
print(sqrt_df.to_string(float_format="{:.3g}".format))
report.illustration("Theorem 4.1 (rate)", f"fitted slope of log(mean S over the last quarter) vs log T with lr = "
                    f"{RATE_EPS0}/sqrt(T) (the Muon follow-up's rate for min_t S is -1/2 or steeper)", slope)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
rd = pd.concat(rate_rows)
sns.lineplot(rd[rd.step > 0], x="step", y="best S up to t", hue="lr", ax=axes[0], lw=1.4, palette="deep")
tt = np.arange(1, steps + 1)
axes[0].plot(tt, 10 / np.sqrt(tt), "k:", lw=1.2, label="reference 10/sqrt(t)")
axes[0].set(xscale="log", yscale="log", ylim=(1e-7, 30), title="best KKT score up to t (implicit scheme, no noise)")
axes[0].legend(fontsize=9)
axes[1].plot(sqrt_df["T"], sqrt_df["mean S over the last quarter"], "o-", label=f"lr = {RATE_EPS0}/sqrt(T)")
T_arr = np.asarray(sqrt_df["T"], dtype=float)
axes[1].plot(T_arr, sqrt_df["mean S over the last quarter"].iloc[0] * np.sqrt(T_arr[0] / T_arr), "k:",
             label="slope -1/2 (digest, from [S8])")
axes[1].set(xscale="log", yscale="log", xlabel="T", title=f"floor with lr ~ 1/sqrt(T): fitted slope {slope:.2f}")
axes[1].legend(fontsize=9)
fig.tight_layout()
report.savefig(fig, "discrete_rate", element="Theorem 4.1 (rate)")
plt.show()

# %% [markdown]
# ## Claims

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
