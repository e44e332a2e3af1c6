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
# # The fused update: how fast is one Lion step?
#
# Lion keeps one momentum buffer, and its update only streams memory: read the parameter p, the
# gradient g and the momentum m, write p and m. In fp32 that is **20 bytes per parameter** (AdamW
# moves 28: one more state tensor to read and write). A step cannot be faster than the time the
# machine needs to stream those bytes, so every implementation is measured against that limit.
#
# `lionlib` has four execution paths for the same update (all checked against one reference in
# `tests/test_optim.py` and `tests/test_fused.py`):
#
# - **forloop**: one tensor at a time, eager torch ops (the readable reference);
# - **foreach**: `torch._foreach_*` ops over all tensors of a (device, dtype) group;
# - **cpp** (CPU, the default there): a small C++ kernel (`lionlib/fused/cpu.cpp`, built on first
#   use) that reads p, g, m once and writes p, m once, for every tensor of a group in one call,
#   split evenly over torch's OpenMP threads, vectorised, with software prefetch;
# - **triton** (CUDA): one horizontally fused Triton launch per (device, dtype) group, with pointer
#   and chunk tables so that every tensor of the model is updated by the same launch.
#
# **Nothing is timed in this notebook.** It reads the JSON files that `benchmarks/bench_step.py`
# wrote (`benchmarks/results/*.json`: one per machine and device, with the machine's description)
# and plots them. Each file records one optimizer step (median of several, after warm-up) for a
# GPT-like list of tensors from 1M parameters up, for every lionlib path and for the alternatives:
# `lion_pytorch.Lion` (default for-loop, its foreach class, its Triton kernel on GPU),
# `pytorch_optimizer.Lion`, and `torch.optim.AdamW` (foreach and fused). The bandwidth limit is
# measured in the same process: the time of an in-place `torch.add_` that streams the same number
# of bytes.
#
# Timings differ between machines and with the load of the machine (recorded in each file), so the
# speed targets below are **findings about the machine that measured them**, never checks: each
# benchmark round gives one paired measurement of every implementation, and the verdict comes from
# the 95 % interval over the rounds. What the code guarantees (the default path on CPU is the C++
# kernel) is a check.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper (same work at every scale)
SEED: int = 0  # unused: nothing random here
DEVICE: str = "auto"  # unused: the measurements were taken by benchmarks/bench_step.py
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
RESULTS: Optional[str] = None  # glob of result files; None -> benchmarks/results/*.json in the repo
CPU_SIZE_M: int = 64  # parameter count (millions) of the CPU targets of issue 5
GPU_SIZE_M: int = 256  # parameter count (millions) of the GPU targets

# %%
import glob
import json
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from lionlib.companion.paths import REPO
from lionlib.companion.report import Protocol, Report, setup_plotting

setup_plotting()
report = Report("09_fused_update", out_dir=OUT_DIR)
files = sorted(map(Path, glob.glob(RESULTS))) if RESULTS else sorted((REPO / "benchmarks" / "results").glob("*.json"))
runs = [json.loads(f.read_text()) | {"file": f.name} for f in files]
runs = [r for r in runs if "results" in r and "device" in r]  # step results only (bench_train.py writes others)
print(f"{len(runs)} step result file(s)")

# %% [markdown]
# ## Where and how the numbers were measured
#
# One row per result file: CPU model, cores, the torch threads used, versions, and the load average
# when the run started and ended. The committed CPU files come from a 2-core virtual machine with
# no other job of ours running (the load average is in the files), one with one torch thread and
# one with torch's default of two. The machine is shared with other virtual machines: from run to
# run the streaming limit moved between 31 and 42 ms at 64M parameters, and `lion_pytorch`'s step
# between 135 and 200 ms. The benchmark therefore times every implementation in rounds that visit
# each in turn, so that drift hits all alike; still, a ratio near a target can land on either side
# of it from one run to the next. No GPU file is committed yet (`benchmarks/gpu_check.sh` makes one
# on a machine with a GPU).

# %%
# NBVAL_IGNORE_OUTPUT
machines = pd.DataFrame([{"file": r["file"], "device": r["device"], **r["machine"]} for r in runs])
machines

# %%
rows = []
for r in runs:
    for row in r["results"]:
        rows.append({"file": r["file"], "device": r["device"], **row})
df = pd.DataFrame(rows)
df["M params"] = df["n_params"] / 2**20
df["step (ms)"] = df["step_s"] * 1e3
df["fraction of stream"] = df["fraction_of_stream"]

# %%
if len(df):
    g = sns.relplot(df, x="M params", y="step (ms)", hue="impl", col="file", kind="line", marker="o",
                    facet_kws=dict(sharey=False), height=4, aspect=1.2)
    g.set(xscale="log", yscale="log")
    report.savefig(g.figure, "fused_step_time", element="Fused kernel")
    plt.show()
    g = sns.relplot(df, x="M params", y="fraction of stream", hue="impl", col="file", kind="line", marker="o",
                    height=4, aspect=1.2)
    g.set(xscale="log")
    for ax in g.axes.flat:
        ax.axhline(1.0, color="k", ls=":", lw=1)
    report.savefig(g.figure, "fused_bandwidth_fraction", element="Fused kernel")
    plt.show()

