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
# # CIFAR-10: conv net vs vision transformer, the λ trade-off, and Muon's spectral bound
#
# The paper's network-level statements (`../shared/PAPER-EXPERIMENTS.md`), measured with seeds:
#
# 1. **Architecture-dependent K** [inferred]: with Lion-ℓp, p = 1 (Lion) is best for transformers and
#    p near 2 for conv nets. Measured as an *interaction* on a small residual conv net with batch norm
#    (`lionlib.experiments.nets.ResNet`) and a small ViT with patches of 4 (`nets.ViT`), each tuned on a
#    small learning-rate grid per architecture and optimizer (the grid and its results are shown).
# 2. **The λ trade-off** [inferred]: "a stronger bound converges faster early and ends worse", in its two
#    readings (larger λ at a fixed learning rate; larger λ at a fixed lr·λ).
# 3. **Muon's spectral bound** [confirmed for the follow-up's ResNet-18, λ = 2]: the conv net's matrices
#    trained with Muon at λ = 2; σ_max of every weight matrix against 1/λ, exact msign and Newton-Schulz.
#
# Every statement is a **check** (guaranteed by the maths or the code; must pass) or a **finding**
# (empirical; protocol written below *before* the runs; per-seed effects, mean, 95 % t interval, verdict
# `reproduced` / `not reproduced` / `inconclusive at this scale`). "Loss decreased" and "accuracy above
# chance" are sanity checks.
#
# **Scale.** `cpu` (the committed outputs): 1,000 training images (the first 100 per class of the
# CIFAR-10 JPEG copy), 500 test images, 2 epochs of batch 50 (40 steps), a ResNet-8 of widths
# (8, 16, 32) and a 2-block ViT of width 32: tiny on purpose, so that 5 seeds of ~90 runs fit in 15 minutes
# on 2 shared cores. Accuracies are therefore ~20-35 %, far from the paper's; effects at this scale need not hold at
# the paper's. `smoke` (CI): a few images, 2 seeds, every code path. `paper`: prints the plan and the cost
# (see the end).
#
# **How the runs are made affordable** (`lionlib.experiments.store`, `benchmarks/bench_train.py`): every run
# is a frozen spec (`lionlib.experiments.specs.CifarSpec`) whose record is kept under the hash of that spec
# in `paper_figures/runs/cifar/` (a missing record is trained; `REFRESH = True` retrains), trained
# deterministically on one thread (all random sources seeded from the run's seed,
# `torch.use_deterministic_algorithms`), two runs side by side in worker processes, in fp32 (bf16 autocast
# was slower on a CPU without native bf16; the choice is recorded in every record).

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
SEED: int = 0  # first seed; the findings use SEED .. SEED + N_SEEDS - 1; the grid is tuned on SEED
N_SEEDS: Optional[int] = None  # None -> 2 (smoke), 5 (cpu, paper)
WORKERS: int = 2  # runs trained side by side, one thread each
REFRESH: bool = False  # True: retrain runs whose records are stored
DATA_DIR: Optional[str] = None  # None -> $LIONLIB_DATA_DIR, data/, ../shared/data
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
LR_GRID: Optional[tuple] = None  # multiples of each arm's base lr (ARMS below); None -> (1/3, 1, 3), smoke (1,)
LAMBDA_FACTOR: float = 10.0  # the "stronger bound": lambda x LAMBDA_FACTOR
MUON: dict = {"lr": 0.1, "wd": 2.0, "warmup": 0}  # Muon on the ResNet's matrices: lambda 2 (the follow-up's CIFAR setting)
MUON_EPOCHS: int = 4  # twice the other runs: phase 1 must end before the last step

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lionlib.companion.report import Protocol, Report, setup_plotting
from lionlib.experiments.record import environment
from lionlib.experiments.specs import CifarSpec, cifar_spec, default_precision, with_
from lionlib.experiments.store import RunStore

