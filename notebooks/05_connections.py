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
# # Connections to known methods (paper Section 3.1)
#
# The paper presents Lion as a mix of signed momentum, decoupled weight decay, Polyak and Nesterov
# momentum, and relates Lion-K to Frank-Wolfe. This notebook makes each of those statements an
# identity that can be checked: for each method we pick the K, the betas and the weight decay λ of
# Lion-K (`lionlib.LionK`) that should reproduce it, run both from the same start on the same
# problem, and print the largest difference between the two parameter trajectories.
# The reference implementations are independent of lionlib:
#
# | method | reference implementation | Lion-K settings |
# |---|---|---|
# | Polyak heavy ball | `torch.optim.SGD(momentum=β)` | K = ½‖x‖², β1 = β2 = β, λ = 0 |
# | Nesterov momentum | `torch.optim.SGD(momentum=μ, nesterov=True)` | K = ½‖x‖², β1 = μ², β2 = μ, λ = 0 |
# | signed momentum (Signum) | `pytorch_optimizer.SignSGD(momentum=β)` | K = ‖x‖₁, β1 = β2 = β, λ = 0 |
# | momentum SGD + decoupled decay | `pytorch_optimizer.SGDW` | K = ½‖x‖², β1 = β2 = β, λ > 0 |
# | Lion | `lion_pytorch.Lion` | K = ‖x‖₁, β1 = 0.9, β2 = 0.99, λ > 0 |
# | Frank-Wolfe on the ℓ∞ ball | written out below | K = ‖x‖₁, β1 = β2 = 0, λ > 0 |
# | Frank-Wolfe on the ℓ1 ball | written out below | K = ‖x‖∞, β1 = β2 = 0, λ > 0 |
#
# The derivations are PAPER.md §5 (the special-case table) and §2.5 (the discrete/continuous
# mapping); each is repeated next to its check. The learning-rate mappings matter: PyTorch's SGD keeps
# an undamped buffer (`buf = μ buf + g`), while Lion-K keeps an exponential moving average (EMA).
#
# **Settings chosen here (the paper gives none for this section), all parameters below:** a
# least-squares problem f(x) = ‖Ax − b‖² / (2n) with a Gaussian A (n = 64 rows, d = 10), whose
# unconstrained minimiser has entries of size ~3 so the box ‖x‖∞ ≤ 1/λ (λ = 1) is active; learning
# rate 0.02, momentum 0.9; float64 so that "identical" means agreement to ~1e-15.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
SEED: int = 0
DEVICE: str = "auto"
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
STEPS: Optional[int] = None  # optimizer steps per run; None -> 600 (smoke), 1000 (cpu), 10000 (paper)
DIM: int = 10  # size of x
N_SAMPLES: int = 64  # rows of A
LR: float = 0.02  # Lion-K learning rate (the paper's epsilon)
BETA: float = 0.9  # Polyak / Signum / SGDW momentum
MU: float = 0.9  # Nesterov momentum
WEIGHT_DECAY: float = 1.0  # lambda: the box has radius 1/lambda
TOL: float = 1e-14  # tolerance of "the same method": float64 rounding of two implementations, 10x the observed 1.3e-15

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import display
from lion_pytorch import Lion as ReferenceLion
from pytorch_optimizer import SGDW, SignSGD
from scipy.optimize import lsq_linear

from lionlib import LionK, kappa
from lionlib.companion import theory_checks as checks
from lionlib.companion.notebook import by_scale, start
from lionlib.experiments.common import resolve_device
from lionlib.theory import references

report = start("05_connections", OUT_DIR)
steps = by_scale(STEPS, smoke=600, cpu=1000, paper=10000)
SAME = dict(tol=TOL, why=f"float64 rounding of two implementations of one recursion over {steps} steps on |x| ~ 3: "
                         "a few ulps per step at most, 10x the observed", across=checks.at_rounding(TOL))
device = resolve_device(DEVICE)
dtype = torch.float32 if device.type == "mps" else torch.float64  # mps has no float64
lam = WEIGHT_DECAY
print(f"scale={SCALE} steps={steps} device={device.type} dtype={dtype}")

# %% [markdown]
# ## The problem and the two ways of running an optimizer on it
#
# `run(make_optimizer)` trains a single parameter tensor x with any `torch.optim` optimizer and
# returns the whole trajectory (steps + 1 rows). `diff(a, b)` is the largest entry of |x_t − x'_t| over
# all steps and coordinates.

# %%
gen = torch.Generator().manual_seed(SEED)
A = torch.randn(N_SAMPLES, DIM, generator=gen, dtype=torch.float64).to(device, dtype)
x_unconstrained = 3 * torch.randn(DIM, generator=gen, dtype=torch.float64).to(device, dtype)
b = A @ x_unconstrained + 0.1 * torch.randn(N_SAMPLES, generator=gen, dtype=torch.float64).to(device, dtype)
x0 = torch.zeros(DIM, device=device, dtype=dtype)


