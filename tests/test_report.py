"""lionlib.companion.report: deterministic figures, claim verdicts, the checked summary text and claims JSON."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from lionlib.companion import paths
from lionlib.companion.report import Report, setup_plotting
from lionlib.experiments.common import resolve_device


def _figure():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(np.arange(10), np.arange(10) ** 2, label="x^2")
    ax.set_title("deterministic")
    ax.legend()
    return fig


def test_savefig_is_byte_deterministic_png_without_software_tag(tmp_path):
    setup_plotting()
    r1, r2 = Report("nb", out_dir=tmp_path / "a"), Report("nb", out_dir=tmp_path / "b")
    fig = _figure()
    p1 = r1.savefig(fig, "curve", element="Figure 1")
    p2 = r2.savefig(fig, "curve", element="Figure 1")
    plt.close(fig)
    assert p1 == tmp_path / "a" / "curve.png"
    data = p1.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data == p2.read_bytes()
    assert b"Software" not in data and b"matplotlib version" not in data
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
    assert record["claims"][2] == {"element": "Table 2", "claim": "training loss below", "value": 2.71828,
                                   "op": "<", "threshold": 1.0, "verdict": False, "stable": False, "kind": "check"}
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
    assert list(df.columns) == ["element", "claim", "kind", "value", "op", "threshold", "verdict", "stable"]
    assert df["value"].tolist() == [0.123456789, 7.0] and df["stable"].tolist() == [True, False]
    assert len(Report("empty", out_dir=tmp_path).table()) == 0


def test_default_out_dir_and_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("LIONLIB_OUT_DIR", raising=False)
    assert Report("nb").out_dir == paths.PAPER_FIGURES
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
    assert r.finding("Section 5", "A beats B", effects, protocol=proto) == verdict


def test_findings_are_recorded_apart_and_never_fail(tmp_path, capsys):
    from lionlib.companion.report import Protocol

    r = Report("nb", out_dir=tmp_path)
    r.check("Figure 1", "bound", 0.5, "<=", 1)
    r.check("Section 5", "loss decreased", 1.0, ">", 0, sanity=True)
    proto = Protocol("A beats B", "acc(A) - acc(B)", seeds=range(5), choices="grid 3x2")
    r.finding("Section 5", "A beats B", [-1, -2, -1, -2, -1.5], protocol=proto)
    with pytest.raises(ValueError, match="5 effects for the protocol's 3 seeds"):
        r.finding("Section 5", "x", [1, 2, 3, 4, 5], protocol=Protocol("h", "m", seeds=range(3)))
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