setup_plotting()
report = Report("07_cifar10", out_dir=OUT_DIR)
torch.set_num_threads(1)  # fixed per notebook: every run trains on one thread (store.RunStore.run)
N = N_SEEDS or (2 if SCALE == "smoke" else 5)
SEEDS = tuple(range(SEED, SEED + N))
LR_GRID = LR_GRID or ((1.0,) if SCALE == "smoke" else (1 / 3, 1.0, 3.0))
# This notebook's sizes per scale, over the spec's scale presets (`specs.SCALES["cifar"]`); two epochs,
# evaluated on the validation split after each and on the test set (all 10,000 images at cpu) at the end.
SIZES = {
    "smoke": dict(n_train=270, n_val=30, n_test=200, steps=18, batch_size=30, eval_every=9),
    "cpu": dict(n_train=900, n_val=100, n_test=None, steps=36, batch_size=50, eval_every=18),
    "paper": dict(),  # the spec's paper scale: 45,000 / 5,000 images, the full test set, ResNet-18 and ViT-S
}[SCALE]
ARCH = {  # the two architectures (specs.CIFAR_MODELS: nets.ResNet, nets.ViT) per scale
    "smoke": {"resnet": "resnet_tiny", "vit": "vit_tiny"},
    "cpu": {"resnet": "resnet8_narrow", "vit": "vit"},
    "paper": {"resnet": "resnet18", "vit": "vit_s"},
}[SCALE]
DEVICE = "cuda" if SCALE == "paper" else "cpu"
STORE = RunStore()
# Each optimizer's base (lr, lambda) and its name in the tables. Lion-lp at p = 1 is Lion itself
# (lp_scale = 1, grad ||x||_1 = sign), so Lion is the p = 1 arm.
ARMS = {"Lion (p=1)": dict(optimizer="lion", lr=1e-3, wd=1.0),
        "Lion-lp p=1.5": dict(optimizer="lion_lp", p=1.5, lr=1e-3, wd=1.0),
        "Lion-lp p=2": dict(optimizer="lion_lp", p=2.0, lr=1e-3, wd=1.0),
        "AdamW": dict(optimizer="adamw", lr=3e-3, wd=0.1)}