def f(x):
    return 0.5 * (A @ x - b).square().sum() / N_SAMPLES


def grad_f(x):
    return A.T @ (A @ x - b) / N_SAMPLES


def run(make_optimizer, n=steps):
    x = torch.nn.Parameter(x0.clone())
    opt = make_optimizer([x])
    xs = [x.detach().clone()]
    for _ in range(n):
        opt.zero_grad()
        f(x).backward()
        opt.step()
        xs.append(x.detach().clone())
    return torch.stack(xs)


def diff(a, b):
    return (a - b).abs().amax().item()


half_sq, l1, linf = kappa.get("half_sq_l2"), kappa.get("l1"), kappa.get("linf")
trajectories = {}  # name -> (Lion-K trajectory, reference trajectory)

# %% [markdown]
# ## Polyak heavy ball = Lion-K with K = ½‖x‖², β1 = β2 = β, λ = 0
#
# With ∇K = identity and β1 = β2 = β, the Lion-K direction c_t = β m_{t−1} + (1 − β) g_t is the updated
# EMA m_t itself, so x ← x − ε m_t: EMA-momentum gradient descent. In the ODE of §2.5 the gradient
# enhancement is ε_ode = ε(1 − β1)/(1 − β2) = ε, only the Euler step itself, so in continuous time this is
# the heavy-ball equation ẍ = −α∇f − γẋ. PyTorch's buffer is buf_t = β buf_{t−1} + g_t = m_t / (1 − β)
# (its first step copies g, which is what the EMA gives too), so SGD's learning rate is ε(1 − β).

# %%
name = "Polyak heavy ball"
trajectories[name] = (run(lambda p: LionK(p, half_sq, lr=LR, betas=(BETA, BETA))),
                      run(lambda p: torch.optim.SGD(p, lr=LR * (1 - BETA), momentum=BETA)))
d = diff(*trajectories[name])
print(f"{name}: max |x_LionK - x_SGD| = {d:.2e}")
report.check("Section 3.1", f"{name} (torch SGD momentum) = Lion-K(1/2||x||^2, b1=b2): max trajectory difference",
             d, "<=", 0.0, stable=False, **SAME)

# %% [markdown]
# ## Nesterov momentum = Lion-K with K = ½‖x‖², β1 = μ², β2 = μ, λ = 0
#
# PyTorch's Nesterov step uses g_t + μ buf_t = (1 + μ) g_t + μ² buf_{t−1}. Lion-K's
# c_t = β1 (1 − β2) buf_{t−1} + (1 − β1) g_t is proportional to it exactly when
# (1 − β1)/(1 + μ) = β1 (1 − β2)/μ² with β2 = μ, that is β1 = μ², and then c_t = (1 − μ)(g_t + μ buf_t).
# So SGD's learning rate is again ε(1 − μ). This is the same (β1, β2) = (μ², μ) as Muon's
# Nesterov momentum (PAPER.md §2.4, §10). Here β1 ≠ β2, so ε_ode = ε(1 − μ²)/(1 − μ) = ε(1 + μ): a genuine
# gradient enhancement.

# %%
name = "Nesterov momentum"
trajectories[name] = (run(lambda p: LionK(p, half_sq, lr=LR, betas=(MU**2, MU))),
                      run(lambda p: torch.optim.SGD(p, lr=LR * (1 - MU), momentum=MU, nesterov=True)))
d = diff(*trajectories[name])
print(f"{name}: max |x_LionK - x_SGD(nesterov)| = {d:.2e}")
report.check("Section 3.1", f"{name} (torch SGD nesterov) = Lion-K(1/2||x||^2, b1=mu^2, b2=mu): max trajectory difference",
             d, "<=", 0.0, stable=False, **SAME)

# %% [markdown]
# ## Signed momentum (Signum) = Lion-K with K = ‖x‖₁, β1 = β2 = β, λ = 0
#
# ∇K = sign and c_t = m_t, so x ← x − ε sign(m_t): Signum (Bernstein et al., 2018). Lion differs from it
# in two ways only: β1 < β2 (the Nesterov-like gradient enhancement) and the decoupled weight decay.
# The reference is `pytorch_optimizer.SignSGD` (an EMA buffer starting at 0, then sign).

# %%
name = "Signum"
trajectories[name] = (run(lambda p: LionK(p, l1, lr=LR, betas=(BETA, BETA))),
                      run(lambda p: SignSGD(p, lr=LR, momentum=BETA, foreach=False)))
