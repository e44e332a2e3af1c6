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
# # Cautious updates and cautious weight decay against the Lyapunov view
#
# The authors' follow-ups change Lion in two ways (lionlib: `cautious=True`, `cautious_weight_decay=True`
# on `Lion`, `LionK` and `Muon`):
#
# - **C-Lion / C-Muon** (arXiv 2411.16085): the direction u is masked where it disagrees in sign with the
#   gradient (u g ≤ 0) and the kept coordinates rescaled by numel / kept;
# - **cautious weight decay, CWD** (arXiv 2510.12402): the decay acts only where u and x agree in sign.
#
# The Lyapunov view (PAPER.md §3–4) reads Lion with decay λ as minimising f on the box ‖x‖∞ ≤ 1/λ
# (Muon: on the ball σ_max ≤ 1/λ), with H_d = +∞ outside it. What it predicts for the two changes
# (`lionlib.theory.cautious`):
#
# 1. **C-Lion** has |u_i| ≤ numel, so the phase-1 argument still contracts λx, but into the box of
#    radius numel/λ, not 1/λ (a check, with plain Lion's 1/λ bound as the control); whether it stays in the
#    1/λ box depends on how often the mask drops coordinates (a finding). C-Muon's masked, rescaled
#    direction has an operator norm s that may exceed 1, so its ball has radius s/λ (with s measured from
#    the run this holds for any iterates: an identity, not a check) and whether it stays in the 1/λ ball
#    is a finding.
# 2. **CWD** leaves coordinates that u pushes outward undecayed, so no set is invariant: a start inside
#    the box can leave it (a check), and then H_d = +∞, so H_d is no Lyapunov function for it. Its rest
#    points are the stationary points of f, as the CWD paper says ("it optimises the original loss, not
#    the constrained one"): whether it ends outside the box and below the constrained loss is measured
#    over seeds (findings).
#
# **Settings chosen here** (parameters below): 01's box problem f = ½‖x − c‖², c = (2, −3), λ = 1,
# ε = 0.01, β = (0.9, 0.99), explicit decay, and 06's spectral problem (least squares, 8×6, σ_max of the
# minimiser 3/λ, of the start 4/λ, exact SVD, lr 0.05, momentum 0.95). The findings' seeds draw a
# start uniform in [−4, 4]² and the gradient noise σξ of the box runs, and the random problem of the
# spectral runs. Everything runs `lionlib.Lion` / `lionlib.Muon` themselves, in float64. C-Lion against
# Lion on the CIFAR-10 or GPT trainers needs the experiment protocol's runs (as 07/08) and is not part
# of this notebook.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
SEED: int = 0  # first seed of the findings
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
STEPS: Optional[int] = None  # Lion steps per run; None -> 1500 (smoke), 3000 (cpu, paper)
MUON_STEPS: Optional[int] = None  # Muon steps per run; None -> 300 (smoke), 800 (cpu), 2000 (paper)
N_SEEDS: Optional[int] = None  # seeds per finding; None -> 5 (smoke, cpu), 10 (paper)
C: tuple[float, float] = (2.0, -3.0)  # c, the unconstrained minimiser (outside the box)
STARTS: tuple = ((-3.0, 4.0), (0.2, 0.3), (2.0, -3.0))  # outside, inside, at c
LAM: float = 1.0  # lambda: the box has radius 1/lambda
LR: float = 0.01  # Lion's epsilon
BETAS: tuple[float, float] = (0.9, 0.99)
NOISE: float = 1.0  # sigma of the Gaussian gradient noise of the findings' box runs
START_RANGE: float = 4.0  # the findings' starts are uniform in [-START_RANGE, START_RANGE]^2
ROWS: int = 8  # the spectral problem's X is ROWS x COLS
COLS: int = 6
N_SAMPLES: int = 32  # rows of A
MUON_LR: float = 0.05
MOMENTUM: float = 0.95
SIGMA_TRUE: float = 3.0  # lambda sigma_max of the unconstrained minimiser
SIGMA_START: float = 4.0  # lambda sigma_max of X_0

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from lionlib import kappa
from lionlib.companion import cautious_checks as cc
from lionlib.companion.notebook import by_scale, say, start
from lionlib.theory import cautious
from lionlib.theory.dynamics import Quadratic
from lionlib.theory.lyapunov import H_d, DiscreteConstants