steps = cifar_spec(SCALE, **SIZES).steps
MONITOR_EVERY = max(1, steps // 30)


def make(arch: str, seed: int, wd: float, **kw) -> CifarSpec:
    """One run's spec (fp32 on the CPU, bf16 autocast + channels-last for the ResNet on CUDA)."""
    return cifar_spec(SCALE, model=ARCH[arch], seed=seed, weight_decay=wd, precision=default_precision(DEVICE),
                      channels_last=DEVICE == "cuda" and arch == "resnet", monitor_every=MONITOR_EVERY,
                      **{**SIZES, **kw})


def run_many(specs: list) -> list:
    return STORE.run(specs, REFRESH, 0 if DEVICE == "cuda" else WORKERS, DATA_DIR, device=DEVICE)


print(f"scale {SCALE}: seeds {SEEDS}, {steps} steps per run on {DEVICE}; this kernel: "
      f"{environment(DEVICE, default_precision(DEVICE), False)}")
print("(each run records its own environment: one thread, deterministic algorithms, in a worker process)")

# %% [markdown]
# ## Protocols (fixed before any run)
#
# Metrics: **final** = test accuracy after the last epoch; **early** = test accuracy after the first epoch
# (of 2). Effects are paired: two arms with the same seed share the data order, the augmentation and, for the
# same architecture, the initialisation; the effect of a seed is the difference of its two runs, signed so
# that the hypothesis predicts > 0, in percentage points. Decision rule (all findings): the 95 % t interval
# of the mean effect over the seeds; above 0: reproduced, below 0: not reproduced, else inconclusive at
# this scale.
#
# The companion's own choices, stated with each finding: Lion-ℓp multiplies each tensor's lr by
# n^(1−1/p) and divides its λ by it (`lionlib.optim.lp_scale`: every p takes Lion-sized steps and keeps
# Lion's lr·λ); λ is decoupled (multiplied by lr) and applies to tensors with ≥ 2 dimensions (conv
# kernels, linear weights, the ViT's position table), not to biases and norms; each arm's lr is tuned on
# `LR_GRID` × its base lr at the base λ (Lion and Lion-ℓp: lr 1e-3, λ 1; AdamW: lr 3e-3, λ 0.1) with seed
# `SEED`, which is also the first of the 5 evaluation seeds (a small selection bias, the same for every
# arm), on the validation split (10 % of the training images); standard batch norm (running statistics in
# evaluation); schedule: 10 % linear warm-up, then linear decay to 0. **early** is the validation accuracy
# after epoch 1 (the test set is evaluated at the end only).

# %%
CHOICES = ("Lion-lp step scale n^(1-1/p) per tensor (lr x s, lambda / s); decoupled lambda on tensors with "
           ">= 2 dims only; lr tuned per architecture and arm on {1/3, 1, 3} x base (Lion/Lion-lp 1e-3, "
           "AdamW 3e-3) at base lambda (1, AdamW 0.1) with seed SEED on the validation split; standard BatchNorm; "
           f"cpu scale: 900 train / 100 validation / 10,000 test images, 2 epochs of batch 50, ResNet-8 (8,16,32), "
           f"ViT 2x32 patch 4")
pp = "final test accuracy, percentage points"
P = {
    "resnet_p": Protocol("On the conv net, Lion-lp with p = 2 ends more accurate than p = 1 (Lion)",
                         f"{pp}: acc(p=2) - acc(p=1), ResNet, each at its tuned lr", SEEDS, choices=CHOICES),
    "vit_p": Protocol("On the ViT, p = 1 (Lion) ends more accurate than p = 2",
                      f"{pp}: acc(p=1) - acc(p=2), ViT, each at its tuned lr", SEEDS, choices=CHOICES),
    "interaction": Protocol("The best p depends on the architecture: p = 2 gains more over p = 1 on the conv net "
                            "than on the ViT", f"{pp}: [acc(p=2) - acc(p=1)]_ResNet - [acc(p=2) - acc(p=1)]_ViT, "
                            "paired by seed", SEEDS, choices=CHOICES),
    "resnet_adamw": Protocol("Lion (tuned) ends at least as accurate as AdamW (tuned) on the conv net: Lion - AdamW > 0",
                             f"{pp}: acc(Lion) - acc(AdamW), ResNet", SEEDS, source="Lion paper (Chen et al. 2023)",
                             choices=CHOICES),
    "vit_adamw": Protocol("Lion (tuned) ends more accurate than AdamW (tuned) on the ViT",
                          f"{pp}: acc(Lion) - acc(AdamW), ViT", SEEDS, source="Lion paper (Chen et al. 2023)",
                          choices=CHOICES),
}
for arch in ("resnet", "vit"):
    for reading, what in (("fixed_lr", "at Lion's tuned lr"), ("fixed_lrwd", "at a fixed lr x lambda (lr / factor)")):
        P[f"{arch}_{reading}_early"] = Protocol(
            f"{arch}: a stronger bound (lambda x {LAMBDA_FACTOR:g}, {what}) converges faster early",
            "validation accuracy after epoch 1, percentage points: strong - base", SEEDS, choices=CHOICES)
        P[f"{arch}_{reading}_final"] = Protocol(
            f"{arch}: a stronger bound (lambda x {LAMBDA_FACTOR:g}, {what}) ends worse",
            f"{pp}: base - strong", SEEDS, choices=CHOICES)
P["muon_ns"] = Protocol("Muon with Newton-Schulz (5 quintic steps) does not keep sigma_max <= 1/lambda: it overshoots",
                        "per seed: max over the ResNet's matrices of lambda sigma_max - 1 at the last step (phase 1 over)",
                        SEEDS, design="unpaired", source="Muon follow-up (arXiv 2506.15054) + companion",
                        choices=f"Muon lr {MUON['lr']} (no warm-up, linear decay), lambda {MUON['wd']}, {MUON_EPOCHS} epochs, momentum 0.95, no shape factor; conv "
                                "kernels as (out, in k k) matrices; 1-D tensors by AdamW (lr 1e-3, no decay)")

# %% [markdown]
# ## 1. The tuning grid (seed `SEED`)

# %%
grid_runs = {(arch, arm, m): make(arch, SEED, **{**a, "lr": a["lr"] * m})
             for arch in ARCH for arm, a in ARMS.items() for m in LR_GRID}
grid_res = dict(zip(grid_runs, run_many(list(grid_runs.values()))))
grid = pd.DataFrame([dict(arch=k[0], arm=k[1], lr=r.spec.lr, acc=100 * r.final["val_acc"]) for k, r in grid_res.items()])
print(grid.pivot_table(index=["arch", "arm"], columns="lr", values="acc").round(1).to_string())
best_lr = grid.loc[grid.groupby(["arch", "arm"])["acc"].idxmax()].set_index(["arch", "arm"])["lr"]
print("\ntuned lr:", best_lr.to_dict())

# %% [markdown]
# ## 2. Conv net vs ViT: every arm at its tuned lr, 5 seeds

# %%
main_runs = {(arch, arm, s): make(arch, s, **{**a, "lr": best_lr[arch, arm]})
             for arch in ARCH for arm, a in ARMS.items() for s in SEEDS}
main = dict(zip(main_runs, run_many(list(main_runs.values()))))
acc = pd.DataFrame([dict(arch=k[0], arm=k[1], seed=k[2], acc=100 * r.final["test_acc"]) for k, r in main.items()])
print(acc.groupby(["arch", "arm"])["acc"].agg(["mean", "std", "count"]).round(2).to_string())

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
sns.pointplot(data=acc, x="arm", y="acc", hue="arch", errorbar=("ci", 95), seed=0, dodge=0.3, ax=ax)
ax.set(ylabel="final test accuracy (%)", xlabel="", title=f"CIFAR-10 subset, mean and 95% CI over {N} seeds")
ax.tick_params(axis="x", labelsize=8)
report.savefig(fig, "cifar10_conv_vs_vit", element="Section 5 (architecture-dependent K)")
plt.show()

# %%
A = acc.pivot_table(index="seed", columns=["arch", "arm"], values="acc")
d_res = A["resnet", "Lion-lp p=2"] - A["resnet", "Lion (p=1)"]
d_vit = A["vit", "Lion-lp p=2"] - A["vit", "Lion (p=1)"]
el = "Section 5 (architecture-dependent K)"
report.finding(el, "ResNet: p = 2 beats p = 1 (pp)", d_res, protocol=P["resnet_p"], fmt=".2f")
report.finding(el, "ViT: p = 1 beats p = 2 (pp)", -d_vit, protocol=P["vit_p"], fmt=".2f")
report.finding(el, "interaction: (p2 - p1) on ResNet minus on ViT (pp)", d_res - d_vit, protocol=P["interaction"], fmt=".2f")
report.finding("Lion vs AdamW", "ResNet: Lion - AdamW (pp)", A["resnet", "Lion (p=1)"] - A["resnet", "AdamW"],
               protocol=P["resnet_adamw"], fmt=".2f")
report.finding("Lion vs AdamW", "ViT: Lion - AdamW (pp)", A["vit", "Lion (p=1)"] - A["vit", "AdamW"],
               protocol=P["vit_adamw"], fmt=".2f")
for arch in ARCH:
    best = acc[acc.arch == arch].groupby("arm")["acc"].mean().idxmax()
    print(f"{arch}: highest mean accuracy with {best}")
for arch in ARCH:  # sanity: pooled over arms and seeds, per architecture
    ratio = np.mean([np.mean(r.train["loss"][-5:]) / np.mean(r.train["loss"][:5]) for k, r in main.items() if k[0] == arch])
    report.check("Sanity", f"{arch}: training loss decreased (last 5 / first 5 steps, mean over arms and seeds)", ratio, "<", 1,
                 stable=False, sanity=True)
    report.check("Sanity", f"{arch}: test accuracy above chance (mean over arms and seeds, %)", acc[acc.arch == arch].acc.mean(),
                 ">", 10, stable=False, sanity=True)

# %% [markdown]
# ## 3. The λ trade-off
#
# Lion at each architecture's tuned lr and base λ = 1 (the runs above), against λ × `LAMBDA_FACTOR` (a box
# 10× smaller) in two readings: the same lr (so the per-step decay lr·λ is 10× larger), and lr / 10 (the
# same lr·λ: phase 1 takes as many steps, every step is 10× smaller).

# %%
lam_runs = {}
for arch in ARCH:
    a = {**ARMS["Lion (p=1)"], "lr": best_lr[arch, "Lion (p=1)"]}
    for s in SEEDS:
        lam_runs[arch, "base", s] = make(arch, s, **a)
        lam_runs[arch, "fixed_lr", s] = make(arch, s, **{**a, "wd": a["wd"] * LAMBDA_FACTOR})
        lam_runs[arch, "fixed_lrwd", s] = make(arch, s, **{**a, "wd": a["wd"] * LAMBDA_FACTOR, "lr": a["lr"] / LAMBDA_FACTOR})
lam = dict(zip(lam_runs, run_many(list(lam_runs.values()))))
curves = pd.DataFrame([dict(arch=k[0], arm=k[1], seed=k[2], epoch=i + 1, step=s,
                            test_acc=100 * (r.final["test_acc"] if i == len(r.eval["step"]) - 1 else r.eval["val_acc"][i]))
                       for k, r in lam.items() for i, s in enumerate(r.eval["step"])])
print(curves.groupby(["arch", "arm", "epoch"])["test_acc"].mean().unstack("epoch").round(2).to_string())

# %%
for arch in ARCH:
    E = curves[curves.arch == arch].pivot_table(index="seed", columns=["arm", "epoch"], values="test_acc")
    last = int(curves.epoch.max())
    for reading in ("fixed_lr", "fixed_lrwd"):
        report.finding("Section 5 (lambda trade-off)", f"{arch}, {reading}: strong lambda ahead after epoch 1 (pp)",
                       E[reading, 1] - E["base", 1], protocol=P[f"{arch}_{reading}_early"], fmt=".2f")
        report.finding("Section 5 (lambda trade-off)", f"{arch}, {reading}: strong lambda behind at the end (pp)",
                       E["base", last] - E[reading, last], protocol=P[f"{arch}_{reading}_final"], fmt=".2f")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=False)