# %% [markdown]
# ## The targets of issue 5, as findings about this machine
#
# On the CPU at 64M parameters, the default lionlib path should reach at least 80% of the
# streaming limit and be at least 5x faster than `lion_pytorch.Lion`'s default. On a GPU at 256M
# parameters, the Triton kernel should reach 85% of the streaming limit.
#
# Issue 5 also set "x fused AdamW" targets (at most 0.8x the time of `torch.optim.AdamW(fused=True)`
# on CPU, faster than it on GPU). They are dropped as targets: torch's fused AdamW is no stable
# yardstick, because its time per parameter varies several-fold with the tensor shapes (issue 19
# timed 512x2048 matrices against long vectors on an AMD EPYC CPU), so such a ratio measures torch's
# shape handling, not lionlib. The ratio is still printed below, per round, as a shape-dependent
# description of this tensor list only. lionlib's own yardstick is the plain C pass over the same
# bytes (`benchmarks/bench_step.py`'s `fraction_of_lion_pass` and its `ratios`).
#
# **Protocol (fixed before reading the files).** Hypothesis: each target holds on the machine of
# the file. Metric: per benchmark round r (every implementation timed `repeats` times in turn, so a
# round pairs them), the median step time of each implementation in that round; the effect of a
# round is its margin over the target (speed-up - 5; 0.8 - time ratio; share of stream - 0.8), so
# the hypothesis predicts > 0. Rounds play the role of seeds (at least 5 for a verdict). Decision:
# the 95 % t interval over rounds above 0 -> reproduced, below 0 -> not reproduced, else
# inconclusive. Caveat: rounds of one run share the machine's state of that hour; the interval
# says nothing about another hour or another machine.

# %%
def per_round(row, key: str, repeats: int) -> list[float]:
    """Median of each round's timings (`key` is step_s_all or stream_s_all, in round order)."""
    xs = row[key]
    return [statistics.median(xs[i:i + repeats]) for i in range(0, len(xs), repeats)]


def target_finding(where: str, claim: str, effects: list[float], metric: str, rounds: int) -> str:
    protocol = Protocol(hypothesis=f"{where}: {claim}", metric=metric, seeds=range(rounds), design="paired",
                        source="companion (issue 5's speed targets)",
                        choices="GPT-like tensor list; median of each round's timed steps; see benchmarks/bench_step.py")
    return report.finding("Fused kernel", f"{where}: {claim}", effects, protocol=protocol)


def at_size(file: str, size_m: float) -> pd.DataFrame:
    """Rows of one result file at the measured size within 25% of size_m (empty if none)."""
    sub = df[df["file"] == file]
    near = [x for x in sub["M params"].unique() if abs(x / size_m - 1) < 0.25]
    return sub[sub["M params"] == max(near)].set_index("impl") if near else sub.iloc[:0]


target_rows = {}
for r in runs:
    size = CPU_SIZE_M if r["device"] == "cpu" else GPU_SIZE_M
    rows_at = at_size(r["file"], size)
    if not len(rows_at):
        continue
    reps, n_rounds = r["repeats"], r["rounds"]
    if r["device"] == "cpu":
        threads = r["machine"]["torch_threads"]
        where = f"CPU ({threads} thread{'s' if threads > 1 else ''}), {CPU_SIZE_M}M params"
        default = rows_at.loc["lionlib.default"]
        print(f"{where}: lionlib's default path is {default['backend']!r}")
        report.check("Fused kernel", f"{where}: the default path on CPU is the C++ kernel",
                     float(default["backend"] == "cpp"), "==", 1)
        lib = per_round(default, "step_s_all", reps)
        stream = per_round(default, "stream_s_all", reps)
        lp = per_round(rows_at.loc["lion_pytorch.default"], "step_s_all", reps)
        adamw = per_round(rows_at.loc["torch.AdamW.fused", :], "step_s_all", reps)
        target_finding(where, "default lionlib step reaches 80% of the streaming limit",
                       [s / t - 0.8 for s, t in zip(stream, lib)], "share of the add_ stream - 0.8, per round", n_rounds)
        target_finding(where, "default lionlib step >= 5x faster than lion_pytorch.Lion",
                       [a / b - 5 for a, b in zip(lp, lib)], "speed-up over lion_pytorch - 5, per round", n_rounds)
        print(f"  per round: {', '.join(f'{a / b:.2f}x' for a, b in zip(lp, lib))} over lion_pytorch; "
              f"{', '.join(f'{b / a:.2f}' for a, b in zip(adamw, lib))} of fused AdamW's time "
              "(shape-dependent: a description of this tensor list, not a target)")
    else:
        where = f"GPU, {GPU_SIZE_M}M params"
        tri = per_round(rows_at.loc["lionlib.triton"], "step_s_all", reps)
        stream = per_round(rows_at.loc["lionlib.triton"], "stream_s_all", reps)
        adamw = per_round(rows_at.loc["torch.AdamW.fused"], "step_s_all", reps)
        target_finding(where, "Triton step reaches 85% of the streaming limit",
                       [s / t - 0.85 for s, t in zip(stream, tri)], "share of the add_ stream - 0.85, per round", n_rounds)
        print(f"  per round: {', '.join(f'{t / a:.2f}' for a, t in zip(adamw, tri))} of fused AdamW's time "
              "(shape-dependent: a description of this tensor list, not a target)")
    target_rows[where] = rows_at
print("GPU results:", "present" if any(w.startswith("GPU") for w in target_rows) else "none (no GPU run committed)")

# %%
# NBVAL_IGNORE_OUTPUT
report.findings()

# %%
# NBVAL_IGNORE_OUTPUT
cols = ["backend", "M params", "step (ms)", "fraction of stream", "first_step_s"]
pd.concat({w: t[cols] for w, t in target_rows.items()}, names=["where"]) if target_rows else "no results"

# %% [markdown]
# ## Claims
#
# The checks (the speed targets are findings, in the table above and in the manifest).

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