report = start("14_cautious", OUT_DIR)
steps = by_scale(STEPS, smoke=1500, cpu=3000, paper=3000)
muon_steps = by_scale(MUON_STEPS, smoke=300, cpu=800, paper=2000)
seeds = tuple(range(SEED, SEED + by_scale(N_SEEDS, smoke=5, cpu=5, paper=10)))
quad = Quadratic.isotropic(C)
CO, CWD_EL = "Cautious optimizers (arXiv 2411.16085)", "Cautious weight decay (arXiv 2510.12402)"  # paper elements
VARIANTS = {"Lion": {}, "C-Lion": {"cautious": True}, "CWD": {"cautious_weight_decay": True}}
print(f"scale={SCALE} steps={steps} muon_steps={muon_steps} seeds={seeds}")

# %% [markdown]
# ## Protocols (written before the runs)
#
# The end of a run is the mean over its last quarter of steps (Lion and Muon chatter at O(ε) there).
# Distances are dist(λx, set) = max(λ‖x‖ − 1, 0) (‖·‖∞ for the box, σ_max for the ball). Effects are
# paired by seed: the arms of a seed share its start, its noise draws and its problem.

# %%
SESOI_OUT = 0.1  # "leaves the set": ends more than 10 % of the radius beyond it
SESOI_LOSS = 0.1  # "optimises the original loss": f at least 10 % below the plain run's (relative)
MARGIN_IN = 10 * LR * LAM  # "stays in the set up to O(lr)": 10 steps of lambda lr beyond it at most
MARGIN_IN_MUON = 10 * MUON_LR * LAM
box_choices = f"f = 1/2||x - c||^2, c = {C}, lambda = {LAM}, lr = {LR}, betas {BETAS}, {steps} steps, noise {NOISE}"
muon_choices = (f"06's least squares {ROWS}x{COLS}, n = {N_SAMPLES}, sigma_max {SIGMA_TRUE}/lambda (minimiser), "
                f"{SIGMA_START}/lambda (start), exact SVD, lr {MUON_LR}, momentum {MOMENTUM}, {muon_steps} steps")
CWD_PAPER = "paper [inferred] (arXiv 2510.12402: CWD optimises the original loss, not the constrained one)"
C_PAPER = "paper [inferred] (arXiv 2411.16085: the cautious mask keeps the optimizer's Lyapunov function)"
P = {
    "cwd_out": cc.protocol("CWD Lion does not stay in the box: it ends beyond it", "end dist(lambda x, box) of CWD Lion",
                           seeds, CWD_PAPER, box_choices),
    "cwd_loss": cc.protocol("CWD Lion ends at a lower f than Lion", "(end f(Lion) - end f(CWD)) / end f(Lion)", seeds,
                            CWD_PAPER, box_choices),
    "clion_in": cc.protocol("C-Lion stays in the 1/lambda box up to O(lr)", "-(end dist(lambda x, box) of C-Lion)",
                            seeds, C_PAPER, box_choices),
    "clion_H": cc.protocol("C-Lion keeps H_d finite (lambda x in the box) after phase 1, as Lion does",
                           "-(share of the last quarter's steps with H_d = +inf)", seeds, C_PAPER, box_choices),
    "cwd_muon_out": cc.protocol("CWD Muon does not stay in the spectral ball", "end dist(lambda X, ball) of CWD Muon",
                                seeds, CWD_PAPER, muon_choices),
    "cwd_muon_loss": cc.protocol("CWD Muon ends at a lower F than Muon", "(end F(Muon) - end F(CWD)) / end F(Muon)",
                                 seeds, CWD_PAPER, muon_choices),
    "cmuon_in": cc.protocol("C-Muon stays in the 1/lambda ball up to O(lr)", "-(end dist(lambda X, ball) of C-Muon)",
                            seeds, C_PAPER, muon_choices),
}