for ax, arch in zip(axes, ARCH):
    sns.lineplot(data=curves[curves.arch == arch], x="epoch", y="test_acc", hue="arm", marker="o", errorbar=("ci", 95), seed=0, ax=ax)
    ax.set(title=f"{arch}: Lion, λ = 1 vs λ = {LAMBDA_FACTOR:g}", ylabel="accuracy (%): validation, test at the end")
fig.tight_layout()
report.savefig(fig, "cifar10_lambda_tradeoff", element="Section 5 (lambda trade-off)")
plt.show()

# %%
mon = pd.concat([r.monitor_frame().assign(arch=k[0], arm=k[1], seed=k[2]) for k, r in lam.items()])
report.check("Theorem B.9", "Lion, every lambda run, tensor and record: lambda ||x||_inf <= phase-1 bound (max of ratio - 1)",
             (mon.constraint / mon.bound).max() - 1, "<=", 1e-5, stable=False)

# %% [markdown]
# **Why was "larger λ" slower before?** The two readings separate the causes. At a fixed lr, λ × 10 multiplies
# the per-step decay lr·λ by 10: phase 1 shrinks every decayed tensor ten times faster, to a box ten times
# smaller. At a fixed lr·λ the decay per step is unchanged and only the step size shrinks. The previous
# notebook's result (larger λ behind from the first epoch) was at a fixed lr, with a linear warm-up during
# which lr·λ is small. The printout below says, from the numbers above, which reading is behind early; a
# warm-up-free arm was not run (cut for time), so the warm-up explanation is not tested here.

