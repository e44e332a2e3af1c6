"""The cross-CPU promise of the float64 notebooks (`lionlib.companion.verify`), tested without a second
machine: a re-run at a lower SIMD level (`ATEN_CPU_CAPABILITY=default`, torch's scalar kernels, the
nearest this machine comes to another CPU model) must give the same verdicts, and each number must stay
within its claim's recorded `across` tolerance. 06_muon is the notebook whose numbers moved most between
an Intel AVX512 and an AMD AVX2 machine (its chattering exact-SVD run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lionlib.companion.verify import compare_claims, same_cpu

ROOT = Path(__file__).resolve().parents[1]


def _run(nb: str, out: Path, **env) -> dict:
    cmd = [sys.executable, "-m", "lionlib.companion.reproduce", "--only", nb, "--scale", "smoke", "--out-dir", str(out),
           "--threads", "1"]
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return json.loads((out / "claims" / f"{nb}.json").read_text())


@pytest.mark.xdist_group("cross_cpu")
@pytest.mark.parametrize("nb", ["06_muon"])
def test_a_lower_simd_level_keeps_the_verdicts_and_each_claims_tolerance(tmp_path, nb):
    native = _run(nb, tmp_path / "native")
    scalar = _run(nb, tmp_path / "scalar", ATEN_CPU_CAPABILITY="default")
    assert not same_cpu(native, scalar), "the run record must tell the two SIMD levels apart"
    assert compare_claims(native, scalar, across_cpus=True) == []
    verdicts = {(c["element"], c["claim"]): c["verdict"] for c in native["claims"]}
    assert verdicts == {(c["element"], c["claim"]): c["verdict"] for c in scalar["claims"]}
