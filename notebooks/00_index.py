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
# # Lion Secretly Solves Constrained Optimization: the runnable companion
#
# This is the map of the companion to Chen, Liu, Liang and Liu, *"Lion Secretly Solves Constrained
# Optimization: As Lyapunov Predicts"* (ICLR 2024, arXiv 2310.05898): every figure, table and theorem of
# the paper, the notebook that reproduces it (or *not yet covered*), and the **checks** and **findings**
# that notebook recorded in `paper_figures/manifest.json`, with the scale and the machine each ran on.
#
# - A **check** is a property the maths or the code guarantees; it must pass, and `make reproduce` exits
#   non-zero when one fails. *Sanity* checks ("loss decreased") only say that training works.
# - A **finding** is an empirical statement measured under a protocol written before the numbers: the
#   mean effect over seeds, its 95 % t interval, and a verdict (`reproduced`, `not reproduced`,
#   `inconclusive at this scale`). Findings never fail a run.
#
# How to re-run (from the repository root):
#
# ```
# python -m lionlib.companion.reproduce --list                  # notebooks, paper elements, typed parameters
# python -m lionlib.companion.reproduce                         # every notebook, cpu scale -> paper_figures/
# python -m lionlib.companion.reproduce --scale smoke           # quick; results in build/paper_figures/smoke/
# python -m lionlib.companion.reproduce --only 06_muon -p SEED 1    # -p: results in build/paper_figures/cpu/
# python -m lionlib.companion.reproduce --verify --only 02_continuous_lyapunov   # same numbers as committed?
# ```
#
# Only the cpu-scale run with the notebooks' own parameters writes the committed `paper_figures/`, and
# only the files of notebooks that ran to their end. The paper's full text was not available when this
# companion was built (see `PAPER.md` §0 in the project notes): theorem statements were rebuilt from the
# update rules and checked numerically, and figure settings are our choices. Element numbers follow the
# ICLR submission.

# %% tags=["parameters"]
import os
from typing import Optional

SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper (this notebook only reads files)
OUT_DIR: Optional[str] = None  # None -> build/paper_figures/<SCALE>/ (the driver's cpu run: paper_figures/)
MANIFEST: Optional[str] = None  # the manifest shown; None -> the committed paper_figures/manifest.json

# %%
import json
from pathlib import Path

from IPython.display import Markdown, display

from lionlib.companion import index
from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES
from lionlib.companion.report import Report
from lionlib.companion.reproduce import REGISTRY, registry_entry

report = Report("00_index", out_dir=OUT_DIR)
manifest_path = Path(MANIFEST) if MANIFEST else PAPER_FIGURES / "manifest.json"
if manifest_path.exists():
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("scale", "unrecorded")  # manifests written before scales were recorded
else:
    manifest = {"scale": "unrecorded", "elements": {}, "notebooks": {}}
stems = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
readers = [s for s in stems if registry_entry(s).reads_manifest]
print(f"{manifest_path.parent.name}/{manifest_path.name}: {len(manifest['notebooks'])} notebooks, scale "
      f"{manifest['scale']}" + ("" if manifest_path.exists() else " (not found: run the driver)"))


def md_table(rows, columns, fmt=None):
    """Rows (dicts) as a Markdown table; `fmt`: column -> function of the value."""
    fmt = fmt or {}
    cell = lambda c, v: (fmt[c](v) if c in fmt and v is not None else "-" if v is None else str(v)).replace("|", "\\|")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, r.get(c)) for c in columns) + " |" for r in rows]
    return Markdown("\n".join(lines))

# %% [markdown]
# ## What reproduced
#
# The verdicts in one line (the index's own checks left out), then every finding: the mean effect over
# seeds with its unit (signed so that the hypothesis predicts > 0), its 95 % t interval, the number of
# seeds, the verdict, what was measured, and the protocol written before the runs.

# %%
# NBVAL_IGNORE_OUTPUT
display(Markdown(f"**{index.summary(manifest)}.**"))
findings = sorted(index.finding_rows(manifest), key=lambda f: index.paper_position(f["element"]))
for f in findings:
    claim = next(c for c in manifest["elements"][f["element"]]["claims"]
                 if c.get("kind") == "finding" and c["claim"] == f["claim"] and c["notebook"] == f["notebook"])
    f["effect [95 % CI]"] = index.effect_text(claim)
    f["protocol"] = (f"{f['hypothesis']}; {f['design']}, seeds {f['seeds']}; source: {f['source']}"
                     + (f"; choices: {f['choices']}" if f["choices"] else ""))
display(md_table(findings, ["verdict", "element", "notebook", "claim", "effect [95 % CI]", "n", "metric", "protocol"]))

# %% [markdown]
# ## The map
#
# One row per element of the paper the companion covers, in the paper's order (the closed list
# `lionlib.companion.index.PAPER_MAP`): the notebooks that reproduce it, its checks (passed /
# recorded), its findings by verdict, and its figures. The elements no notebook covers yet follow.

# %%
# NBVAL_IGNORE_OUTPUT
def link(stem):
    return f"[{stem}]({stem}.ipynb)"


rows = index.map_rows(manifest, REGISTRY, stems, registry_entry)
lines = ["| element | what it shows | notebooks | checks | findings | figures |", "|---|---|---|---|---|---|"]
for r in (r for r in rows if r["covered"]):
    figures = ", ".join(f"[{f}](../paper_figures/{f})" for f in r["figures"]) or "-"
    notebooks = ", ".join(link(n) for n in r["notebooks"])
    lines.append(f"| {r['element']} | {r['about']} | {notebooks} | {r['checks']} | {r['findings']} | {figures} |")
display(Markdown("\n".join(lines)))
uncovered = [r["element"] for r in rows if not r["covered"]]
print(f"not yet covered: {', '.join(uncovered) or 'none'}")

# %% [markdown]
# ## How each notebook's results were made
#
# From the run record of each claims file: the scale, the torch threads, the torch and BLAS builds, the
# SIMD kernels torch used, the CPU, and the commit (with "+local changes" when the code differed from
# it). *unrecorded*: results made before claims files recorded their run; re-run the notebook to fill it.

# %%
# NBVAL_IGNORE_OUTPUT
runs = [r for r in index.run_rows(manifest) if r["notebook"] not in readers]  # the index's own: below
display(md_table(runs, ["notebook", "scale", "threads", "torch", "blas", "simd", "cpu", "commit"]))

# %% [markdown]
# ## Checks, and each other kind of claim
#
# Every claim that is not a finding, one table per kind the manifest holds (checks, identities, sanity
# checks, illustrations, ...), with the number behind it (machine-dependent numbers such as float64
# round-off or training losses included here; the notebooks' own checked summaries omit them).

# %%
# NBVAL_IGNORE_OUTPUT
checks = sorted((r for r in index.check_rows(manifest) if r["notebook"] not in readers),
                key=lambda r: index.paper_position(r["element"]))
number = lambda v: f"{v:.4g}"
for kind in [k for k in index.kinds(manifest) if k != "finding"]:
    of = [r for r in checks if r["kind"] == kind]
    display(Markdown(f"**{kind}**: {sum(r['verdict'] == 'PASS' for r in of)} of {len(of)} pass"))
    display(md_table(of, ["verdict", "element", "notebook", "claim", "value", "op", "threshold"],
                     {"value": number, "threshold": number}))

# %% [markdown]
# ## The index's own checks
#
# About the map and the manifest, not about the paper: every notebook is registered and has results,
# the results are of one scale, every check passes, every finding has a complete protocol (and at the
# cpu scale at least 5 seeds), no results are left from notebooks that no longer exist, and every
# element name the notebooks record is in the paper map's closed list (a typo fails here).

# %%
problems = index.index_checks(manifest, REGISTRY, stems, registry_entry, readers=readers)
for claim, items in problems.items():
    print(f"{claim}: {', '.join(items) or 'none'}")
    report.check("Companion map", claim, len(items), "==", 0)

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
