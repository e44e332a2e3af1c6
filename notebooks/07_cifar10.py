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
# # CIFAR-10: the λ trade-off, architecture-dependent p, Lion vs AdamW, and Muon's spectral bound
#
# The paper's network claims on images (`../shared/PAPER-EXPERIMENTS.md`), each decided under a
# **protocol** registered before its runs (`docs/protocols.md`; `paper_figures/protocols/<name>.json`,
# hashed): the arms, how every arm's learning rate is tuned (on tuning seeds and the validation split,
# the grid extended until its optimum is interior), the evaluation seeds, the hypotheses (one primary per
# claim, the others exploratory), their smallest effect of interest (SESOI) and the regime checks they
# rest on ("phase 1", "plateau", "interior", the baseline). This notebook
#
# 1. states its protocols (the tables below are rendered from them);
# 2. shows the plan: which runs are recorded in `paper_figures/runs/cifar/`, which are still to make;
# 3. trains what is missing when `TRAIN_MISSING` is true (each finished run is a record, committed with the
#    others, so a long campaign can be spread over sittings);
# 4. computes every finding from the records with one `analyse(...)` call (Holm-Bonferroni over the
#    primary family) and reports the regime checks as checks: a finding rests on passing checks, else its
#    verdict is "not testable at this scale";
# 5. draws the figures from the records.
#
# No number or verdict below is typed: each is printed by the code beside it.
#
# **Scales** (their sizes are printed below, from `lionlib.experiments.specs.SCALES`). `cpu`: a ResNet-8
# and a small ViT on a subset of the training images, the full test set (the records committed for this
# scale are the data). `smoke` (CI) runs the `tiny` protocols, the same protocols on the engine's smallest
# nets for a few steps: every code path, no claim. `paper`: a ResNet-18 and a ViT-S on the full CIFAR-10,
# trained on CUDA; its records go to the same folder and the same cells turn them into findings.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke (the tiny protocols) | cpu | paper (CUDA)
TRAIN_MISSING: bool = os.environ.get("LIONLIB_TRAIN_MISSING", "1") not in ("0",)  # train the runs the protocols still need; False: report what is recorded
MAX_RUNS: Optional[int] = None  # train at most this many runs in this sitting (None: all that are missing)
DATA_DIR: Optional[str] = None  # None -> $LIONLIB_DATA_DIR, data/, ../shared/data
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from lionlib.companion import cifar_companion as cc
from lionlib.companion.campaign import run_campaign, status
from lionlib.companion.protocol_analysis import analyse, sentence
from lionlib.companion.protocol_records import PHASE1_SUM
from lionlib.companion.report import Report, setup_plotting
from lionlib.experiments.specs import SCALES

if DATA_DIR:
    os.environ["LIONLIB_DATA_DIR"] = DATA_DIR
setup_plotting()
report = Report("07_cifar10", out_dir=OUT_DIR)
torch.set_num_threads(1)  # every run trains on one thread, deterministically (store.train_spec)
PSCALE = cc.PROTOCOL_SCALE[SCALE]  # the scale of the protocols and of the run specs
PROTOCOLS = cc.protocols_for(SCALE)
ELEMENT = {"lambda_tradeoff_resnet": "Section 5 (lambda trade-off)", "architecture_p": "Section 5 (architecture-dependent K)",
           "lion_vs_adamw_resnet": "Lion vs AdamW", "lion_vs_adamw_vit": "Lion vs AdamW", "muon_spectral": "Muon follow-up (Fig. 4)"}
element = {p.name: ELEMENT[p.name.rsplit("_", 1)[0]] for p in PROTOCOLS}
print(f"scale {SCALE}: protocols at scale {PSCALE}, trained on {'cuda' if PSCALE == 'paper' else 'cpu'}; sizes:",
      {k: v for k, v in SCALES["cifar"][PSCALE].items() if k != "model"})

# %% [markdown]
# ## 1. The protocols
#
# Per protocol: the claim, its source, the arms (partial run specs; the scale fills in the rest), the
# tuning, the evaluation seeds; per hypothesis: the test, primary or exploratory, each contrast's metric and
# SESOI; then the regime checks. The decision rule is the same for all (printed once).