d = diff(*trajectories[name])
print(f"{name}: max |x_LionK - x_SignSGD| = {d:.2e}")
report.check("Section 3.1", f"{name} (pytorch_optimizer SignSGD) = Lion-K(||x||_1, b1=b2): max trajectory difference",
             d, "<=", 0.0, stable=False, **SAME)

# %% [markdown]
# ## Momentum SGD with decoupled weight decay = Lion-K with K = ½‖x‖², λ > 0
#
# x ← (1 − ελ) x − ε m_t. `pytorch_optimizer.SGDW` applies x ← (1 − η w) x − η buf_t with PyTorch's
# undamped buffer, so η = ε(1 − β) and w = λ/(1 − β) (then η w = ελ). Because K* = ½‖y‖², the problem
# (1/λ) K*(λx) that Lion-K solves is the ℓ2-regularised f(x) + (λ/2)‖x‖² (§3), so the limit must be the
# ridge solution (AᵀA/n + λI)⁻¹ Aᵀb/n: decoupled decay with this K is ordinary ℓ2 regularisation.

# %%
name = "Momentum SGD + decoupled decay"
trajectories[name] = (run(lambda p: LionK(p, half_sq, lr=LR, betas=(BETA, BETA), weight_decay=lam)),
                      run(lambda p: SGDW(p, lr=LR * (1 - BETA), momentum=BETA, weight_decay=lam / (1 - BETA),
                                         foreach=False)))
d = diff(*trajectories[name])
eye = torch.eye(DIM, device=device, dtype=dtype)
x_ridge = torch.linalg.solve(A.T @ A / N_SAMPLES + lam * eye, A.T @ b / N_SAMPLES)
ridge_gap = (trajectories[name][0][-1] - x_ridge).abs().amax().item()
print(f"{name}: max |x_LionK - x_SGDW| = {d:.2e}; |x_T - ridge solution|_inf = {ridge_gap:.2e}")
report.check("Section 3.1", f"{name} (pytorch_optimizer SGDW) = Lion-K(1/2||x||^2, lambda>0): max trajectory difference",
             d, "<=", 0.0, stable=False, **SAME)
report.check("Section 3.1", "Lion-K(1/2||x||^2) with decay lambda converges to the ridge solution: |x_T - x_ridge|_inf",
             ridge_gap, "<=", by_scale(None, smoke=1e-6, cpu=1e-13, paper=1e-13), stable=False, scaled=True,
             across=checks.at_rounding(1e-13))

# %% [markdown]
# ## Lion = Lion-K with K = ‖x‖₁, β1 < β2, λ > 0
#
# Lion itself, against the `lion-pytorch` package (the reference implementation the community uses;
# it multiplies the decay by the learning rate, as the original Lion code does).

# %%
name = "Lion"
trajectories[name] = (run(lambda p: LionK(p, l1, lr=LR, betas=(0.9, 0.99), weight_decay=lam)),
                      run(lambda p: ReferenceLion(p, lr=LR, betas=(0.9, 0.99), weight_decay=lam)))
d = diff(*trajectories[name])
print(f"{name}: max |x_LionK - x_lion_pytorch| = {d:.2e}")
report.check("Section 3.1", f"{name} (lion-pytorch) = Lion-K(||x||_1, b1=0.9, b2=0.99, lambda>0): max trajectory difference",
             d, "<=", 0.0, stable=False, **SAME)

# %% [markdown]
# ## Frank-Wolfe = Lion-K without momentum, λ > 0
#
# With β1 = β2 = 0, c_t = g_t and the Lion-K step is
# x ← (1 − ελ) x − ε ∇K(g) = (1 − η) x + η s with η = ελ and s = −∇K(g)/λ. For a norm K, −∇K(g)/λ is
# exactly the linear minimisation oracle of Frank-Wolfe over the dual-norm ball of radius 1/λ:
# s = argmin_{‖s‖_dual ≤ 1/λ} ⟨g, s⟩. So Lion-K with K = ‖·‖₁ and no momentum *is* Frank-Wolfe with the
# constant step η = ελ on the box ‖x‖∞ ≤ 1/λ, and K = ‖·‖∞ gives Frank-Wolfe on the ℓ1 ball
# ‖x‖₁ ≤ 1/λ (a vertex ±e_i/λ per step). With momentum (γ < ∞ in the ODE) Lion-K is "Frank-Wolfe-like":
# it moves toward the oracle's answer for a smoothed gradient. The reference is a Frank-Wolfe step whose
# oracle is a linear program solved by `scipy.optimize.linprog` (HiGHS), not the closed-form vertex:
# `lionlib.theory.references.lmo_linprog` (ℓ1 ball by the split s = u − v, u, v ≥ 0). From every state of
# the Lion-K run, one Frank-Wolfe step must land on Lion-K's next state (a one-step comparison, so a
# tie in the oracle far into the run cannot make two correct methods drift apart).

