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
- no claims come from a notebook that no longer exists;
- every element name the notebooks record is in the closed list `PAPER_MAP` (or `NOT_ELEMENTS`).

`summary` is the one line of what reproduced that leads the index and the book's landing page.
"""

from __future__ import annotations

from dataclasses import dataclass

from lionlib.companion.stats import MIN_SEEDS

__all__ = ["MapEntry", "SECTION_5", "PAPER_MAP", "NOT_ELEMENTS", "KNOWN_NAMES", "KIND_ORDER", "FINDING_COLUMNS",
           "paper_position", "unknown_elements", "map_rows", "kinds", "summary", "VERDICTS", "count_verdicts", "provenance", "effect_unit", "effect_text", "check_rows", "finding_rows",
           "run_rows", "index_checks"]


@dataclass(frozen=True)
class MapEntry:
    """A paper element: its name, what it shows, and the exact element names notebooks record for it.

    `shared`: element names several notebooks record (Section 5's experiments on both the CIFAR-10
    and the GPT notebooks); their claims count here only when they come from notebook `notebook`.
    """
    element: str
    about: str
    names: tuple[str, ...] = ()
    shared: tuple[str, ...] = ()
    notebook: str = ""  # registry name (`cifar10`) of the notebook whose `shared` claims count here

    def matches(self, name: str, notebook: str = "") -> bool:
        return name in (self.element, *self.names) or (
            name in self.shared and (notebook == self.notebook or notebook.split("_", 1)[-1] == self.notebook))


SECTION_5 = ("Lion vs AdamW", "Section 5 (architecture-dependent K)", "Section 5 (lambda trade-off)")
PAPER_MAP = (  # the closed list of paper elements, in the paper's order (PAPER.md sections 4-7, 10), then follow-ups
    MapEntry("Figure 1", "Lion on a 2-D toy: it solves min f s.t. ‖x‖∞ ≤ 1/λ; phase 1 entry, phase 2 descent",
             ("Figure 1 (lambda, decay scheme)",)),
    MapEntry("Figure 2", "the paper's second figure (content not retrieved; PAPER.md 7.2)"),
    MapEntry("Figure 3", "the paper's third figure (content not retrieved; PAPER.md 7.2)"),
    MapEntry("Theorem 3.1", "continuous time: H(x, m) with dH/dt = −Δ ≤ 0 for smooth K; convergence to KKT points"),
    MapEntry("Theorem 4.1", "discrete time (implicit scheme, β2 ≥ β1): the one-step change of H_d and its bound",
             ("Theorem 4.1 (rate)",)),
    MapEntry("Theorem B.9", "discrete phase 1: dist(λx_t, dom K*) shrinks by (1 − ελ) per step"),
    MapEntry("Eq. (12)", "the decomposition of the Lion-K update that reviewer 3 compares with Lion-K"),
    MapEntry("Stochastic gradients", "the extension to stochastic gradients (later arXiv versions)",
             ("Stochastic gradients (arXiv v2+)",)),
    MapEntry("Section 3.1", "special cases of Lion-K: Polyak, Nesterov, Signum, SGD + weight decay, Frank-Wolfe",
             ("Section 3.1 (classical ODEs)", "Gradient enhancement (Section 3.1)")),
    MapEntry("Mirror descent", "Lion-K read as (Hamiltonian) mirror descent on f + K*(λx)/λ",
             ("Section 3.1 (mirror descent)",)),
    MapEntry("Table 2", "the Lion-K family: K, ∇K, K*, and the constraint or regulariser each one implies"),
    MapEntry("Figure 4", "Lion-K with each K of Table 2 on the toy: convergence into its own feasible set"),
    MapEntry("Section 5 (CIFAR-10)", "networks on CIFAR-10: Lion vs AdamW, Lion-ℓp, the λ trade-off, conv vs ViT",
             (), SECTION_5, "cifar10"),
    MapEntry("Section 5 (GPT-2)", "a small GPT: Lion vs AdamW, Lion-ℓp, the λ trade-off", (), SECTION_5, "gpt"),
    MapEntry("Muon note", "Muon = Lion-K with the nuclear norm: σ_max ≤ 1/λ, exact SVD vs Newton-Schulz"),
    MapEntry("Muon follow-up", "Muon on the CIFAR-10 ResNet: phase 1 ends, λ σ_max ≤ 1", ("Muon follow-up (Fig. 4)",)),
    MapEntry("Distributed Lion", "Lion-K under data parallelism and FSDP: the same steps as one process",
             ("Distributed Lion (arXiv 2404.00438)",)),
    MapEntry("Cautious optimizers", "C-Lion / C-Muon: the step masked where it disagrees with the gradient, rescaled; "
             "the box and ball it keeps", ("Cautious optimizers (arXiv 2411.16085)",)),
    MapEntry("Cautious weight decay", "decay only where update and parameter agree: the box and ball it does not keep",
             ("Cautious weight decay (arXiv 2510.12402)",)),
    MapEntry("Fused kernel", "not a paper element: one fused Lion-K step against the memory-bandwidth limit"),
)
NOT_ELEMENTS = ("Companion map", "Sanity")  # recorded names that are no paper element (the index's own, training works)
KNOWN_NAMES = frozenset(n for m in PAPER_MAP for n in (m.element, *m.names, *m.shared)) | set(NOT_ELEMENTS)


def _claims(manifest: dict):
    for name, entry in sorted(manifest.get("elements", {}).items()):
        for c in entry.get("claims", []):
            yield name, c


def paper_position(name: str) -> int:
    """Where a recorded element name comes in the paper (its `PAPER_MAP` entry's index; others last)."""
    return next((i for i, m in enumerate(PAPER_MAP) if name in (m.element, *m.names, *m.shared)), len(PAPER_MAP))


def unknown_elements(manifest: dict, registry=()) -> list[str]:
    """Element names of the manifest or the registry outside the closed list `PAPER_MAP` (a typo fails here)."""
    names = set(manifest.get("elements", {})) | {x for e in registry for x in e.elements}
    return sorted(names - KNOWN_NAMES)


def map_rows(manifest: dict, registry: list, stems: list[str], registry_entry) -> list[dict]:
    """One row per paper element of `PAPER_MAP`, in the paper's order: the existing notebooks covering
    it (none: not yet covered), its checks (passed / recorded), its findings by verdict, and its figures."""
    by_registry = {registry_entry(s).name: s for s in stems}
    elements = manifest.get("elements", {})

    def row(m: MapEntry):
        claims = [c for name, c in _claims(manifest) if m.matches(name, c.get("notebook", ""))]
        nbs = {by_registry[e.name] for e in registry if e.name in by_registry and any(m.matches(x, e.name) for x in e.elements)}
        nbs |= {c["notebook"] for c in claims if c.get("notebook") in stems}
        nbs |= {nb for name, e in elements.items() if name in (m.element, *m.names) for nb in e.get("notebooks", [])
                if nb in stems}
        figures = sorted({f for name, e in elements.items() for f in e.get("figures", []) if name in (m.element, *m.names)
                          or (name in m.shared and any(m.matches(name, nb) for nb in e.get("notebooks", [])))})
        checks = [c for c in claims if c.get("kind", "check") != "finding"]
        findings = [c["verdict"] for c in claims if c.get("kind") == "finding"]
        passed = sum(c["verdict"] == "PASS" for c in checks)
        return {"element": m.element, "about": m.about, "notebooks": sorted(nbs),
                "checks": (f"{'PASS' if passed == len(checks) else 'FAIL'} {passed}/{len(checks)}" if checks
                           else "not run" if nbs and not findings else "-"),
                "findings": count_verdicts(findings) or "-",
                "figures": figures, "covered": bool(nbs)}

    return [row(m) for m in PAPER_MAP]


KIND_ORDER = ("finding", "check", "identity", "sanity", "illustration")  # known kinds first; others after, by name


def kinds(manifest: dict) -> list[str]:
    """The claim kinds the manifest holds, in `KIND_ORDER` (a claim without `kind` is a check)."""
    seen = {c.get("kind", "check") for _, c in _claims(manifest)}
    return [k for k in KIND_ORDER if k in seen] + sorted(seen - set(KIND_ORDER))


def summary(manifest: dict) -> str:
    """One line of what reproduced: findings by verdict, then each other kind's passed / total (the
    index's own checks left out)."""
    claims = [c for name, c in _claims(manifest) if name != "Companion map"]
    findings = [c["verdict"] for c in claims if c.get("kind") == "finding"]
    parts = [f"{len(findings)} findings: {count_verdicts(findings)}"] if findings else []
    for kind in kinds(manifest):
        if kind != "finding":
            of = [c for c in claims if c.get("kind", "check") == kind]
            parts.append(f"{sum(c['verdict'] == 'PASS' for c in of)} of {len(of)} {_plural(kind)} pass")
    return "; ".join(parts) or "no results in the manifest yet"


VERDICTS = ("reproduced", "not reproduced", "inconclusive at this scale")


def count_verdicts(verdicts: list[str]) -> str:
    """"2 reproduced, 1 not reproduced": the finding verdicts counted, in `VERDICTS` order."""
    order = [v for v in VERDICTS if v in verdicts] + sorted(set(verdicts) - set(VERDICTS))
    return ", ".join(f"{verdicts.count(v)} {v}" for v in order)


def provenance(manifest: dict) -> str:
    """Which commits the results were made at, and how many from a tree with local changes."""
    commits = manifest.get("commits")
    if commits is None:
        return "The manifest does not record commits (written before it did): see each notebook's run record."
    made = "; ".join(f"`{c[:10]}` ({len(nbs)} notebooks)" for c, nbs in sorted(commits.items()))
    dirty = manifest.get("dirty") or []
    return f"Results made at commit {made}" + (f"; {len(dirty)} of them from a tree with local changes." if dirty else ".")


def _plural(kind: str) -> str:
    return {"identity": "identities", "sanity": "sanity checks"}.get(kind, kind + "s")


_UNITS = (("percentage points", "pp"), ("nats", "nats"), ("speed-up", "×"), ("log10", "log10"))


def effect_unit(claim: dict) -> str:
    """The unit of a finding's effect: its protocol's `unit`, else the one its metric names, else ""."""
    protocol = claim.get("protocol") or {}
    if protocol.get("unit"):
        return str(protocol["unit"])
    metric = str(protocol.get("metric") or "").lower()
    return next((u for word, u in _UNITS if word in metric), "")


def effect_text(claim: dict) -> str:
    """`mean unit [low, high]`: the effect with its unit and its 95 % interval."""
    def f(x):
        return "?" if x is None else format(x, ".3g")
    unit = effect_unit(claim)
    return f"{f(claim.get('mean'))}{' ' + unit if unit else ''} [{f(claim.get('ci_low'))}, {f(claim.get('ci_high'))}]"


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
        "element names outside the paper map (index.PAPER_MAP; a typo?)": unknown_elements(manifest, registry),
    }