# %%
early = curves[curves.epoch == 1].groupby(["arch", "arm"])["test_acc"].mean().unstack("arm")
for arch, row in early.iterrows():
    print(f"{arch}, accuracy after epoch 1: base {row['base']:.1f}%, lambda x{LAMBDA_FACTOR:g} at fixed lr "
          f"{row['fixed_lr']:.1f}%, at fixed lr*lambda {row['fixed_lrwd']:.1f}%")

# %% [markdown]
# ## 4. Muon's spectral bound on the conv net (λ = 2)
#
# Every matrix of the ResNet (conv kernels as (out, in·k·k) matrices, the head) trained with
# `lionlib.Muon`, λ = 2, lr 0.1 without warm-up (so that phase 1 ends within the run), 4 epochs, exact msign
# (SVD) and Newton-Schulz. The monitor records λσ_max of every matrix
# and the phase-1 bound 1 + ∏(1 − ε_s λ)(λσ_max(X_0) − 1)₊. Phase 1 is over for a matrix once its bound is
# ≤ 1.001. **Check** (exact msign): no record above its bound, and no matrix above 1.001/λ after phase 1.
# **Finding**: how far Newton-Schulz goes past 1/λ.

# %%
muon_runs = {(exact, s): with_(make("resnet", s, optimizer="muon", muon_exact=exact, betas=(0.95, 0.95),
                                     lr=MUON["lr"], wd=MUON["wd"], warmup=MUON["warmup"]),
                                steps=steps * MUON_EPOCHS // 2)
             for exact in (True, False) for s in SEEDS}
muon = dict(zip(muon_runs, run_many(list(muon_runs.values()))))
mm = pd.concat([r.monitor_frame().assign(msign="exact (SVD)" if k[0] else "Newton-Schulz", seed=k[1])
                for k, r in muon.items()])
after = mm[mm.bound <= 1.001]
ex = after[after.msign == "exact (SVD)"]
end = mm[mm.step == mm.step.max()]
print(mm.groupby("msign").agg(records=("step", "size"), after_phase1=("bound", lambda b: int((b <= 1.001).sum())),
                              max_lambda_sigma=("constraint", "max")).to_string())
print(end.groupby("msign").agg(matrices_past_phase1=("bound", lambda b: int((b <= 1.001).sum())),
                               max_lambda_sigma_at_end=("constraint", "max")).to_string())
print("largest lambda sigma_max over the records after phase 1 (descriptive, not the finding's metric):",
      after.groupby("msign")["constraint"].max().round(4).to_dict())

# %%
exm = mm[mm.msign == "exact (SVD)"]
report.check("Muon follow-up (Fig. 4)", "exact msign: lambda sigma_max <= phase-1 bound, every matrix and record (max ratio - 1)",
             (exm.constraint / exm.bound).max() - 1, "<=", 1e-5, stable=False)
report.check("Muon follow-up (Fig. 4)", "exact msign, after phase 1 (bound <= 1.001): records with lambda sigma_max > 1.001",
             int((ex.constraint > 1.001).sum()), "==", 0, stable=False)
ns_end = end[end.msign == "Newton-Schulz"]
over = [ns_end[ns_end.seed == s].constraint.max() - 1 for s in SEEDS]
report.finding("Muon follow-up (Fig. 4)", "Newton-Schulz: max lambda sigma_max - 1 at the end", over, protocol=P["muon_ns"])
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
for ax, (name, g) in zip(axes, mm[mm.seed == SEED].groupby("msign")):
    sns.lineplot(data=g, x="step", y="constraint", hue="name", legend=False, lw=0.8, ax=ax, palette="viridis")
    env = g.groupby("step")["bound"].max()
    ax.plot(env.index, env.values, "k--", lw=1, label="phase-1 bound (max)")
    ax.axhline(1, color="red", lw=1, label="σ_max = 1/λ")
    ax.set(title=f"Muon, λ = {MUON['wd']:g}, {name}", ylabel="λ σ_max per matrix", yscale="log")
axes[0].legend(fontsize=8)
fig.tight_layout()
report.savefig(fig, "cifar10_muon_spectral", element="Muon follow-up (Fig. 4)")
plt.show()

# %% [markdown]
# ## Reading the results (committed cpu scale; the table of findings is at the end)
#
# - **Conv vs transformer.** At this scale the best p does not depend on the architecture in the inferred
#   direction: the p = 2 − p = 1 differences are a fraction of a percentage point with intervals of several
#   points on both nets, and the interaction's interval contains 0. The data neither support nor exclude the
#   reading "p = 1 for transformers, p ≈ 2 for conv nets"; 40 steps on 1,000 images is far from ImageNet.
#   The grid's optima sit at its edge for several arms (largest lr): a wider grid could change the ranking.
# - **Lion vs AdamW.** Lion is ahead on average on both nets, with intervals that include 0.
# - **The λ trade-off.** At a fixed lr, λ × 10 is *not* faster early (behind or level after epoch 1) and ends
#   level or slightly behind. At a fixed lr·λ (lr / 10) it is far behind early and at the end: that reading of
#   "stronger bound" is mostly a smaller step. So the earlier "larger λ is slower" result is reproduced with
#   seeds and is not an artefact of one seed; in these short runs phase 1 does not end for λ × 10 (Σ lr·λ < 1),
#   so the stronger bound acts as stronger shrinkage, not yet as a constraint. Whether the warm-up causes it
#   was not tested.
# - **Muon.** With exact msign every matrix stays below its phase-1 bound and, once phase 1 is over, at or
#   below 1/λ (the checks). Newton-Schulz ends within a few per cent of 1/λ at this scale (the finding's
#   interval contains 0) and its largest value after phase 1 is printed above (about 3 % past 1/λ in the
#   committed run): a small overshoot here, unlike the ≈13 % of the toy problem of `06_muon`.

# %% [markdown]
# ## The paper scale
#
# `SCALE = "paper"` trains the same protocol on CUDA (`cifar_train.train`: bf16 autocast, channels-last for
# the ResNet): a ResNet-18 and a ViT-S on the full CIFAR-10 (45,000 training, 5,000 validation and 10,000 test
# images); its records go to the same folder and this notebook's code turns them into findings.

# %%
n_runs = len(set([*grid_runs.values(), *main_runs.values(), *lam_runs.values(), *muon_runs.values()]))
print(f"{SCALE} scale: {n_runs} distinct runs")

# %% [markdown]
# ## All claims

# %%
# NBVAL_IGNORE_OUTPUT
with pd.option_context("display.max_colwidth", 80, "display.width", 200):
    print(report.findings()[["claim", "verdict", "mean", "ci_low", "ci_high", "n"]].round(3).to_string())
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