# %%
def frank_wolfe(ball, eta, n=steps):
    """A full Frank-Wolfe run with the linprog oracle (for the figure)."""
    x, xs = x0.cpu().double().numpy(), [x0.cpu().double().numpy()]
    for _ in range(n):
        x = references.frank_wolfe_step(x, grad_f(torch.as_tensor(x, device=device, dtype=dtype)).cpu().double().numpy(),
                                     ball, 1 / lam, eta)
        xs.append(x)
    return torch.as_tensor(np.stack(xs), device=device, dtype=dtype)


for name, K, ball in [("Frank-Wolfe on the l_inf ball", l1, "linf"), ("Frank-Wolfe on the l_1 ball", linf, "l1")]:
    ours = run(lambda p: LionK(p, K, lr=LR, betas=(0.0, 0.0), weight_decay=lam))
    grads = torch.stack([grad_f(x) for x in ours[:-1]])
    d = checks.check_frank_wolfe(report, "Section 3.1", f"{name}, Lion-K({K.name}, b1=b2=0, lambda>0)", ours,
                                 grads, ball, lam, LR, SAME["tol"], SAME["why"])
    print(f"{name}: max one-step |x_LionK - FW_linprog(x_t)| = {d:.2e}")
    trajectories[name] = (ours, frank_wolfe(ball, LR * lam))

# %% [markdown]
# ### Frank-Wolfe-like behaviour with momentum
#
# Both methods solve the same constrained problem, min f subject to ‖x‖∞ ≤ 1/λ. Its exact solution x*
# comes from `scipy.optimize.lsq_linear` (bounded least squares). Frank-Wolfe with a constant step and
# Lion with its default momentum (β1 = 0.9, β2 = 0.99) both reach x* and then stay within a few steps
# of it: with a constant step size both oscillate around x* by O(ε).

# %%
x_star = torch.as_tensor(lsq_linear(A.cpu().double().numpy(), b.cpu().double().numpy(),
                                    bounds=(-1 / lam, 1 / lam), tol=1e-12).x, device=device, dtype=dtype)
active = int((x_star.abs() > 1 / lam - 1e-9).sum())
gaps = {"Frank-Wolfe (no momentum)": (trajectories["Frank-Wolfe on the l_inf ball"][1] - x_star).abs().amax(1),
        "Lion (b1=0.9, b2=0.99)": (trajectories["Lion"][0] - x_star).abs().amax(1)}
print(f"x* has {active} of {DIM} coordinates on the box boundary")
for name, g in gaps.items():
    print(f"{name}: |x_T - x*|_inf = {g[-1].item():.2e}; max over the second half {g[steps // 2:].max().item():.2e} (lr = {LR})")
report.check("Section 3.1", "the box constraint is active at x* (coordinates at the bound)", active, ">=", 1)
late = slice(steps // 2, None)  # the second half of the run, after the approach
for name, g in gaps.items():
    report.check("Section 3.1", f"{name} stays within 3 steps of x* over the second half of the run: max |x_t - x*|_inf / lr",
                 g[late].max().item() / LR, "<=", 3, stable=False)

# %% [markdown]
# ## The special cases at a glance (a table), and a figure
#
# The table gives, for each method, the largest difference between Lion-K and its reference over the
# whole run (for Frank-Wolfe: the full runs side by side; the check above is the one-step comparison).
# The figure shows the distance to the constrained solution x* of Frank-Wolfe and of Lion with momentum.

# %%
# NBVAL_IGNORE_OUTPUT
summary = pd.DataFrame([{"method": name, "max_t |x_LionK - x_ref|_inf": (ours - ref).abs().amax().item(),
                         "steps": len(ours) - 1} for name, (ours, ref) in trajectories.items()])
display(summary.style.format({"max_t |x_LionK - x_ref|_inf": "{:.1e}"}).hide(axis="index"))

# %%
dist = pd.concat([pd.DataFrame({"method": k, "step": np.arange(len(v)), "|x_t - x*|_inf": v.cpu().numpy()})
                  for k, v in gaps.items()])
fig, ax = plt.subplots(figsize=(7.5, 4.4))
sns.lineplot(dist, x="step", y="|x_t - x*|_inf", hue="method", style="method", ax=ax, lw=1.4)
ax.axhline(LR, color="k", ls=":", lw=1, label="one step (lr)")
ax.set(yscale="log", title="Frank-Wolfe-like: both reach the box-constrained optimum x*")
ax.legend(fontsize=9)
fig.tight_layout()
report.savefig(fig, "connections", element="Section 3.1")
plt.show()

# %% [markdown]
# ## Claims
#
# Every number above, then the checked verdicts. The trajectory differences are floating-point noise
# (0 or a few 1e-16), which differs between machines, so the checked summary prints only the verdict
# and the tolerance.

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
