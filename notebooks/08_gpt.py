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
# # Lion-K on a GPT: Lion vs AdamW, Lion-ℓp, and the λ trade-off, with seeds
#
# The paper trains GPT-2 (124M) on OpenWebText with Lion-ℓp, p ∈ [1, 2], under a cosine schedule
# (`../shared/PAPER-EXPERIMENTS.md`). Its statements about networks, measured here on a character-level
# GPT (`lionlib.experiments.gpt`, nanoGPT's model and trainer, unchanged) with 5 seeds:
#
# 1. **Lion vs AdamW** (the Lion paper: Lion matches or beats AdamW on language models);
# 2. **p = 1 is best for transformers** [inferred]: Lion-ℓp with p ∈ {1, 1.5, 2};
# 3. **the λ trade-off** [inferred]: "a stronger bound converges faster early and ends worse", at a fixed
#    lr and at a fixed lr·λ;
# 4. the **check** of Theorem B.9 on every run: no decayed tensor ever exceeds its phase-1 bound.
#
# **Scale.** `cpu` (the committed outputs): tiny Shakespeare (characters), a 2-layer, 64-wide GPT with
# context 64, 240 steps of 16 sequences (~0.25M tokens), 10 % warm-up then cosine to lr/10; validation loss
# on fixed batches. Tiny on purpose: ~35 runs fit in 15 minutes on 2 shared cores; nanoGPT's 4×128 model
# and 2,000 steps were 8-9 minutes for a single seed. `smoke` (CI): 2 seeds, 80 steps of a 1-layer model. `paper`: prints the
# `torchrun` commands for GPT-2 124M on OpenWebText and their cost.
#
# Runs go through the run store (`lionlib.experiments.store`): each is a `GptSpec` whose record is kept under
# its hash in `paper_figures/runs/gpt/` (`REFRESH = True` retrains), trained deterministically on one thread,
# two side by side. Tuning reads the validation stream; the findings read the distinct test stream.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper
SEED: int = 0
N_SEEDS: Optional[int] = None  # None -> 2 (smoke), 5 (cpu)
WORKERS: int = 2
REFRESH: bool = False
DATA_DIR: Optional[str] = None  # None -> $LIONLIB_DATA_DIR, else data/ (tiny Shakespeare)
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
LR_GRID: Optional[tuple] = None  # multiples of the base lr, tuned with seed SEED (Lion, AdamW); None -> (1/3, 1, 3), smoke (1,)
P_VALUES: tuple = (1.5, 2.0)  # Lion-lp exponents besides p 1 (Lion)
LAMBDA_FACTOR: float = 10.0

# %%
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from lionlib.companion.report import Protocol, Report, setup_plotting
from lionlib.experiments.gpt_data import load_dataset_by_name
from lionlib.experiments.record import environment
from lionlib.experiments.specs import GptSpec, gpt_spec
from lionlib.experiments.store import RunStore

setup_plotting()
report = Report("08_gpt", out_dir=OUT_DIR)
torch.set_num_threads(1)  # fixed per notebook: every run trains on one thread
N = N_SEEDS or (2 if SCALE == "smoke" else 5)
SEEDS = tuple(range(SEED, SEED + N))
LR_GRID = LR_GRID or ((1.0,) if SCALE == "smoke" else (1 / 3, 1.0, 3.0))
SIZE = {"smoke": dict(model="gpt_tiny", steps=80, warmup=8, batch_size=8, eval_every=20, eval_batches=4, final_eval_batches=8),
        "cpu": dict(model="gpt_2x64", steps=240, warmup=24, batch_size=16, eval_every=60, eval_batches=10,
                    final_eval_batches=40),
        "paper": dict(),  # the spec's paper scale: GPT-2 124M on OpenWebText, through torchrun
        }[SCALE]