# %%
# NBVAL_IGNORE_OUTPUT
for p in PROTOCOLS:
    t = p.tuning
    display(Markdown(f"**{p.name}** (hash `{p.hash}`): {p.claim} [{p.source}]. Tuning: {t.initial} points of lr x "
                     f"{t.factor:g}^k, grown to at most {t.max_points}, seeds {list(t.seeds)}, score {t.metric.key} ({t.goal}); "
                     f"evaluation seeds {list(p.eval_seeds)}. {p.notes}."))
    arms = pd.DataFrame([dict(arm=a.name, lr=a.lr if a.tune else (f"tuned lr of {a.lr_from}" if a.lr_from else dict(a.spec)["lr"]),
                              tuned=a.tune, **{k: v for k, v in a.spec if k not in ("task", "scale", "lr")}) for a in p.arms])
    display(arms.set_index("arm"))
    hyps = pd.DataFrame([dict(hypothesis=h.text, test=h.test, primary=h.primary,
                              contrasts="; ".join(f"{c.label}: {c.metric.kind}({c.metric.key}) in {c.metric.units}, SESOI {c.sesoi:g}"
                                                  for c in h.contrasts)) for h in p.hypotheses])
    display(hyps)
    display(pd.DataFrame([dict(check=c.name, arms=", ".join(c.arms), threshold=c.threshold) for c in p.checks]))
print("decision rule:", PROTOCOLS[0].rule)

# %% [markdown]
# ## 2. The plan
#
# Every run a protocol needs, recorded or still to make. Runs shared by several protocols (Lion on the
# ResNet at λ = 1 is an arm of the trade-off, the architecture and the Lion vs AdamW protocols) count once
# in the last row. While an arm's tuning is not finished its
# grid can still grow at an edge ("at most"), and its evaluation runs wait for its tuned lr.

# %%
# NBVAL_IGNORE_OUTPUT
records = run_campaign(PROTOCOLS, PSCALE, train=False)  # what is recorded now
print(cc.campaign_table(PROTOCOLS, records).to_string())

# %% [markdown]
# **The cpu campaign's CPU time** (a size check, not a timing test): the number of distinct runs of the cpu
# protocols times the seconds a run of each kind took on the 2-core AMD EPYC of the committed outputs, one
# thread under `nice -n 10` at a load average below 4, with `lionlib.experiments.store.train_spec` (how
# each was timed is in the cell's comments). Lion-ℓp and AdamW runs are counted at Lion's seconds on the
# same net (not timed).

# %%
# One whole cpu-scale run (its spec's steps, the final evaluation on the full test set included) of Lion on
# the ResNet-8 and on the ViT; Muon timed over 100 steps and scaled to the run's steps, its one evaluation
# (estimated at 9 s: a forward pass over the test set, about a third of a training step per image) counted once.
SECONDS_PER_RUN = {"resnet8": 187.1, "vit": 75.4, "resnet8 muon exact": 10 * 34.4 - 9 * 9.0,
                   "resnet8 muon ns": 10 * 39.4 - 9 * 9.0}
cpu_protocols = cc.protocols_for("cpu")
cost = cc.campaign_seconds(cpu_protocols, records if PSCALE == "cpu" else [], SECONDS_PER_RUN)
display(Markdown(f"The cpu campaign from an empty store is {cost['runs_min']} to {cost['runs_max']} distinct runs "
                 f"(tuning grids at their first {cpu_protocols[0].tuning.initial} points, or all grown to "
                 f"{cpu_protocols[0].tuning.max_points}): **{cost['seconds_min'] / 3600:.1f} to {cost['seconds_max'] / 3600:.1f} "
                 f"CPU-hours** on one thread: that much wall time one run at a time (as this notebook's campaign trains), "
                 f"{cost['seconds_min'] / 7200:.1f} to {cost['seconds_max'] / 7200:.1f} hours with two single-thread runs "
                 "side by side on the 2 cores."))

# %% [markdown]
# ## 3. Training what is missing
#
# Each protocol in turn: its tuning runs, then, once every grid's optimum is interior (or the grid is at
# its largest), its evaluation runs at the tuned lr. A record already made for another protocol with the
# same spec is stamped for this one, not retrained. `TRAIN_MISSING = False` trains nothing.

# %%
# NBVAL_IGNORE_OUTPUT
records = run_campaign(PROTOCOLS, PSCALE, max_runs=MAX_RUNS, train=TRAIN_MISSING,
                       device="cuda" if PSCALE == "paper" else "cpu")
