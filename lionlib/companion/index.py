"""What `notebooks/00_index` shows and checks, as plain functions of a manifest (so tests can break them).

The index is the map of the paper: each element (`PAPER_MAP`), the notebooks that cover it (or "not
yet covered" while its notebook is not written), the checks and findings they recorded, and how each
notebook's results were made (scale, threads, BLAS, CPU, commit). Its own checks, each of which fails
on a manifest that is broken in that way (tests/test_report.py):

- every notebook in `notebooks/` is in the registry, and every registered notebook that exists has
  claims in the manifest;
- the manifest holds one scale: no notebook's claims record another;
- every check in the manifest passes;
- every finding states a complete protocol, and at the cpu scale has at least 5 seeds;
- no claims come from a notebook that no longer exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from lionlib.companion.stats import MIN_SEEDS

__all__ = ["MapEntry", "PAPER_MAP", "FINDING_COLUMNS", "map_rows", "check_rows", "finding_rows", "run_rows", "index_checks"]


@dataclass(frozen=True)
class MapEntry:
    element: str
    about: str
    aliases: tuple[str, ...] = ()  # element names (case-insensitive substrings) the notebooks may use

    def matches(self, name: str) -> bool:
        return any(a.lower() in name.lower() for a in (self.element, *self.aliases))


PAPER_MAP = (  # in reading order (PAPER.md sections 4-7, 10), then the engineering notebooks
    MapEntry("Figure 1", "Lion on a 2-D toy: it solves min f s.t. ‖x‖∞ ≤ 1/λ; phase 1 entry, phase 2 descent"),
    MapEntry("Figure 2", "the paper's second figure (content not retrieved; PAPER.md 7.2)"),
    MapEntry("Figure 3", "the paper's third figure (content not retrieved; PAPER.md 7.2)"),
    MapEntry("Theorem 3.1", "continuous time: H(x, m) with dH/dt = −Δ ≤ 0 for smooth K; convergence to KKT points"),
    MapEntry("Theorem 4.1", "discrete time (implicit scheme, β2 ≥ β1): the one-step change of H_d and its bound"),
    MapEntry("Theorem B.9", "discrete phase 1: dist(λx_t, dom K*) shrinks by (1 − ελ) per step"),
    MapEntry("Eq. (12)", "the decomposition of the Lion-K update that reviewer 3 compares with Lion-K",
             ("Equation (12)", "Eq (12)", "decomposition")),
    MapEntry("Stochastic gradients", "the extension to stochastic gradients (later arXiv versions)",
             ("stochastic",)),
    MapEntry("Section 3.1", "special cases of Lion-K: Polyak, Nesterov, Signum, SGD + weight decay, Frank-Wolfe"),
    MapEntry("Mirror descent", "Lion-K read as (Hamiltonian) mirror descent on f + K*(λx)/λ", ("mirror",)),
    MapEntry("Table 2", "the Lion-K family: K, ∇K, K*, and the constraint or regulariser each one implies"),
    MapEntry("Figure 4", "Lion-K with each K of Table 2 on the toy: convergence into its own feasible set"),
    MapEntry("Muon note", "Muon = Lion-K with the nuclear norm: σ_max ≤ 1/λ, exact SVD vs Newton-Schulz", ("Muon",)),
    MapEntry("Section 5 (CIFAR-10)", "networks on CIFAR-10: Lion vs AdamW, Lion-ℓp, the λ trade-off, conv vs ViT",
             ("CIFAR",)),
    MapEntry("Section 5 (GPT-2)", "a small GPT: Lion vs AdamW, Lion-ℓp, the λ trade-off", ("GPT",)),
    MapEntry("Distributed Lion", "Lion-K under data parallelism and FSDP: the same steps as one process",
             ("distributed", "FSDP")),
    MapEntry("Fused kernel", "not a paper element: one fused Lion-K step against the memory-bandwidth limit"),
)


def _claims(manifest: dict):
    for name, entry in sorted(manifest.get("elements", {}).items()):
        for c in entry.get("claims", []):
            yield name, c


def map_rows(manifest: dict, registry: list, stems: list[str], registry_entry) -> list[dict]:
    """One row per map entry: the existing notebooks covering it (or "not yet covered"), the verdicts
    of its checks, the verdicts of its findings, and its figures. Element names that no map entry
    matches come last, as their own rows."""
    def notebooks_of(match):
        by_registry = {registry_entry(s).name: s for s in stems}
        nbs = {by_registry[e.name] for e in registry if e.name in by_registry and any(match(x) for x in e.elements)}
        for name, entry in manifest.get("elements", {}).items():
            if match(name):
                nbs |= {nb for nb in entry.get("notebooks", []) if nb in stems}
        return sorted(nbs)

    def row(element, about, match):
        claims = [c for name, c in _claims(manifest) if match(name)]
        checks = [c for c in claims if c.get("kind", "check") != "finding"]
        findings = [c["verdict"] for c in claims if c.get("kind") == "finding"]
        passed = sum(c["verdict"] == "PASS" for c in checks)
        figures = sorted({f for name, e in manifest.get("elements", {}).items() if match(name) for f in e.get("figures", [])})
        nbs = notebooks_of(match)
        return {"element": element, "about": about, "notebooks": nbs,
                "checks": (f"{'PASS' if passed == len(checks) else 'FAIL'} {passed}/{len(checks)}" if checks
                           else "not run" if nbs else "-"),
                "findings": ", ".join(f"{findings.count(v)} {v}" for v in sorted(set(findings))) or "-",
                "figures": figures, "covered": bool(nbs)}

    rows = [row(m.element, m.about, m.matches) for m in PAPER_MAP]
    extra = sorted(n for n in manifest.get("elements", {}) if n != "Companion map"
                   and not any(m.matches(n) for m in PAPER_MAP))
    rows += [row(n, "(see its notebook)", lambda x, n=n: x == n) for n in extra]
    return rows


def check_rows(manifest: dict) -> list[dict]:
    """Every check (and sanity check) of the manifest, one row each."""
    return [{"element": name, "notebook": c["notebook"], "claim": c["claim"],
             "kind": c.get("kind", "check"), "value": c.get("value"), "op": c.get("op"),
             "threshold": c.get("threshold"), "verdict": c["verdict"]}
            for name, c in _claims(manifest) if c.get("kind", "check") != "finding"]


FINDING_COLUMNS = ["element", "notebook", "claim", "effect", "ci_low", "ci_high", "n", "verdict", "hypothesis",
                   "metric", "design", "seeds", "source", "choices"]


def finding_rows(manifest: dict) -> list[dict]:
    """Every finding: effect, 95 % interval, n, verdict, and the protocol it was measured under."""
    rows = []
    for name, c in _claims(manifest):
        if c.get("kind") != "finding":
            continue
        p = c.get("protocol") or {}
        rows.append({"element": name, "notebook": c["notebook"], "claim": c["claim"], "effect": c.get("mean"),
                     "ci_low": c.get("ci_low"), "ci_high": c.get("ci_high"), "n": c.get("n"), "verdict": c["verdict"],
                     "hypothesis": p.get("hypothesis"), "metric": p.get("metric"), "design": p.get("design"),
                     "seeds": p.get("seeds"), "source": p.get("source"), "choices": p.get("choices")})
    return rows


def run_rows(manifest: dict) -> list[dict]:
    """How each notebook's results were made, from the run record of its claims file."""
    rows = []
    for nb, info in sorted(manifest.get("notebooks", {}).items()):
        run = info.get("run") or {}
        env = run.get("environment") or {}
        commit = run.get("commit")
        rows.append({"notebook": nb, "scale": info.get("scale", "unrecorded"),
                     "threads": env.get("torch_threads"), "torch": env.get("torch"), "blas": env.get("blas"),
                     "simd": env.get("cpu_capability"), "cpu": env.get("cpu"),
                     "commit": (commit[:10] + ("+local changes" if run.get("dirty") else "")) if commit else None})
    return rows


