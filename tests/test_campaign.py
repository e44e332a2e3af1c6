"""The protocol runner end to end at the tiny scale: plan -> train -> stamp -> store, and analyse."""

import json
import os
from pathlib import Path

import pytest

from lionlib.companion.campaign import parse_until, report_protocols, resolve, run_campaign, status
from lionlib.companion.protocol_analysis import analyse
from lionlib.companion.report import Report
from lionlib.experiments.common import REPO
from lionlib.experiments.store import RunStore

DATA = str(Path(os.environ.get("LIONLIB_DATA_DIR") or REPO.parent / "shared" / "data"))  # the offline tiny Shakespeare


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("LIONLIB_RUNS_DIR", str(tmp_path / "runs"))
    return RunStore(tmp_path / "runs")


def test_campaign_trains_stamps_and_never_retrains(store, tmp_path):
    (p,) = resolve("lion_vs_adamw_gpt", "tiny")
    _, pending = status([p], [])
    first = len(pending[p.name])
    assert first == 2 * 3 + 2 * 5  # 3 grid points per tuned arm, then every arm on 5 evaluation seeds (lr still None)
    part = run_campaign([p], "tiny", max_runs=4, store=store, data_dir=DATA, show_progress=False)
    assert len(part) == 4 and all(r["protocols"] == {p.name: p.hash} for r in part)
    files = list(store.root.glob("gpt/*.json"))
    assert len(files) == 4 and all(json.loads(f.read_text())["protocols"][p.name] == p.hash for f in files)
    recorded, pending = status([p], run_campaign([p], "tiny", train=False, store=store))
    assert len(recorded[p.name]) == 4 and pending[p.name]
    with pytest.raises(ValueError, match="runs missing"):  # never a finding from partial data
        analyse([p], part)
    rep = Report("08_gpt", out_dir=tmp_path / "out", scale="smoke", parameters={})
    report_protocols(rep, [p], part, "Section 5 (GPT-2)")
    assert not rep.found and [c.verdict for c in rep.claims.values()] == [False]
    assert next(iter(rep.claims.values())).claim.endswith(f"all protocol runs recorded (4 of {4 + len(pending[p.name])})")
    done = run_campaign([p], "tiny", store=store, data_dir=DATA, show_progress=False)
    recorded, pending = status([p], done)
    assert pending[p.name] == [] and len(recorded[p.name]) == len(done) >= 16
    stamps = {f.name: f.stat().st_mtime_ns for f in store.root.glob("gpt/*.json")}
    again = run_campaign([p], "tiny", store=store, data_dir=DATA, show_progress=False)  # nothing left: nothing trained or rewritten
    assert {r["spec_hash"] for r in again} == {r["spec_hash"] for r in done}
    assert stamps == {f.name: f.stat().st_mtime_ns for f in store.root.glob("gpt/*.json")}
    out = analyse([p], again)
    assert [f["name"] for f in out["findings"]] == ["non_inferior"] and out["findings"][0]["n"] == 5
    rep = Report("08_gpt", out_dir=tmp_path / "out", scale="smoke", parameters={})
    res = report_protocols(rep, [p], again, "Section 5 (GPT-2)")
    (f,) = rep.found.values()
    assert f.primary and f.verdict == f.verdict_holm == res["analysis"]["findings"][0]["verdict_holm"]
    assert f.mde == out["findings"][0]["mde"] and f.sesoi == 0.02 and f.n == 5
    words = " ".join(c.claim for c in rep.claims.values())
    assert "all protocol runs recorded" in words and "plateau" in words and "interior" in words


def test_until_and_bad_names():
    assert parse_until(None) is None and parse_until(12.5) == 12.5
    assert parse_until("23:59") > 0
    with pytest.raises(ValueError, match="HH:MM"):
        parse_until("noon")
    with pytest.raises(ValueError, match="choose from"):
        resolve("lambda_tradeoff_transformer", "cpu")
