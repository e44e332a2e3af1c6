"""Notebook 07's path from protocols to findings, end to end at the tiny scale on the CPU: the campaign
stand-in plans, trains through the run store and stamps; the records come back with their stamps;
`analyse` turns them into findings; the plan's counts and the figures' frames come from the same records.
The paper scale runs this same code with the paper protocols (on CUDA)."""

import json
import os
from pathlib import Path

import pytest

from lionlib.companion import cifar_companion as cc
from lionlib.companion.campaign import complete, load_records, run_campaign, status
from lionlib.companion.protocol_analysis import analyse, sentence
from lionlib.companion.report import Report
from lionlib.experiments.common import OFFLINE_DATA
from lionlib.experiments.record import Curves, RunRecord
from lionlib.experiments.specs import cifar_spec

DATA = Path(os.environ.get("LIONLIB_DATA_DIR") or OFFLINE_DATA)
needs_data = pytest.mark.skipif(not (DATA / "cifar10-jpeg").is_dir(), reason="offline CIFAR-10 copy missing")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """An empty run store for the module (LIONLIB_RUNS_DIR), the CIFAR copy as the data folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LIONLIB_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        mp.setenv("LIONLIB_DATA_DIR", str(DATA))
        yield


@pytest.fixture(scope="module")
def campaign(store):
    protocols = cc.protocols_for("smoke")
    before = run_campaign(protocols, "tiny", train=False)
    partial = run_campaign(protocols, "tiny", max_runs=3)
    records = run_campaign(protocols, "tiny")
    return protocols, before, partial, records


def test_record_keeps_its_stamps():
    rec = RunRecord.build(cifar_spec("tiny"), Curves(loss=[1.0], lr_lambda=[0.1], evals=[{"step": 1, "val_acc": 0.1}]), {}, 1.0)
    assert "protocols" not in rec.to_json()
    stamped = RunRecord.loads(json.dumps({**rec.to_json(), "protocols": {"p": "0123"}}))
    assert RunRecord.loads(stamped.dumps()).protocols == {"p": "0123"}
    assert stamped.numbers() == rec.numbers()  # a stamp is no part of what a re-run must reproduce


def test_complete_fills_the_scale():
    spec = complete({"task": "cifar", "scale": "tiny", "model": "vit_tiny", "optimizer": "lion", "lr": 2e-3,
                     "weight_decay": 10.0, "seed": 3, "role": "eval"})
    assert (spec.model, spec.lr, spec.weight_decay, spec.seed, spec.steps, spec.precision) == ("vit_tiny", 2e-3, 10.0, 3, 8, "fp32")


def test_plan_counts_from_an_empty_store(store):
    protocols = cc.protocols_for("cpu")
    table = cc.campaign_table(protocols, [])
    assert table.recorded.sum() == 0
    # 10 distinct tuned arms x 3 first points + 13 distinct evaluation arms x 5 seeds (shared runs once)
    assert table.loc["all (distinct runs)"].to_make_at_least == 10 * 3 + 13 * 5
    assert table.loc["all (distinct runs)"].to_make_at_most == 10 * 7 + 13 * 5
    cost = cc.campaign_seconds(protocols, [], {"resnet8": 2.0, "vit": 1.0, "resnet8 muon exact": 3.0, "resnet8 muon ns": 3.0})
    assert (cost["runs_min"], cost["runs_max"]) == (95, 135)
    with pytest.raises(KeyError, match="vit"):
        cc.campaign_seconds(protocols, [], {"resnet8": 1.0})


@needs_data
def test_campaign_trains_within_its_budget_and_stamps(campaign):
    protocols, before, partial, records = campaign
    assert before == [] and len(partial) == 3
    recorded, pending = status(protocols, records)
    assert all(not v for v in pending.values()), pending
    assert cc.campaign_table(protocols, records).loc["all (distinct runs)"].to_make_at_least == 0
    shared = [r for r in records if len(r.get("protocols", {})) >= 3]  # Lion on the ResNet serves three protocols
    assert shared and all(r["spec"]["model"] == "resnet_tiny" and r["spec"]["optimizer"] == "lion" for r in shared)
    assert sorted(r["spec_hash"] for r in load_records(["cifar"], "tiny")) == sorted(r["spec_hash"] for r in records)
    again = run_campaign(protocols, "tiny", max_runs=0)  # nothing left to train: the same records
    assert sorted(json.dumps(r, sort_keys=True) for r in again) == sorted(json.dumps(r, sort_keys=True) for r in records)


@needs_data
def test_records_become_findings_and_frames(campaign, tmp_path):
    protocols, _, _, records = campaign
    out = analyse(protocols, records)
    primary = [f for f in out["findings"] if f["primary"]]
    assert len(primary) == 5 and all(f["n"] == 5 and f["verdict_holm"] is not None for f in primary)
    assert all(sentence(f).startswith(f["hypothesis"]) for f in out["findings"])
    assert {c["protocol"] for c in out["checks"]} == {p.name for p in protocols}
    report = Report("07_cifar10", out_dir=tmp_path, scale="smoke", parameters={})
    for f in out["findings"]:
        report.protocol_finding("x", f)
    report.summary()
    written = [c for c in json.loads((tmp_path / "claims" / "07_cifar10.json").read_text())["claims"] if c["kind"] == "finding"]
    assert len(written) == len(out["findings"]) and all({"primary", "mde", "sesoi", "verdict_holm"} <= set(c) for c in written)
    loss = cc.curves_frame(protocols[0], records)
    assert set(loss.arm) == {a.name for a in protocols[0].arms} and set(loss.seed) == set(protocols[0].eval_seeds)
    acc = cc.accuracy_frame(protocols[1:2], records)
    assert len(acc) == 6 * 5 and acc.test_acc.between(0, 100).all()
    spec = cc.spectrum_frame(protocols[4], records)
    assert set(spec.arm) == {"muon_exact", "muon_ns"} and spec.matrix.nunique() > 1