def index_checks(manifest: dict, registry: list, stems: list[str], registry_entry, readers=()) -> dict[str, list[str]]:
    """claim -> the offending items (a check passes when its list is empty)."""
    registered = {e.name for e in registry}
    scale = manifest.get("scale", "unrecorded")
    notebooks = manifest.get("notebooks", {})
    incomplete = [f"{r['notebook']}: {r['claim']}" for r in finding_rows(manifest)
                  if not (r["hypothesis"] and r["metric"] and r["seeds"])]
    few = [f"{r['notebook']}: {r['claim']} (n={r['n']})" for r in finding_rows(manifest)
           if scale == "cpu" and (r["n"] or 0) < MIN_SEEDS]
    return {
        "notebooks in notebooks/ missing from the registry":
            [s for s in stems if registry_entry(s).name not in registered],
        "registered notebooks in notebooks/ without claims in the manifest":
            [s for s in stems if registry_entry(s).name in registered and s not in notebooks and s not in readers],
        "notebooks whose claims record another scale than the manifest's":
            [nb for nb, info in notebooks.items() if info.get("scale", "unrecorded") not in (scale, "unrecorded")],
        "failing checks in the manifest":
            [f"{r['notebook']}: {r['claim']}" for r in check_rows(manifest) if r["verdict"] != "PASS"
             and r["notebook"] not in readers],
        "findings without a complete protocol (hypothesis, metric, seeds)": incomplete,
        f"findings at the cpu scale with fewer than {MIN_SEEDS} seeds": few,
        "claims from notebooks that no longer exist":
            sorted(nb for nb in notebooks if nb not in stems and nb not in readers),
    }
