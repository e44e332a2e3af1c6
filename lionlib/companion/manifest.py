"""Where a run's results go, what they record about the run, and how they are written without loss.

- `results_dir(scale)`: the committed `paper_figures/` holds the **cpu** scale only; every other scale
  (and every run that is not the driver's cpu run) writes under `build/paper_figures/<scale>/`.
- `run_record(scale, parameters)`: stored in every claims file and, per notebook, in the manifest:
  the scale, the parameters, the lionlib version, the git commit (and whether the tree had local
  changes), and the environment the numbers depend on (torch/numpy versions, threads, BLAS, CPU).
- `write_atomic` / `promote`: a file is replaced in one `os.replace`, never truncated in place; the
  driver runs a notebook into a staging folder and promotes its figures and claims only when it
  succeeded, so a failing or interrupted notebook leaves the committed results as they were.
- `write_manifest`: collects `claims/*.json` into `manifest.json` (with the commit each notebook's
  results were made at, and which were made from a tree with local changes), and refuses a folder
  that holds claims of more than one scale. Checks and findings are each element's `claims`;
  identities (true by construction) and illustrations (shown, not tested) are its `identities` and
  `illustrations` (present where there are some), counted per notebook apart from the checks
  (`identities`, `identities_holding`, `illustrations`), so no page counts them as checks passed.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from lionlib.companion.paths import BUILD, PAPER_FIGURES, REPO

__all__ = ["SCALES", "COMMITTED_SCALE", "results_dir", "environment", "git_commit", "run_record", "write_atomic",
           "promote", "folder_scales", "MixedScales", "write_manifest", "clear_staging", "cpu_model"]

SCALES = ("smoke", "cpu", "paper")  # problem sizes of every notebook: CI, this 2-core CPU, a GPU
COMMITTED_SCALE = "cpu"  # the scale whose results are committed in paper_figures/


def results_dir(scale: str, committed: Path = PAPER_FIGURES, build: Path = BUILD) -> Path:
    """The folder of a scale's figures, claims and manifest: `paper_figures/` for the cpu scale, else
    `build/paper_figures/<scale>/` (git-ignored), so a smoke or paper run never touches committed files."""
    return committed if scale == COMMITTED_SCALE else build / "paper_figures" / scale


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), for recording where numbers were measured."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """What the numbers of a run depend on besides the code: versions, threads, BLAS, CPU, GPU."""
    import numpy
    import torch

    config = torch.__config__.show()
    blas = dict(re.findall(r"\b(BLAS_INFO|LAPACK_INFO)=(\w+)", config))
    mkl = next((line.strip(" -") for line in config.splitlines() if "Math Kernel Library" in line), None)
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "blas": blas.get("BLAS_INFO", "unknown"),
        "lapack": blas.get("LAPACK_INFO", "unknown"),
        "mkl": mkl,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels torch dispatches to
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        # what pins the kernels: the SIMD level torch may use, and the BLAS code path where one is set
        **{k: os.environ.get(k) for k in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OPENBLAS_CORETYPE")},
    }


@functools.lru_cache(maxsize=1)
def git_commit(repo: Path = REPO) -> dict:
    """{"commit": sha or None, "dirty": local changes to the code?}. Results (paper_figures/) and the
    committed notebook outputs do not count as changes: a run rewrites them itself."""
    def git(*args):
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode:
            return {"commit": None, "dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!paper_figures",
                     ":!notebooks/*.ipynb")
        return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def run_record(scale: str, parameters: dict) -> dict:
    """The `run` record of a claims file: how these numbers were made."""
    import lionlib

    return {"scale": scale, "parameters": parameters, "lionlib": lionlib.__version__, **git_commit(),
            "environment": environment()}


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write `path` through a temporary file in its folder and `os.replace`: readers (and an
    interrupted run) see the old file or the new one, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the results private to one user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class MixedScales(ValueError):
    """A results folder would hold claims of more than one scale."""


def folder_scales(out_dir: Path) -> dict[str, str]:
    """notebook -> recorded scale of each claims file in `out_dir/claims/` ("unrecorded" if older)."""
    scales = {}
    for path in sorted((Path(out_dir) / "claims").glob("*.json")):
        record = json.loads(path.read_text())
        scales[record.get("notebook", path.stem)] = record.get("run", {}).get("scale", "unrecorded")
    return scales


def promote(staging: Path, target: Path, notebook: str) -> list[Path]:
    """Move a successful run's figures and `claims/<notebook>.json` from `staging` into `target`,
    each file atomically, the claims file last. Refuses (MixedScales) when `target` holds claims
    of another scale, before touching anything."""
    claims = Path(staging) / "claims" / f"{notebook}.json"
    if claims.exists():
        scale = json.loads(claims.read_text()).get("run", {}).get("scale", "unrecorded")
        others = {nb: s for nb, s in folder_scales(target).items() if nb != notebook and s not in (scale, "unrecorded")}
        if others:
            raise MixedScales(f"{target} holds {sorted(set(others.values()))}-scale results ({', '.join(sorted(others))}); "
                              f"{notebook} ran at the {scale} scale and was not copied there (its results are in "
                              f"{staging}). Use --out-dir to write elsewhere.")
    written = []
    for src in sorted(Path(staging).glob("*.png")):
        written.append(write_atomic(Path(target) / src.name, src.read_bytes()))
    if claims.exists():
        written.append(write_atomic(Path(target) / "claims" / claims.name, claims.read_bytes()))
    return written


_CHECK_KEYS = ("claim", "value", "op", "threshold", "stable")
_SLACK_KEYS = ("tol", "why", "across")  # claims files written before tolerances existed lack them
_FINDING_KEYS = ("claim", "verdict", "mean", "ci_low", "ci_high", "n", "effects", "protocol")
_PROTOCOL_KEYS = ("primary", "mde", "sesoi", "margin", "p", "p_holm", "verdict_holm", "reason")  # protocol_analysis findings


def write_manifest(out_dir: Path, entries) -> Path:
    """Collect `<out_dir>/claims/*.json` into `<out_dir>/manifest.json` (sorted, no timestamps).

    `entries`: the registry (objects with `.name` and `.elements`), so that elements without results
    still appear. Raises MixedScales when the claims files record more than one scale.
    """
    out_dir = Path(out_dir)
    scales = folder_scales(out_dir)
    recorded = sorted(set(scales.values()) - {"unrecorded"})
    if len(recorded) > 1:
        detail = "; ".join(f"{s}: {', '.join(nb for nb, x in scales.items() if x == s)}" for s in recorded)
        raise MixedScales(f"{out_dir}/claims holds results of several scales ({detail}); a manifest covers one "
                          f"scale: re-run the odd ones at one scale or move them out")
    elements: dict[str, dict] = {}

    def element(name):
        return elements.setdefault(name, {"notebooks": [], "figures": [], "claims": []})

    for e in entries:
        for name in e.elements:
            element(name)["notebooks"].append(e.name)
    notebooks = {}
    for path in sorted((out_dir / "claims").glob("*.json")):
        record = json.loads(path.read_text())
        nb = record["notebook"]
        claims = record["claims"]
        checks = [c for c in claims if c.get("kind", "check") != "finding"]
        identities, shown = record.get("identities", []), record.get("illustrations", [])
        notebooks[nb] = {"claims": len(checks), "passed": sum(bool(c["verdict"]) for c in checks),
                         "findings": len(claims) - len(checks), "scale": scales[nb]}
        if identities:  # keys only where there are some, so older readers and manifests are unchanged
            notebooks[nb] |= {"identities": len(identities), "identities_holding": sum(bool(c["verdict"]) for c in identities)}
        if shown:
            notebooks[nb]["illustrations"] = len(shown)
        if "run" in record:
            notebooks[nb]["run"] = record["run"]
        for name, files in record["figures"].items():
            el = element(name)
            el["figures"] += [f for f in files if f not in el["figures"]]
            el["notebooks"] += [nb] if nb not in el["notebooks"] else []
        for c in claims:
            el = element(c["element"])
            kind = c.get("kind", "check")
            if kind == "finding":  # the verdict is already a word; keep the numbers and the protocol
                el["claims"].append({k: c[k] for k in _FINDING_KEYS} | {k: c[k] for k in _PROTOCOL_KEYS if k in c}
                                    | {"notebook": nb, "kind": kind})
            else:
                el["claims"].append({k: c[k] for k in _CHECK_KEYS} | {k: c[k] for k in _SLACK_KEYS if k in c}
                                    | {"notebook": nb, "kind": kind, "verdict": "PASS" if c["verdict"] else "FAIL"})
            el["notebooks"] += [nb] if nb not in el["notebooks"] else []
        for c in identities:
            element(c["element"]).setdefault("identities", []).append({k: c[k] for k in _CHECK_KEYS} | {
                "notebook": nb, "kind": "identity", "verdict": "HOLDS" if c["verdict"] else "BROKEN"})
        for c in shown:
            element(c["element"]).setdefault("illustrations", []).append({"claim": c["claim"], "value": c["value"],
                                                           "stable": c["stable"], "notebook": nb,
                                                           "kind": "illustration"})
    for el in elements.values():
        el["notebooks"] = sorted(set(el["notebooks"]))
        el["figures"] = sorted(el["figures"])
    commits: dict[str, list[str]] = {}  # the commit each notebook's results were made at: what they trace to
    for nb, info in notebooks.items():
        commits.setdefault(info.get("run", {}).get("commit") or "unrecorded", []).append(nb)
    manifest = {"scale": recorded[0] if recorded else "unrecorded", "elements": elements, "notebooks": notebooks,
                "commits": commits, "dirty": sorted(nb for nb, info in notebooks.items() if info.get("run", {}).get("dirty"))}
    return write_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def clear_staging(staging: Path) -> Path:
    """An empty staging folder for one notebook's run (inside build/, so never committed)."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging
