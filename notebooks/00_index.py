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
# the paper, the notebook that reproduces it, and the verdicts of the claims that notebook checks, as
# recorded in `paper_figures/manifest.json` by the last run of the driver.
#
# How to re-run (from the repository root):
#
# ```
# python -m lionlib.companion.reproduce --list                  # notebooks, paper elements, parameters
# python -m lionlib.companion.reproduce                         # every notebook, cpu scale, into build/notebooks/
# python -m lionlib.companion.reproduce --only 06_muon -p SEED=1
# python -m lionlib.companion.reproduce --update-notebooks      # refresh the committed outputs (and this index)
# ```
#
# Each notebook has a `parameters` cell: `SCALE` (`smoke` for CI, `cpu` for these committed outputs,
# `paper` for a GPU), `SEED`, `DEVICE`, `OUT_DIR`, plus the settings the paper does not give, chosen by
# the notebook and stated in it. The paper's full text was not available when this companion was built
# (see `PAPER.md` §0 in the project notes): theorem statements were rebuilt from the update rules and
# checked numerically, and figure settings are our choices. Element numbers follow the ICLR submission.

# %% tags=["parameters"]
import os

SCALE = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper (this notebook only reads files)
SEED = 0
DEVICE = "auto"
OUT_DIR = None  # None -> the repo's paper_figures/ (where the manifest is read from)

# %%
import json

from IPython.display import Markdown, display

from lionlib.companion.paths import NOTEBOOKS
from lionlib.companion.report import Report
from lionlib.companion.reproduce import REGISTRY, registry_entry

report = Report("00_index", out_dir=OUT_DIR)

# What each element of the paper is about (PAPER.md sections 4-7, 10), in reading order, then the
# engineering notebooks.
ELEMENTS = {
    "Figure 1": "Lion on a 2-D toy: it solves min f s.t. ‖x‖∞ ≤ 1/λ; phase 1 entry, phase 2 descent",
    "Theorem 3.1": "continuous time: H(x, m) with dH/dt = −Δ ≤ 0 for smooth K; convergence to KKT points",
    "Theorem 4.1": "discrete time (implicit scheme, β2 ≥ β1): the one-step change of H_d and its bound",
    "Theorem B.9": "discrete phase 1: dist(λx_t, dom K*) shrinks by (1 − ελ) per step",
    "Section 3.1": "special cases of Lion-K: Polyak, Nesterov, Signum, SGD + weight decay, Frank-Wolfe",
    "Table 2": "the Lion-K family: K, ∇K, K*, and the constraint or regulariser each one implies",
    "Figure 4": "Lion-K with each K of Table 2 on the toy: convergence into its own feasible set",
    "Muon note": "Muon = Lion-K with the nuclear norm: σ_max ≤ 1/λ, exact SVD vs Newton-Schulz",
    "Section 5 (CIFAR-10)": "networks on CIFAR-10: Lion vs AdamW, Lion-ℓp for p ∈ [1, 2], the λ sweep, ‖θ‖∞ ≤ 1/λ per tensor",
    "Section 5 (GPT-2)": "a small GPT: Lion vs AdamW, Lion-ℓp, the λ sweep and the per-tensor constraint",
    "Fused kernel": "not a paper element: the speed of one fused Lion-K step against the memory-bandwidth limit",
}

manifest_path = report.out_dir / "manifest.json"
if manifest_path.exists():
    manifest = json.loads(manifest_path.read_text())
    print(f"verdicts from {manifest_path.parent.name}/{manifest_path.name}")
else:
    manifest = {"elements": {}, "notebooks": {}}
    print("no manifest yet: run `python -m lionlib.companion.reproduce` to fill in the verdicts")

# %% [markdown]
# ## The map
#
# One row per paper element. *notebooks* links each notebook that reproduces it (in italics when it
# is registered but not written yet); *claims* counts the checked claims that pass; *figures* links the
# saved figures. Elements that notebooks report but that are not in the list above come last.

# %%
registered = {name: [e.name for e in REGISTRY if name in e.elements] for name in ELEMENTS}
files = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))


def notebook_link(name):
    match = [stem for stem in files if registry_entry(stem).name == name]
    return f"[{match[0]}]({match[0]}.ipynb)" if match else f"*{name}*"


def verdict(claims):
    if not claims:
        return "not run"
    passed = sum(c["verdict"] == "PASS" for c in claims)
    return f"{'PASS' if passed == len(claims) else 'FAIL'} {passed}/{len(claims)}"


rows = ["| element | what it shows | notebooks | claims | figures |", "|---|---|---|---|---|"]
extra = sorted(set(manifest["elements"]) - set(ELEMENTS) - {"Companion map"})  # this notebook's own checks are below
for name in list(ELEMENTS) + extra:
    entry = manifest["elements"].get(name, {})
    notebooks = sorted(set(entry.get("notebooks", [])) | set(registered.get(name, [])))
    figures = ", ".join(f"[{f}](../paper_figures/{f})" for f in entry.get("figures", []))
    rows.append(f"| {name} | {ELEMENTS.get(name, '(see its notebook)')} | "
                f"{', '.join(notebook_link(n) for n in notebooks) or '-'} | {verdict(entry.get('claims', []))} | "
                f"{figures or '-'} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Every claim, as last run
#
# The claims each notebook checks, with the number that backs it (machine-dependent numbers such as
# float64 round-off or training losses included here; the notebooks' own checked summaries omit them).

# %%
# NBVAL_IGNORE_OUTPUT
lines = []
for name in list(ELEMENTS) + extra:
    for c in manifest["elements"].get(name, {}).get("claims", []):
        value = "n/a" if c["value"] is None else f"{c['value']:.4g}"
        threshold = "n/a" if c["threshold"] is None else f"{c['threshold']:.4g}"
        lines.append(f"{c['verdict']}  {name} [{c['notebook']}]: {c['claim']}  ({value} {c['op']} {threshold})")
print("\n".join(lines) or "no claims recorded yet")

# %% [markdown]
# ## The map is complete
#
# These checks are about the map itself, not about the runs: every element above is assigned to a
# registered notebook, and every notebook in `notebooks/` is registered (so it has a place in this map).

# %%
unassigned = [name for name, nbs in registered.items() if not nbs]
unregistered = [stem for stem in files if registry_entry(stem) not in REGISTRY]
print(f"elements without a notebook: {unassigned or 'none'}; notebooks outside the registry: {unregistered or 'none'}")
report.check("Companion map", "paper elements of the map without a registered notebook", len(unassigned), "==", 0)
report.check("Companion map", "notebooks in notebooks/ missing from the registry", len(unregistered), "==", 0)

# %%
# NBVAL_IGNORE_OUTPUT
report.table()

# %%
# NBVAL_CHECK_OUTPUT
report.summary()