recorded, pending = status(PROTOCOLS, records)
table = cc.campaign_table(PROTOCOLS, records)
complete = [p for p in PROTOCOLS if not pending[p.name]]
for p in PROTOCOLS:
    row = table.loc[p.name]
    state = "complete" if p in complete else (f"{len(pending[p.name])} runs planned now, {row.to_make_at_least} to "
                                              f"{row.to_make_at_most} still to make in all")
    display(Markdown(f"- **{p.name}**: {len(recorded[p.name])} runs recorded; {state}."))
everything = table.loc["all (distinct runs)"]
n_done, n_all = int(everything.recorded), int(everything.recorded + everything.to_make_at_least)
report.check("Section 5 (CIFAR-10)", "all protocol runs recorded (k of n)", n_done, ">=", n_all, fmt=".0f", stable=False)
display(Markdown(f"All protocol runs recorded: {n_done} of {n_all} distinct runs (at least {n_all}: a tuning grid may grow). "
                 + ("Every protocol is complete." if len(complete) == len(PROTOCOLS) else
                    f"No finding is computed for the incomplete protocols "
                    f"({', '.join(p.name for p in PROTOCOLS if p not in complete)}): run this notebook with "
                    "`TRAIN_MISSING = True` to make their runs.")))

# %% [markdown]
# ## 4. Findings and regime checks
#
# One `analyse` call over the complete protocols: the primary family for Holm-Bonferroni is their primary
# hypotheses (the sentence says how many of the five that is). Each regime check is a check of this
# notebook; a finding resting on a failed one is "not testable at this scale".

# %%
out = analyse(complete, records) if complete else {"findings": [], "checks": [], "tuning": {}}
for c in out["checks"]:
    report.check(element[c["protocol"]], f"{c['protocol']}: {c['check']} ({c['arm']})", c["value"], c["op"], c["threshold"],
                 stable=False)
n_primary = sum(h.primary for p in PROTOCOLS for h in p.hypotheses)
family = [f for f in out["findings"] if f["primary"]]
display(Markdown(f"Holm-Bonferroni family: {len(family)} of the {n_primary} primary hypotheses of this notebook"
                 + (" (the adjusted verdicts are final once every protocol is complete)." if len(family) < n_primary else ".")))
for f in out["findings"]:
    report.protocol_finding(element[f["protocol"]], f)
    display(Markdown(f"- {sentence(f)}"))

# %%
# NBVAL_IGNORE_OUTPUT
tuning = pd.DataFrame([dict(protocol=p, arm=a, lr=s["lr"], interior=s.get("interior"),
                            grid=", ".join(f"{k}: {v:.3g}" for k, v in sorted(s.get("scores", {}).items())))
                       for p, arms in out["tuning"].items() for a, s in arms.items()])
tuning if len(tuning) else "no complete protocol: no tuned lr yet"

# %% [markdown]
# ## 5. Figures from the records
#
# **The λ trade-off**: the smoothed training loss of every λ arm (mean and 95 % band over the evaluation
# seeds), and λ‖x‖∞ (the largest over the decayed tensors) against the box at 1, which the checks
# "strong arms start outside their box" and "phase 1 over before the early read-out" read.

# %%
tradeoff = next(p for p in PROTOCOLS if p.name.startswith("lambda_tradeoff"))
loss = cc.curves_frame(tradeoff, records, "train", "loss")
box = cc.curves_frame(tradeoff, records, "monitor", "max_constraint")
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
if len(loss):
    sns.lineplot(data=loss, x="step", y="value", hue="arm", errorbar=("ci", 95), seed=0, ax=axes[0])
    sns.lineplot(data=box, x="step", y="value", hue="arm", errorbar=("ci", 95), seed=0, ax=axes[1], legend=False)
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[1].set_yscale("log")
for ax, what in zip(axes, ("training loss (window means)", "λ ‖x‖∞, largest over decayed tensors")):
    ax.set(ylabel=what, title=f"{tradeoff.name}" if len(loss) else f"{tradeoff.name}: no evaluation run recorded yet")
fig.tight_layout()
report.savefig(fig, "cifar10_lambda_tradeoff", element=element[tradeoff.name])
plt.show()

# %% [markdown]
# **Conv net vs ViT**: final test accuracy of every arm of the architecture protocol and of the two
# Lion vs AdamW protocols (mean and 95 % interval over the evaluation seeds).

