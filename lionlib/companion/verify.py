"""Reproducible means the same verdicts everywhere and the same numbers where the CPU is the same.

`python -m lionlib.companion.reproduce --verify --only NAME` (`make verify ONLY=NAME`) runs the
notebook at the scale its committed claims file records, with the same thread count, into `build/`
only, and compares claim by claim with `paper_figures/claims/NAME.json`. The contract:

- **verdicts**: every check's PASS/FAIL, every identity's HOLDS/BROKEN and every finding's verdict
  agree on every machine;
- **numbers, same CPU model** (the committed run's `environment.cpu` and `cpu_capability` equal
  this machine's): exactly, bit for bit, for the float64 notebooks (01-06, 11-13, and 09, which reads
  stored benchmark results). A difference means the committed claims are stale (the code changed
  after they were made) or a random source is not seeded;
- **numbers, another CPU model or SIMD level**: within each claim's own `across` tolerance, recorded
  in the claims file with its reason (default `FLOAT64`: float64 rounding, whose order depends on the
  SIMD kernels torch, LAPACK and BLAS pick for the CPU, widened to the check's own `tol` for values at
  rounding level). A chaotic quantity (e.g. an iterate that chatters at O(lr)) states a wider one.
- **within `TOLERANCES[name]`** for the notebooks that train networks (07 CIFAR-10, 08 GPT), stated
  there with the reason they cannot be promised bit for bit, on any machine.

Test the cross-CPU promise on one machine by lowering the SIMD level:
`ATEN_CPU_CAPABILITY=default python -m lionlib.companion.reproduce --verify --only NAME` records
`cpu_capability` DEFAULT and is compared with the `across` tolerances.

Why a training run can differ in its last bits, even seeded: float32 reductions whose order depends
on the thread count (fixed per notebook by the driver, recorded in the claims file) and on the SIMD
kernels torch and oneDNN pick for the CPU (`environment.cpu_capability`: AVX2 and AVX512 machines
differ); oneDNN convolution algorithms chosen by heuristics; JPEG decoding by the installed Pillow /
libjpeg; and on a GPU, atomics in backward passes (`paper` scale). A last-bit difference early in a
training run grows over hundreds of steps, so equal numbers are promised only to a tolerance, and
only on the same machine (same `environment` record). The comparison prints which environment
fields differ from the committed run, since any of them explains a difference.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Tolerance", "TOLERANCES", "FLOAT64", "same_cpu", "compare_claims", "environment_differences",
           "verify_notebooks"]


@dataclass(frozen=True)
class Tolerance:
    """|new - committed| <= atol + rtol * |committed| for check values and finding effects; verdicts
    of checks must still agree. `why`: why this notebook is not bit-reproducible."""
    rtol: float
    atol: float
    why: str


FLOAT64 = Tolerance(1e-6, 0.0, "float64 rounding: reductions are ordered by the SIMD kernels torch, LAPACK and BLAS "
                               "pick for the CPU, and a run of a few thousand steps amplifies a last-bit difference "
                               "to at most ~1e-10 relative on these contracting toy problems (1e-6: 10^4 above)")

TOLERANCES = {  # registry name -> tolerance; every other notebook is compared exactly
    "cifar10": Tolerance(0.02, 0.5, "float32 training of conv nets and a ViT through oneDNN on JPEG data: "
                                     "reduction order, SIMD kernel choice and image decoding"),
    "gpt": Tolerance(0.02, 0.02, "float32 transformer training: reduction order and SIMD kernel choice"),
}


def _close(a, b, tol: Tolerance | None) -> bool:
    if a is None or b is None:  # NaN/inf were written as null
        return a is b
    if tol is None:
        return a == b
    return math.isclose(a, b, rel_tol=tol.rtol, abs_tol=tol.atol)


def same_cpu(committed: dict, fresh: dict) -> bool:
    """Same CPU model and SIMD level in both run records: the same bits are promised."""
    ea = committed.get("run", {}).get("environment", {})
    eb = fresh.get("run", {}).get("environment", {})
    return all(ea.get(k) is not None and ea.get(k) == eb.get(k) for k in ("cpu", "cpu_capability"))


def _claim_tol(c: dict) -> Tolerance:
    a = c.get("across") or {}
    return Tolerance(a.get("rtol", FLOAT64.rtol), a.get("atol", FLOAT64.atol), a.get("why", FLOAT64.why))


def compare_claims(committed: dict, fresh: dict, tol: Tolerance | None = None, across_cpus: bool = False) -> list[str]:
    """Differences between two claims records (as written by `Report.summary`); [] when they agree.
    `tol`: one tolerance for every number (the trained notebooks); else `across_cpus=True` compares
    each number within its claim's recorded `across` tolerance, and False compares exactly."""
    def index(record):
        rows = record["claims"] + record.get("identities", []) + record.get("illustrations", [])
        return {(c["element"], c["claim"], c.get("kind", "check")): c for c in rows}

    def how(c):
        return tol if tol is not None else (_claim_tol(c) if across_cpus else None)

    old, new = index(committed), index(fresh)
    out = [f"only in the committed claims: {k[0]}: {k[1]}" for k in old if k not in new]
    out += [f"only in the new run: {k[0]}: {k[1]}" for k in new if k not in old]
    for key in old.keys() & new.keys():
        a, b = old[key], new[key]
        name = f"{key[0]}: {key[1]}"
        if key[2] == "finding":
            ea, eb = a["effects"], b["effects"]
            if len(ea) != len(eb) or not all(_close(y, x, how(a)) for x, y in zip(ea, eb)):
                out.append(f"{name}: effects {eb} != committed {ea}")
        elif not _close(b["value"], a["value"], how(a)):
            out.append(f"{name}: value {b['value']!r} != committed {a['value']!r}")
        if key[2] != "illustration" and a["verdict"] != b["verdict"]:
            out.append(f"{name}: verdict {b['verdict']!r} != committed {a['verdict']!r}")
    return sorted(out)


