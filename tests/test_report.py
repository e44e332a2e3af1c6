"""lionlib.companion.report: deterministic figures, claim verdicts, the checked summary text and claims JSON."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lionlib.companion import paths
from lionlib.companion.report import Protocol, Report, setup_plotting
from lionlib.experiments.common import resolve_device


def _figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(10), np.arange(10) ** 2, label="x^2")
    ax.set_title("deterministic")
    ax.legend()
    return fig


def test_savefig_is_byte_deterministic_png_without_software_tag(tmp_path):
    setup_plotting()
    r1, r2 = Report("nb", out_dir=tmp_path / "a", scale="cpu"), Report("nb", out_dir=tmp_path / "b", scale="cpu")
    fig = _figure()
    p1 = r1.savefig(fig, "curve", element="Figure 1")
    p2 = r2.savefig(fig, "curve", element="Figure 1")
    plt.close(fig)
    assert p1 == tmp_path / "a" / "curve.png"
    data = p1.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data == p2.read_bytes()
    assert b"Software" not in data and b"matplotlib version" not in data
    assert b"lionlib companion nb, scale cpu" in data  # which notebook and scale made the figure
    assert r1.figures == {"Figure 1": ["curve.png"]}


def test_savefig_rejects_extensions_and_records_each_file_once(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    fig = _figure()
    with pytest.raises(ValueError):
        r.savefig(fig, "curve.pdf", element="Figure 1")
    r.savefig(fig, "curve", element="Figure 1")
    r.savefig(fig, "curve", element="Figure 1")  # a re-run cell
    r.savefig(fig, "other", element="Table 2")
    plt.close(fig)
    assert r.figures == {"Figure 1": ["curve.png"], "Table 2": ["other.png"]}


@pytest.mark.parametrize("op,value,threshold,verdict", [
    ("<=", 1.0, 1.0, True), ("<", 1.0, 1.0, False), (">=", 0.5, 1.0, False), (">", 2, 1, True),
    ("==", 3, 3.0, True), ("<=", float("nan"), 1.0, False), (">=", float("nan"), 1.0, False),
])
def test_check_verdicts(tmp_path, op, value, threshold, verdict):
    assert Report("nb", out_dir=tmp_path).check("Figure 1", "c", value, op, threshold) is verdict


def test_check_accepts_tensors_and_numpy_and_rejects_unknown_op(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    assert r.check("Figure 1", "tensor", torch.tensor(0.5, dtype=torch.float64), "<=", np.float32(1))
    with pytest.raises(ValueError):
        r.check("Figure 1", "bad", 1.0, "=<", 1.0)


def test_summary_text_and_claims_json(tmp_path, capsys):
    r = Report("01_demo", out_dir=tmp_path)
    r.check("Figure 1", "limit is the clipped optimum", 1.23456e-9, "<=", 1e-6)
    r.check("Figure 1", "tiny negative rounds to 0", -1e-12, "<=", 0.5, fmt=".2f")
    r.check("Table 2", "training loss below", 2.71828, "<", 1.0, stable=False)
    r.check("Figure 1", "limit is the clipped optimum", 2e-9, "<=", 1e-6)  # re-run replaces
    fig = _figure()
    r.savefig(fig, "curve", element="Figure 1")
    plt.close(fig)
    r.summary()
    assert capsys.readouterr().out.splitlines() == [
        "PASS  Figure 1: limit is the clipped optimum  [2e-09 <= 1e-06]",
        "PASS  Figure 1: tiny negative rounds to 0  [0.00 <= 0.50]",
        "FAIL  Table 2: training loss below  [<varies> < 1]",
        "2/3 claims pass",
    ]
    text = (tmp_path / "claims" / "01_demo.json").read_text()
    record = json.loads(text)
    assert record["notebook"] == "01_demo"
    assert record["figures"] == {"Figure 1": ["curve.png"]}
    assert [c["verdict"] for c in record["claims"]] == [True, True, False]
    row = dict(record["claims"][2])
    assert row.pop("across")["rtol"] > 0  # the cross-CPU promise, with its reason
    assert row == {"element": "Table 2", "claim": "training loss below", "value": 2.71828, "op": "<",
                   "threshold": 1.0, "verdict": False, "stable": False, "kind": "check", "tol": 0.0, "why": "",
                   "scaled": False}
    r.summary()  # written again: byte-identical (no timestamps)
    assert (tmp_path / "claims" / "01_demo.json").read_text() == text


def test_claims_json_is_strict_json_for_nan(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    r.check("Figure 1", "nan", float("nan"), "<=", float("inf"))
    r.summary()
    text = (tmp_path / "claims" / "nb.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    claim = json.loads(text)["claims"][0]
    assert claim["value"] is None and claim["threshold"] is None and claim["verdict"] is False


def test_table_lists_every_claim_with_full_precision(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    r.check("Figure 1", "a", 0.123456789, "<=", 1)
    r.check("Table 2", "b", 7.0, ">", 1, stable=False)
    df = r.table()
    assert list(df.columns) == ["element", "claim", "kind", "value", "op", "threshold", "tol", "verdict", "stable"]
    assert df["value"].tolist() == [0.123456789, 7.0] and df["stable"].tolist() == [True, False]
    assert len(Report("empty", out_dir=tmp_path).table()) == 0


def test_default_out_dir_and_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("LIONLIB_OUT_DIR", raising=False)
    monkeypatch.delenv("LIONLIB_SCALE", raising=False)
    # never the committed paper_figures/: only the driver's cpu run writes there (issue 12 item 2)
    assert Report("nb").out_dir == paths.BUILD / "paper_figures" / "cpu"
    assert Report("nb", scale="smoke").out_dir == paths.BUILD / "paper_figures" / "smoke"
    monkeypatch.setenv("LIONLIB_SCALE", "paper")
    assert Report("nb").scale == "paper" and Report("nb").out_dir == paths.BUILD / "paper_figures" / "paper"
    monkeypatch.setenv("LIONLIB_OUT_DIR", "build/nbval")  # relative: from the repo root, not the cwd
    assert Report("nb").out_dir == paths.REPO / "build" / "nbval"
    monkeypatch.setenv("LIONLIB_OUT_DIR", str(tmp_path))
    assert Report("nb").out_dir == tmp_path
    assert Report("nb", out_dir=tmp_path / "x").out_dir == tmp_path / "x"
    assert (paths.REPO / "lionlib" / "companion" / "paths.py").is_file()
    assert paths.NOTEBOOKS == paths.REPO / "notebooks" and paths.BUILD == paths.REPO / "build"


def test_data_dir_env_override(tmp_path, monkeypatch):
    """LIONLIB_DATA_DIR is read at each call, not at import."""
    from lionlib.experiments.common import REPO, data_dir

    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    monkeypatch.delenv("LIONLIB_DATA_DIR")
    assert data_dir() == REPO / "data"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type in {"cuda", "mps", "cpu"}
    assert (auto.type == "cuda") == torch.cuda.is_available()


# ----------------------------------------------------------------------------------------------
# Findings: protocol, interval, verdict


def test_t_interval_matches_scipy():
    from scipy import stats as sps

    from lionlib.companion.stats import t_interval

    xs = [0.3, -0.1, 0.5, 0.2, 0.4]
    ci = t_interval(xs)
    lo, hi = sps.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 5, scale=sps.sem(xs))
    assert ci.n == 5 and ci.mean == pytest.approx(0.26) and (ci.low, ci.high) == pytest.approx((lo, hi), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


@pytest.mark.parametrize("effects,verdict", [
    ([1.0, 1.1, 0.9, 1.2, 1.05], "reproduced"),          # interval above 0
    ([-1.0, -1.1, -0.9, -1.2, -1.05], "not reproduced"),  # interval excludes the hypothesis' direction
    ([1.0, -1.0, 0.5, -0.5, 0.1], "inconclusive at this scale"),
    ([1.0, 1.1], "inconclusive at this scale"),            # too few seeds to decide, however clear
])
def test_finding_verdicts(tmp_path, effects, verdict):
    from lionlib.companion.report import Protocol

    r = Report("nb", out_dir=tmp_path)
    proto = Protocol("A beats B", "acc(A) - acc(B)", seeds=range(len(effects)))
    assert r.finding("Section 5 (CIFAR-10)", "A beats B", effects, protocol=proto) == verdict


def test_findings_are_recorded_apart_and_never_fail(tmp_path, capsys):
    from lionlib.companion.report import Protocol

    r = Report("nb", out_dir=tmp_path)
    r.check("Figure 1", "bound", 0.5, "<=", 1)
    r.check("Section 5 (CIFAR-10)", "loss decreased", 1.0, ">", 0, sanity=True)
    proto = Protocol("A beats B", "acc(A) - acc(B)", seeds=range(5), choices="grid 3x2")
    r.finding("Section 5 (CIFAR-10)", "A beats B", [-1, -2, -1, -2, -1.5], protocol=proto)
    with pytest.raises(ValueError, match="5 effects for the protocol's 3 seeds"):
        r.finding("Section 5 (CIFAR-10)", "x", [1, 2, 3, 4, 5], protocol=Protocol("h", "m", seeds=range(3)))
    r.summary()
    out = capsys.readouterr().out
    assert "NOT REPRODUCED" not in out  # the checked summary text never holds a finding's verdict
    assert "(sanity check)" in out and "2/2 claims pass" in out and "1 findings recorded" in out
    record = json.loads((tmp_path / "claims" / "nb.json").read_text())
    kinds = [c["kind"] for c in record["claims"]]
    assert kinds == ["check", "sanity", "finding"]
    f = record["claims"][2]
    assert f["verdict"] == "not reproduced" and f["n"] == 5 and f["protocol"]["choices"] == "grid 3x2"
    assert f["ci_high"] < 0 and f["effects"] == [-1, -2, -1, -2, -1.5]
    assert r.findings()["verdict"].tolist() == ["not reproduced"]


def test_claims_file_records_the_run(tmp_path):
    r = Report("nb", out_dir=tmp_path, scale="smoke", parameters={"SEED": 3, "C": (1.0, 2.0)})
    r.check("Figure 1", "c", 1, "<=", 2)
    r.summary()
    run = json.loads((tmp_path / "claims" / "nb.json").read_text())["run"]
    assert run["scale"] == "smoke" and run["parameters"] == {"SEED": 3, "C": [1.0, 2.0]}
    assert run["lionlib"] == __import__("lionlib").__version__ and "commit" in run and "dirty" in run
    env = run["environment"]
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads()
    assert {"blas", "lapack", "cpu", "cpu_capability", "OMP_NUM_THREADS", "numpy", "python"} <= set(env)


def test_files_are_written_atomically(tmp_path, monkeypatch):
    """A crash while writing (here: the disk fills up) leaves the old file whole, and no temporary behind."""
    from lionlib.companion import manifest

    r = Report("nb", out_dir=tmp_path, scale="cpu", parameters={})
    r.check("Figure 1", "c", 1, "<=", 2)
    r.summary()
    path = tmp_path / "claims" / "nb.json"
    old = path.read_bytes()

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest.os, "replace", full)
    r.check("Figure 1", "c", 3, "<=", 2)
    with pytest.raises(OSError):
        r.summary()
    assert path.read_bytes() == old and sorted(p.name for p in path.parent.iterdir()) == ["nb.json"]
    assert path.stat().st_mode & 0o644 == 0o644  # readable by all, as a plain write would leave it


# ----------------------------------------------------------------------------------------------
# The index (notebooks/00_index): its checks fail on a manifest broken in each way


def _manifest(tmp_path, scale="cpu", findings_n=5, check_value=1.0, protocol=True):
    from lionlib.companion.manifest import write_manifest
    from lionlib.companion.report import Protocol

    out = tmp_path / scale
    r = Report("01_box_constraint", out_dir=out, scale=scale, parameters={})
    r.check("Figure 1", "bound", check_value, "<=", 1.5)
    r.finding("Section 5 (CIFAR-10)", "Lion beats AdamW", [0.1 * (i + 1) for i in range(findings_n)],
              protocol=Protocol("Lion beats AdamW" if protocol else "", "acc diff", seeds=range(findings_n)))
    r.summary()
    return json.loads(write_manifest(out, []).read_text())


def _index_problems(manifest, stems=("00_index", "01_box_constraint")):
    from lionlib.companion import index
    from lionlib.companion.reproduce import REGISTRY, registry_entry

    return {k: v for k, v in index.index_checks(manifest, REGISTRY, list(stems), registry_entry,
                                                readers=["00_index"]).items() if v}


def test_index_checks_pass_on_a_sound_manifest_and_fail_on_each_defect(tmp_path):
    good = _manifest(tmp_path)
    assert _index_problems(good) == {}
    assert list(_index_problems(_manifest(tmp_path, check_value=2.0))) == ["failing checks in the manifest"]
    assert list(_index_problems(_manifest(tmp_path, findings_n=3))) == ["findings at the cpu scale with fewer than 5 seeds"]
    assert _index_problems(_manifest(tmp_path, scale="smoke", findings_n=2)) == {}  # smoke runs use 2 seeds
    assert list(_index_problems(_manifest(tmp_path, protocol=False))) == [
        "findings without a complete protocol (hypothesis, metric, seeds)"]
    assert _index_problems(good, stems=("00_index", "01_box_constraint", "99_new")) == {
        "notebooks in notebooks/ missing from the registry": ["99_new"]}
    assert _index_problems(good, stems=("00_index", "01_box_constraint", "02_continuous_lyapunov")) == {
        "registered notebooks in notebooks/ without claims in the manifest": ["02_continuous_lyapunov"]}
    assert _index_problems(good, stems=("00_index",)) == {
        "claims from notebooks that no longer exist": ["01_box_constraint"]}
    mixed = json.loads(json.dumps(good))
    mixed["notebooks"]["01_box_constraint"]["scale"] = "smoke"  # e.g. an old manifest edited by hand
    assert list(_index_problems(mixed)) == ["notebooks whose claims record another scale than the manifest's"]


def test_index_map_is_complete_and_marks_what_is_not_covered(tmp_path):
    from lionlib.companion import index
    from lionlib.companion.reproduce import REGISTRY, registry_entry

    rows = index.map_rows(_manifest(tmp_path), REGISTRY, ["01_box_constraint"], registry_entry)
    by = {r["element"]: r for r in rows}
    for element in ("Figure 1", "Figure 2", "Figure 3", "Figure 4", "Table 2", "Theorem 3.1", "Theorem 4.1",
                    "Theorem B.9", "Eq. (12)", "Stochastic gradients", "Mirror descent", "Muon note",
                    "Section 5 (CIFAR-10)", "Section 5 (GPT-2)", "Distributed Lion"):
        assert element in by, element
    assert by["Figure 1"]["notebooks"] == ["01_box_constraint"] and by["Figure 1"]["checks"] == "PASS 1/1"
    assert by["Theorem 3.1"]["covered"] is False and by["Theorem 3.1"]["checks"] == "-"
    assert by["Section 5 (CIFAR-10)"]["findings"] == "1 reproduced"
    f = index.finding_rows(_manifest(tmp_path))[0]
    assert f["n"] == 5 and f["ci_low"] > 0 and f["verdict"] == "reproduced" and f["hypothesis"] == "Lion beats AdamW"
    assert index.run_rows(_manifest(tmp_path))[0]["scale"] == "cpu"


def test_report_refuses_an_unknown_scale(tmp_path):
    with pytest.raises(ValueError, match="SCALE must be one of smoke, cpu, paper, got 'tiny'"):
        Report("nb", out_dir=tmp_path, scale="tiny")


def test_check_parameters_judges_only_the_names_papermill_injected(tmp_path, monkeypatch):
    from lionlib.companion import report

    (tmp_path / "nbx.py").write_text('# %% tags=["parameters"]\nDELTA: float = 0.3\nSCALE: str = "cpu"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "_user_namespace", lambda: {"In": ["", '# Parameters\nSCALE = "smoke"\n'], "Delta": 1})
    report.check_parameters("nbx", "smoke")  # an imported `Delta` is not a misspelt parameter
    monkeypatch.setattr(report, "_user_namespace", lambda: {"In": ["", '# Parameters\ndelta = 0.1\n']})
    with pytest.raises(ValueError, match="'delta' is not a parameter of nbx; did you mean DELTA?"):
        report.check_parameters("nbx", "smoke")


def test_tolerance_is_named_and_decides_on_the_lenient_side(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    assert not r.check("Figure 1", "ratio", 1 + 1e-12, "<=", 1.0)
    assert r.check("Figure 1", "ratio", 1 + 1e-12, "<=", 1.0, tol=1e-10, why="float64 rounding of 3000 steps")
    assert not r.check("Figure 1", "ratio", 1 + 1e-9, "<=", 1.0, tol=1e-10, why="float64 rounding of 3000 steps")
    assert r.check("Figure 1", "count", -1e-13, ">=", 0.0, tol=1e-12, why="rounding")
    assert r.check("Figure 1", "eq", 3 + 1e-13, "==", 3.0, tol=1e-12, why="rounding")
    with pytest.raises(ValueError, match="reason"):
        r.check("Figure 1", "unexplained", 1.0, "<=", 1.0, tol=1e-9)
    with pytest.raises(ValueError, match="did you mean 'Figure 1'"):
        r.check("Figure1", "typo", 1.0, "<=", 1.0)


def test_identities_and_illustrations_are_recorded_apart_and_never_counted(tmp_path, capsys):
    r = Report("nb", out_dir=tmp_path)
    r.check("Figure 1", "a check", 0.5, "<=", 1.0)
    assert r.identity("Theorem 4.1", "telescoped sum", 1e-17, "<=", 0.0, tol=1e-12, why="rounding")
    assert not r.identity("Theorem 4.1", "broken identity", 1.0, "<=", 0.0)
    r.illustration("Theorem 4.1 (rate)", "fitted slope", -0.48)
    r.summary()
    out = capsys.readouterr().out
    assert "1/1 claims pass" in out and "BROKEN  Theorem 4.1: broken identity" in out
    assert "SHOWN  Theorem 4.1 (rate): fitted slope  [<varies>]" in out
    record = json.loads((tmp_path / "claims" / "nb.json").read_text())
    assert [c["kind"] for c in record["claims"]] == ["check"]
    assert [c["claim"] for c in record["identities"]] == ["telescoped sum", "broken identity"]
    assert record["illustrations"][0]["value"] == -0.48
    assert r.value("fitted slope") == -0.48


def test_sentence_renders_a_finding(tmp_path):
    r = Report("nb", out_dir=tmp_path)
    r.finding("Section 5 (CIFAR-10)", "A beats B", [1.0, 1.2, 0.9, 1.1, 1.0], protocol=Protocol("A beats B", "pp", range(5)))
    text = r.sentence("A beats B")
    assert text.startswith("**reproduced**: A beats B (mean effect 1.04") and "5 seeds" in text
    with pytest.raises(KeyError):
        r.sentence("C beats D")


def test_verify_compares_exactly_on_the_same_cpu_and_within_each_claims_tolerance_across():
    from lionlib.companion.verify import compare_claims, same_cpu

    def record(value, cpu="X", cap="AVX2", verdict=True):
        return {"run": {"environment": {"cpu": cpu, "cpu_capability": cap}},
                "claims": [{"element": "Figure 1", "claim": "c", "kind": "check", "value": value, "verdict": verdict,
                            "across": {"rtol": 1e-3, "atol": 0.0, "why": "chaotic"}}],
                "identities": [], "illustrations": [{"element": "Figure 1", "claim": "slope", "kind": "illustration",
                                                     "value": value, "across": {"rtol": 1e-3, "atol": 0.0}}]}

    a, b = record(1.0), record(1.0 + 1e-4, cap="DEFAULT")
    assert same_cpu(a, record(2.0)) and not same_cpu(a, b)
    assert compare_claims(a, b, across_cpus=False)  # the same bits are promised on the same CPU
    assert compare_claims(a, b, across_cpus=True) == []
    assert compare_claims(a, record(1.01), across_cpus=True)  # beyond the claim's own tolerance
    assert any("verdict" in d for d in compare_claims(a, record(1.0, verdict=False), across_cpus=True))