BASE = {"Lion": dict(optimizer="lion", lr=1e-3, weight_decay=1.0), "AdamW": dict(optimizer="adamw", lr=3e-3, weight_decay=0.1)}
STORE = RunStore()
if SCALE == "paper":  # GPT-2 124M trains on 8 GPUs: each run is a torchrun command; its record lands in the store
    print("paper scale: GPT-2 124M on OpenWebText (prepare it first: lionlib.experiments.gpt_data.prepare_openwebtext)")
    for name, opt, extra in [("Lion", "lion", ""), ("AdamW", "adamw", "")] + [(f"p={p:g}", "lion_lp", f" --p {p:g}") for p in (1.5, 2)]:
        for s in range(5):
            print(f"torchrun --standalone --nproc_per_node 8 -m lionlib.experiments.gpt --scale paper --optimizer {opt}{extra} "
                  f"--seed {s}")
    print("cost: 100k steps x 480 x 1024 tokens = 49B tokens per run (not measured here)")
    raise SystemExit("the paper scale's runs are the torchrun commands above; rerun this notebook once their records are stored")


def make(seed: int, **kw) -> GptSpec:
    return gpt_spec(SCALE, seed=seed, monitor_every=max(1, (SIZE.get("steps") or 1) // 10), **{**SIZE, **kw})


def run_many(specs: list) -> list:
    return STORE.run(specs, REFRESH, WORKERS, DATA_DIR)


data = load_dataset_by_name("shakespeare_char", DATA_DIR)
counts = np.bincount(np.asarray(data.train), minlength=data.vocab_size) + 1.0
unigram = float(-np.log(counts / counts.sum())[np.asarray(data.val)].mean())
print(f"scale {SCALE}: seeds {SEEDS}, {SIZE}; unigram cross-entropy {unigram:.3f} nats; this kernel: "
      f"{environment('cpu', 'fp32', False)}")
print("(each run records its own environment: one thread, deterministic algorithms, in a worker process)")

# %% [markdown]
# ## Protocols (fixed before any run)
#
# **final** = test-stream loss at the end (fixed batches); **early** = validation loss at a quarter of the run.
# Paired designs: arms with the same seed share the initialisation and every training batch (the batch of
# step t is seeded by (seed, t)). Effects are signed so the hypothesis predicts > 0 (in nats). Decision
# rule: the 95 % t interval of the mean effect; above 0: reproduced, below 0: not reproduced, else
# inconclusive at this scale.

# %%
CHOICES = ("Lion-lp step scale n^(1-1/p) per tensor (lr x s, lambda / s; lionlib.experiments.gpt.param_groups); "
           "decoupled lambda on 2-D tensors only (matmul weights, tied embedding; nanoGPT's convention); "
           "lr of Lion and AdamW tuned on {1/3, 1, 3} x base (Lion 1e-3, AdamW 3e-3) at lambda 1 / 0.1 with seed SEED "
           "(one of the 5 evaluation seeds); Lion-lp uses Lion's tuned lr; gradient clipping at 1; cpu scale: "
           "2x64 GPT, context 64, 240 steps x 16 sequences, tiny Shakespeare")
nats = "validation loss, nats"
P = {
    "adamw": Protocol("Lion (tuned) ends at least as low as AdamW (tuned): loss(AdamW) - loss(Lion) > 0",
                      f"final {nats}: AdamW - Lion", SEEDS, source="Lion paper (Chen et al. 2023)", choices=CHOICES),
    **{f"p{p:g}": Protocol(f"On the transformer p = 1 (Lion) beats p = {p:g}", f"final {nats}: (p={p:g}) - (p=1)", SEEDS,
                           choices=CHOICES) for p in P_VALUES},
}
for reading, what in (("fixed_lr", "at Lion's tuned lr"), ("fixed_lrwd", "at a fixed lr x lambda (lr / factor)")):
    P[f"{reading}_early"] = Protocol(f"a stronger bound (lambda x {LAMBDA_FACTOR:g}, {what}) converges faster early",
                                     f"early {nats}: base - strong", SEEDS, choices=CHOICES)
    P[f"{reading}_final"] = Protocol(f"a stronger bound (lambda x {LAMBDA_FACTOR:g}, {what}) ends worse",
                                     f"final {nats}: strong - base", SEEDS, choices=CHOICES)

# %% [markdown]
# ## 1. Tuning (seed `SEED`)

# %%
grid_runs = {(arm, m): make(SEED, **{**b, "lr": b["lr"] * m}) for arm, b in BASE.items() for m in LR_GRID}
grid_res = dict(zip(grid_runs, run_many(list(grid_runs.values()))))
grid = pd.DataFrame([dict(arm=k[0], lr=r.spec.lr, val_loss=r.final["val_loss"]) for k, r in grid_res.items()])
print(grid.pivot_table(index="arm", columns="lr", values="val_loss").round(3).to_string())
best_lr = grid.loc[grid.groupby("arm")["val_loss"].idxmin()].set_index("arm")["lr"]
print("tuned lr:", best_lr.to_dict())

# %% [markdown]
# ## 2. Lion vs AdamW, and Lion-ℓp, 5 seeds

# %%
lion = {**BASE["Lion"], "lr": best_lr["Lion"]}
arms = {"Lion (p=1)": lion, "AdamW": {**BASE["AdamW"], "lr": best_lr["AdamW"]},
        **{f"Lion-lp p={p:g}": {**lion, "optimizer": "lion_lp", "p": p} for p in P_VALUES},
        "lambda x10, fixed lr": {**lion, "weight_decay": lion["weight_decay"] * LAMBDA_FACTOR},
        "lambda x10, fixed lr*lambda": {**lion, "weight_decay": lion["weight_decay"] * LAMBDA_FACTOR,
                                        "lr": lion["lr"] / LAMBDA_FACTOR}}
runs = {(arm, s): make(s, **kw) for arm, kw in arms.items() for s in SEEDS}
res = dict(zip(runs, run_many(list(runs.values()))))
quarter = SIZE["steps"] // 4


def val_at(r, step):
    return r.eval["val_loss"][r.eval["step"].index(step)]


tab = pd.DataFrame([dict(arm=k[0], seed=k[1], early=val_at(r, quarter), final=r.final["test_loss"]) for k, r in res.items()])
print(tab.groupby("arm")[["early", "final"]].agg(["mean", "std"]).round(3).to_string())

# %%
F_ = tab.pivot_table(index="seed", columns="arm", values="final")
E_ = tab.pivot_table(index="seed", columns="arm", values="early")
el = "Section 5 (GPT-2)"
report.finding("Lion vs AdamW", "GPT: loss(AdamW) - loss(Lion) (nats)", F_["AdamW"] - F_["Lion (p=1)"], protocol=P["adamw"])
for p in P_VALUES:
    report.finding("Section 5 (architecture-dependent K)", f"GPT: loss(p={p:g}) - loss(p=1) (nats)",
                   F_[f"Lion-lp p={p:g}"] - F_["Lion (p=1)"], protocol=P[f"p{p:g}"])
for reading, arm in (("fixed_lr", "lambda x10, fixed lr"), ("fixed_lrwd", "lambda x10, fixed lr*lambda")):
    report.finding("Section 5 (lambda trade-off)", f"GPT, {reading}: strong lambda ahead early (nats)",
                   E_["Lion (p=1)"] - E_[arm], protocol=P[f"{reading}_early"])
    report.finding("Section 5 (lambda trade-off)", f"GPT, {reading}: strong lambda behind at the end (nats)",
                   F_[arm] - F_["Lion (p=1)"], protocol=P[f"{reading}_final"])

# %%
curves = pd.DataFrame([dict(arm=k[0], seed=k[1], step=s, val_loss=v)
                       for k, r in res.items() for s, v in zip(r.eval["step"], r.eval["val_loss"])])
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
sns.lineplot(data=curves[curves.arm.isin(["Lion (p=1)", "AdamW"] + [f"Lion-lp p={p:g}" for p in P_VALUES])],
             x="step", y="val_loss", hue="arm", marker="o", errorbar=("ci", 95), seed=0, ax=axes[0])
sns.lineplot(data=curves[curves.arm.str.startswith("lambda") | (curves.arm == "Lion (p=1)")],
             x="step", y="val_loss", hue="arm", marker="o", errorbar=("ci", 95), seed=0, ax=axes[1])
for ax, title in zip(axes, ("optimizers", "the lambda trade-off (Lion)")):
    ax.axhline(unigram, color="gray", ls=":", lw=1)
    ax.set(ylabel="validation loss (nats)", title=f"{title}: mean and 95% CI over {N} seeds", ylim=(None, unigram + 0.3))
    ax.legend(fontsize=8)
fig.tight_layout()
report.savefig(fig, "gpt_optimizers_lambda", element=el)
plt.show()

# %% [markdown]
# **Why was "larger λ" slower before?** At a fixed lr, λ × 10 multiplies the per-step decay lr·λ by ten; at a
# fixed lr·λ only the step shrinks. The printout compares the two readings; the warm-up was not varied (cut
# for time), so it is not tested as a cause.

# %%
m = tab.groupby("arm")[["early", "final"]].mean()
for arm in ("lambda x10, fixed lr", "lambda x10, fixed lr*lambda"):
    print(f"{arm}: early {m.loc[arm, 'early']:.3f} vs base {m.loc['Lion (p=1)', 'early']:.3f}; "
          f"final {m.loc[arm, 'final']:.3f} vs base {m.loc['Lion (p=1)', 'final']:.3f} nats")

# %% [markdown]
# **Reading the committed cpu results** (numbers in the findings table at the end):
#
# - **Lion vs AdamW**: tuned AdamW ends *lower* than tuned Lion on this tiny GPT (the interval excludes 0): not
#   reproduced at this scale. Both optima sit at the largest lr of their grid, so a wider grid may move both.
# - **p = 1 on the transformer**: p = 1 beats p = 1.5 and p = 2 clearly (reproduced). Caveat, the companion's
#   choice: Lion-ℓp runs at Lion's tuned lr with the n^(1−1/p) step scale; p = 2 was not tuned separately.
# - **λ trade-off**: a stronger bound is *behind* early in both readings (not reproduced), and ends behind at a
#   fixed lr·λ (reproduced, but there the lr is 10× smaller); at a fixed lr the final cost is inside the noise.
#   As on CIFAR, the "larger λ is slower" result holds with seeds; in runs this short it is the larger
#   per-step decay (fixed lr) or the smaller step (fixed lr·λ), not a faster-converging constraint.

# %% [markdown]
# ## 3. Checks: the phase-1 bound on every Lion and Lion-ℓp run; sanity

# %%
mon = pd.concat([r.monitor_frame().assign(arm=k[0], seed=k[1]) for k, r in res.items()
                 if r.monitor["step"] and k[0] != "AdamW"])
report.check("Theorem B.9", "GPT, every Lion/Lion-lp run, decayed tensor and record: lambda ||x||_dual <= phase-1 bound "
             "(max of ratio - 1)", (mon.constraint / mon.bound).max() - 1, "<=", 1e-5, stable=False)
report.check("Sanity", "the best arm learns more than token frequencies: mean final val loss - unigram cross-entropy (nats)",
             tab.groupby("arm")["final"].mean().min() - unigram, "<", 0, stable=False, sanity=True)
report.check("Sanity", "every arm: validation loss decreased from the first evaluation (worst run, final / first)",
             max(r.final["val_loss"] / r.eval["val_loss"][0] for r in res.values()), "<", 1, stable=False, sanity=True)

# %% [markdown]
# ## The paper scale
#
# Run this notebook with `SCALE = "paper"` to print the `torchrun` commands (GPT-2 124M on OpenWebText,
# `lionlib.experiments.gpt`); each writes its record into the same store. The command of one
# cpu-scale run, for reference:

# %%
sp = runs["Lion (p=1)", SEED]
print(f"python -m lionlib.experiments.gpt --scale {SCALE} --optimizer lion --lr {sp.lr:g} --weight-decay {sp.weight_decay:g} "
      f"--steps {sp.steps} --batch-size {sp.batch_size} --model {sp.model} --seed {SEED}")

# %% [markdown]
# ## All claims

# %%
# NBVAL_IGNORE_OUTPUT
with pd.option_context("display.max_colwidth", 80, "display.width", 200):
    print(report.findings()[["claim", "verdict", "mean", "ci_low", "ci_high", "n"]].round(4).to_string())
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