# %% [markdown]
# ## The box: Lion, C-Lion and CWD from 01's starts (exact gradients)

# %%
runs = {(v, x0): cautious.run_lion(quad.grad, x0, steps, lr=LR, betas=BETAS, lam=LAM, **kw)
        for v, kw in VARIANTS.items() for x0 in STARTS}
RADIUS = LAM * max(max(map(abs, x0)) for x0 in STARTS) + 1  # the largest lambda |x| of the runs
D = len(C)  # C-Lion's rescaling numel / kept is at most numel: its box has radius numel / lambda
el = "Figure 1"
cc.check_phase1_radius(report, el, "control, plain Lion: dist(lambda x_t, box of radius 1/lambda) <= (1 - lr lambda)^t "
                       "dist_0 at every step, every start", [cautious.box_distance(runs["Lion", x0].x, LAM) for x0 in STARTS],
                       LR, LAM, RADIUS)
cc.check_phase1_radius(report, CO, f"C-Lion: |u_i| <= numel = {D}, so dist(lambda x_t, box of radius {D}/lambda) <= "
                       "(1 - lr lambda)^t dist_0 at every step, every start",
                       [cautious.box_distance(runs["C-Lion", x0].x, LAM, D) for x0 in STARTS], LR, LAM, RADIUS)
INSIDE = next(x0 for x0 in STARTS if LAM * max(map(abs, x0)) < 1)
cc.check_leaves(report, CWD_EL, f"CWD: the run from {INSIDE}, inside the box, leaves it (no set is invariant under CWD)",
                cautious.box_distance(runs["CWD", INSIDE].x, LAM), LR, LAM, RADIUS)
same = max(float((runs["C-Lion", x0].x - runs["Lion", x0].x).abs().max()) for x0 in STARTS)
report.illustration(CO, "without noise on this f, C-Lion's mask keeps every coordinate: max |x_t(C-Lion) - x_t(Lion)|", same)
hp = DiscreteConstants(LR, *BETAS, weight_decay=LAM)
l1 = kappa.get("l1")
H = {v: torch.stack([H_d(l1, hp, x, m, quad.f(x)) for x, m in zip(runs[v, INSIDE].x, runs[v, INSIDE].m)])
     for v in VARIANTS}
report.illustration(CWD_EL, f"CWD from {INSIDE}: share of steps with H_d = +inf (lambda x outside the box)",
                    float(torch.isinf(H["CWD"]).double().mean()))
for x0 in STARTS:
    print(f"x0 = {x0}: end x " + "; ".join(f"{v} {np.round(runs[v, x0].x[-1].numpy(), 3)}" for v in VARIANTS))

# %% [markdown]
# ## The spectral ball: Muon, C-Muon and CWD Muon on 06's problem, one per seed
#
# Seed 0 draws 06's own problem (the same construction, `cautious.spectral_problem`); the others draw new
# A, minimiser and start. The control is plain exact-SVD Muon's phase-1 bound. C-Muon's radius s is the largest operator norm of
# its applied direction u_t = ((1 − ελ)X_t − X_{t+1})/ε, recovered from the iterates.

# %%
MUON = {"Muon": {}, "C-Muon": {"cautious": True}, "CWD Muon": {"cautious_weight_decay": True}}
problems = {s: cautious.spectral_problem(s, ROWS, COLS, N_SAMPLES, SIGMA_TRUE, SIGMA_START, LAM) for s in seeds}
mruns = {(v, s): cautious.run_muon(problems[s].grad, problems[s].X0, muon_steps, lr=MUON_LR, momentum=MOMENTUM, lam=LAM,
                                   **kw) for v, kw in MUON.items() for s in seeds}