# %%
acc = cc.accuracy_frame([p for p in PROTOCOLS if p.name.startswith(("architecture_p", "lion_vs_adamw"))], records)
acc["net"] = ["ViT" if "_vit_" in pr or a.startswith("vit_") else "ResNet" for pr, a in zip(acc.protocol, acc.arm)]
acc["optimizer"] = [{"p1": "Lion (p = 1)", "lion": "Lion (p = 1)", "adamw": "AdamW"}.get(a.split("_")[-1], f"Lion-lp {a.split('_')[-1]}")
                    for a in acc.arm]  # Lion is the p = 1 arm of the architecture protocol: the same runs
fig, ax = plt.subplots(figsize=(7, 3.6))
if len(acc):
    sns.pointplot(data=acc.drop_duplicates(["net", "optimizer", "seed"]), x="optimizer", y="test_acc", hue="net",
                  errorbar=("ci", 95), seed=0, dodge=0.3, ax=ax)
ax.set(ylabel="test accuracy (%), all test images", xlabel="",
       title="CIFAR-10, conv net vs ViT" if len(acc) else "conv net vs ViT: no evaluation run recorded yet")
report.savefig(fig, "cifar10_conv_vs_vit", element=element[PROTOCOLS[1].name])
plt.show()

# %% [markdown]
# **Muon's spectral bound**: λσ_max of every matrix of the ResNet (the conv kernels as (out, in·k·k)
# matrices, and the head) over the steps for the first evaluation seed, exact msign and Newton-Schulz,
# against the box at 1, and at the last step for every seed (the records keep each matrix's largest
# singular value, not its whole spectrum).

# %%
muon = next(p for p in PROTOCOLS if p.name.startswith("muon_spectral"))
spec = cc.spectrum_frame(muon, records)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
for ax, arm in zip(axes[:2], ("muon_exact", "muon_ns")):
    g = spec[(spec.arm == arm) & (spec.seed == muon.eval_seeds[0])]
    if len(g):
        sns.lineplot(data=g, x="step", y="constraint", hue="matrix", legend=False, lw=0.8, palette="viridis", ax=ax)
    ax.axhline(1.0, color="red", lw=1)
    ax.set(title=f"{arm}, seed {muon.eval_seeds[0]}" if len(g) else f"{arm}: no run recorded yet", ylabel="λ σ_max", yscale="log")
end = spec[spec.step == spec.groupby(["arm", "seed"]).step.transform("max")] if len(spec) else spec
if len(end):
    sns.stripplot(data=end, x="arm", y="constraint", hue="seed", dodge=True, size=3, ax=axes[2])
axes[2].axhline(1.0, color="red", lw=1)
axes[2].set(title="last step, every matrix and seed", xlabel="")
fig.tight_layout()
report.savefig(fig, "cifar10_muon_spectral", element=element[muon.name])
plt.show()

# %% [markdown]
# ## The paper scale
#
# `SCALE = "paper"` builds the paper protocols (a ResNet-18 and a ViT-S on the full CIFAR-10, the arms and
# λ values of `lionlib.companion.protocol_library`) and trains them on CUDA (bf16 autocast; the campaign
# picks the device from the scale). Their records go to `paper_figures/runs/cifar/` beside the cpu ones,
# and the cells above turn them into findings unchanged: the same path runs end to end at the `tiny` scale
# in CI (`SCALE = "smoke"`) and in `tests/test_cifar_companion.py`.

# %%
# NBVAL_CHECK_OUTPUT
print("protocols:", ", ".join(cc.NAMES))
print("hypotheses per protocol:", [len(p.hypotheses) for p in PROTOCOLS], "primary:", n_primary)
print("regime checks per protocol:", [len(p.checks) for p in PROTOCOLS])

# %% [markdown]
# ## All claims
#
# The checks' PASS/FAIL depends on the records (at the smoke scale every run is made and the tiny runs are
# far from any plateau), so nbval compares the structure above, not this summary.

# %%
# NBVAL_IGNORE_OUTPUT
with pd.option_context("display.max_colwidth", 80, "display.width", 200):
    print(report.findings()[["claim", "verdict", "mean", "ci_low", "ci_high", "n"]].round(3).to_string())
report.table()

# %%
# NBVAL_IGNORE_OUTPUT
report.summary()