def environment_differences(committed: dict, fresh: dict) -> list[str]:
    """Fields of the run records (scale, parameters, environment) that differ between the two runs."""
    ra, rb = committed.get("run", {}), fresh.get("run", {})
    out = [f"{k}: {ra.get(k)!r} -> {rb.get(k)!r}" for k in ("scale", "parameters") if ra.get(k) != rb.get(k)]
    ea, eb = ra.get("environment", {}), rb.get("environment", {})
    out += [f"environment.{k}: {ea.get(k)!r} -> {eb.get(k)!r}" for k in sorted(ea.keys() | eb.keys())
            if ea.get(k) != eb.get(k)]
    return out if ra else ["the committed claims record no run (made before the run record existed)"]


def verify_notebooks(paths, args, registry_entry, run_notebook) -> int:
    """The `--verify` command: re-run each notebook into build/verify/ and compare (see the module doc)."""
    failed = 0
    for py in paths:
        committed_path = Path(args.committed_dir) / "claims" / f"{py.stem}.json"
        if not committed_path.exists():
            print(f"SKIP  {py.stem}: no committed claims ({committed_path})")
            continue
        committed = json.loads(committed_path.read_text())
        run = committed.get("run", {})
        scale = run.get("scale", "cpu")
        threads = run.get("environment", {}).get("torch_threads")
        entry = registry_entry(py.stem)
        params = _as_committed(py, scale, run.get("parameters") or {})
        result = run_notebook(py, params, Path(args.build_dir) / "verify", threads=args.threads or threads or entry.threads,
                              promote_results=False, cell_timeout=args.cell_timeout)
        fresh_path = result.staging / "claims" / f"{py.stem}.json"
        if result.error or not fresh_path.exists():
            print(f"FAIL  {py.stem}: the re-run did not finish: {result.error or 'no claims file written'}")
            failed += 1
            continue
        fresh = json.loads(fresh_path.read_text())
        tol = TOLERANCES.get(entry.name)
        across = not same_cpu(committed, fresh)
        diffs = compare_claims(committed, fresh, tol, across_cpus=across)
        how = ("exactly" if tol is None and not across else
               "within each claim's cross-CPU tolerance (another CPU model or SIMD level)" if tol is None else
               f"within rtol {tol.rtol:g}, atol {tol.atol:g} ({tol.why})")
        n = len(committed["claims"])
        print(f"{'FAIL' if diffs else 'ok  '}  {py.stem}: {n} claims compared {how}: {len(diffs)} difference(s); "
              f"re-run {result.seconds:.0f} s at the {scale} scale, {threads or entry.threads} threads")
        for d in diffs:
            print(f"        {d}")
        if diffs:
            failed += 1
            for d in environment_differences(committed, fresh):
                print(f"        run record differs: {d}")
    return 1 if failed else 0


def _as_committed(py, scale: str, committed: dict) -> dict:
    """The parameters to re-run `py` as it was committed: its scale, and every literal bool/number/None
    the committed run set away from the notebook's default (07's TRAIN_MISSING=False: a verify re-run
    must not start a training campaign the committed run did not)."""
    import ast

    declared = _declared(py)
    params = {"SCALE": scale} if "SCALE" in declared else {}
    for name, value in committed.items():
        if name in declared and name != "SCALE" and (value is None or isinstance(value, (bool, int, float))):
            try:
                default = ast.literal_eval(declared[name]["default"])
            except (ValueError, SyntaxError):  # a default computed at run time (an environment variable):
                default = object()  # pass the committed value, so the re-run cannot take another one
            if value != default:
                params[name] = value
    return params


def _declared(py):
    from lionlib.companion.params import notebook_parameters

    return notebook_parameters(py)