el = "Muon note"
M_RADIUS = SIGMA_START + 1
cc.check_phase1_radius(report, el, "control, exact-SVD Muon: dist(lambda X_t, ball of radius 1/lambda) <= (1 - lr "
                       "lambda)^t dist_0 at every step, every seed's problem",
                       [cautious.spectral_distance(mruns["Muon", s].x, LAM) for s in seeds], MUON_LR, LAM, M_RADIUS)
s_c = {s: float(torch.linalg.matrix_norm(cautious.applied_direction(mruns["C-Muon", s], MUON_LR, LAM), ord=2).max())
       for s in seeds}
cc.identity_phase1_radius(report, CO, "C-Muon: with s = max_t ||u_t||_op, dist(lambda X_t, ball of radius s/lambda) <= "
                       "(1 - lr lambda)^t dist_0 at every step, every seed's problem",
                       [cautious.spectral_distance(mruns["C-Muon", s].x, LAM, s_c[s]) for s in seeds], MUON_LR, LAM,
                       M_RADIUS)
report.illustration(CO, "C-Muon: largest operator norm of the applied direction, max over seeds (exact-SVD Muon: 1)",
                    max(s_c.values()))

# %% [markdown]
# ## Findings over seeds
#
# Box: every seed's start and noise are shared by its three runs. Ball: every seed's problem.

# %%
gens = {s: torch.Generator().manual_seed(s) for s in seeds}
x0s = {s: tuple((START_RANGE * (2 * torch.rand(len(C), generator=gens[s], dtype=torch.float64) - 1)).tolist())
       for s in seeds}
nruns = {(v, s): cautious.run_lion(quad.grad, x0s[s], steps, lr=LR, betas=BETAS, lam=LAM, noise=NOISE,
                                   generator=torch.Generator().manual_seed(1000 + s), **kw)
         for v, kw in VARIANTS.items() for s in seeds}

cc.check_phase1_radius(report, "Figure 1", "control, plain Lion under gradient noise: phase 1 holds for any gradients "
                       "(every seed)", [cautious.box_distance(nruns["Lion", s].x, LAM) for s in seeds], LR, LAM, RADIUS + START_RANGE)
cc.check_phase1_radius(report, CO, f"C-Lion under gradient noise: dist(lambda x_t, box of radius {D}/lambda) "
                       "<= (1 - lr lambda)^t dist_0 (every seed)",
                       [cautious.box_distance(nruns["C-Lion", s].x, LAM, D) for s in seeds], LR, LAM, RADIUS + START_RANGE)


def end(run, fn):
    return cautious.tail_mean(fn(run.x))


def box_end(v, s):
    return end(nruns[v, s], lambda x: cautious.box_distance(x, LAM))


def f_end(v, s):
    return end(nruns[v, s], quad.f)


def ball_end(v, s):
    return end(mruns[v, s], lambda X: cautious.spectral_distance(X, LAM))


def F_end(v, s):
    return end(mruns[v, s], lambda X: torch.stack([problems[s].f(x) for x in X]))


def outside_share(v, s):
    d = cautious.box_distance(nruns[v, s].x, LAM)
    return cautious.tail_mean((d > 0).double())


cc.finding(report, CWD_EL, "CWD Lion ends beyond the box: end dist(lambda x, box)", [box_end("CWD", s) for s in seeds],
           P["cwd_out"], SESOI_OUT)
cc.finding(report, CWD_EL, "CWD Lion ends at a lower f than Lion: relative f gap",
           [(f_end("Lion", s) - f_end("CWD", s)) / f_end("Lion", s) for s in seeds], P["cwd_loss"], SESOI_LOSS)
cc.finding(report, CO, "C-Lion stays in the 1/lambda box: -end dist(lambda x, box)",
           [-box_end("C-Lion", s) for s in seeds], P["clion_in"], MARGIN_IN, test="non-inferiority")
cc.finding(report, CO, "C-Lion keeps H_d finite at the end: -share of steps with H_d = +inf",
           [-outside_share("C-Lion", s) for s in seeds], P["clion_H"], 0.05, test="non-inferiority")
cc.finding(report, CWD_EL, "CWD Muon ends beyond the spectral ball: end dist(lambda X, ball)",
           [ball_end("CWD Muon", s) for s in seeds], P["cwd_muon_out"], SESOI_OUT)
cc.finding(report, CWD_EL, "CWD Muon ends at a lower F than Muon: relative F gap",
           [(F_end("Muon", s) - F_end("CWD Muon", s)) / F_end("Muon", s) for s in seeds], P["cwd_muon_loss"], SESOI_LOSS)
cc.finding(report, CO, "C-Muon stays in the 1/lambda ball: -end dist(lambda X, ball)",
           [-ball_end("C-Muon", s) for s in seeds], P["cmuon_in"], MARGIN_IN_MUON, test="non-inferiority")

# %%
# NBVAL_IGNORE_OUTPUT
for f in report.found.values():
    say(report.sentence(f.claim))
report.findings()

# %% [markdown]
# ## Figure: the box and the ball under the cautious options
#
# Top: the runs from 01's starts in the plane (dashed: the box ‖x‖∞ ≤ 1/λ; dotted: C-Lion's box of radius
# numel/λ), and λ‖x_t‖∞ of the noisy runs of the first seed. Bottom: λσ_max(X_t) of the three Muon variants
# (first seed), and H_d along the run from the start inside the box (+∞ is drawn as a gap).

# %%
fig, axes = plt.subplots(2, 2, figsize=(12, 9))
ax = axes[0, 0]
styles = {"Lion": "-", "C-Lion": "--", "CWD": ":"}
for (v, x0), r in runs.items():
    ax.plot(r.x[:, 0], r.x[:, 1], styles[v], lw=1.3, label=f"{v}, x0={x0}")
for rad, ls in ((1 / LAM, "--"), (D / LAM, ":")):
    ax.add_patch(plt.Rectangle((-rad, -rad), 2 * rad, 2 * rad, fill=False, ls=ls, color="k"))
ax.plot(*C, "kx", ms=9)
ax.set(aspect="equal", xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), title="exact gradients, from 01's starts (x: c)")
ax.legend(fontsize=6, ncol=1, loc="upper right")
ax = axes[0, 1]
for v in VARIANTS:
    ax.plot(LAM * nruns[v, seeds[0]].x.abs().amax(1), lw=1, label=v)
ax.axhline(1, color="k", ls="--", lw=1)
ax.set(xlabel="step", ylabel=r"$\lambda\|x_t\|_\infty$", title=f"gradient noise sigma = {NOISE}, seed {seeds[0]}")
ax.legend(fontsize=8)
ax = axes[1, 0]
for v in MUON:
    ax.plot(LAM * torch.linalg.matrix_norm(mruns[v, seeds[0]].x, ord=2), lw=1.2, label=v)
ax.axhline(1, color="k", ls="--", lw=1)
ax.set(xlabel="step", ylabel=r"$\lambda\sigma_{max}(X_t)$", yscale="log", title=f"spectral ball, seed {seeds[0]}")
ax.legend(fontsize=8)
ax = axes[1, 1]
for v in VARIANTS:
    h = H[v].numpy().copy()
    h[~np.isfinite(h)] = np.nan
    ax.plot(h - quad.f(quad.box_minimiser(LAM)).item() + 1e-12, styles[v], lw=1.2, label=v)
ax.set(yscale="log", xlabel="step", ylabel="H_d - f(clip(c)) (+1e-12)", title=f"H_d from x0 = {INSIDE} (gaps: H_d = +inf)")
ax.legend(fontsize=8)
fig.tight_layout()
report.savefig(fig, "cautious_box_ball", element=CWD_EL)
plt.show()

# %% [markdown]
# ## Claims

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
