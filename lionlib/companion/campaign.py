"""The protocol runner: train what registered protocols still need, through the run store, stamped.

    python -m lionlib.companion.campaign --protocol lambda_tradeoff_gpt --scale cpu [--max-runs N] [--until HH:MM]

`run_campaign(protocols, scale)` loops, per protocol: `plan(protocol, records)` (tuning first; a
grid grows at an edge only once its points are run) -> complete the next partial spec from the
scale (`lionlib.experiments.specs`) -> `RunStore.run` (a stored record is read back, never
retrained unless `refresh`) -> stamp it with the protocol's hash (`protocol.stamp`: the record's
`protocols` beside its spec) -> write it. It stops when every plan is empty, after `max_runs`
trained runs, or before a run that would end after `until` at the mean duration of this
campaign's runs so far. Every record it returns is stamped, so `analyse` admits it.

`status(protocols, records)` says per protocol which runs are recorded and which are pending (the
current plan, and while tuning is unfinished the evaluation runs still to come, their lr not yet
known), so a notebook can say "k of n recorded" without training anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from lionlib.companion.protocol import Protocol, check_registered, stamp
from lionlib.companion.protocol_analysis import admitted, analyse
from lionlib.companion.report import Finding
from lionlib.companion.report import Protocol as ReportProtocol
from lionlib.companion.protocol_library import PROTOCOLS
from lionlib.companion.protocol_records import as_dicts, eval_records, matches, plan, tuned_lrs
from lionlib.experiments.record import RunRecord
from lionlib.experiments.specs import cifar_spec, distributed_spec, gpt_spec, spec_hash
from lionlib.experiments.store import RunStore

__all__ = ["BUILDERS", "resolve", "complete", "load_records", "status", "run_campaign", "parse_until", "ProtocolFinding",
           "report_protocols", "curves", "tuning_frame", "main"]

BUILDERS = {"cifar": cifar_spec, "gpt": gpt_spec, "distributed": distributed_spec}


def resolve(names: Iterable[str] | str, scale: str) -> list[Protocol]:
    """The library's protocols `<name>_<scale>` (a full name is accepted too), each checked against its
    committed registration."""
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for n in names:
        key = n if n in PROTOCOLS else f"{n}_{scale}"
        if key not in PROTOCOLS:
            known = sorted({k.rsplit("_", 1)[0] for k in PROTOCOLS})
            raise ValueError(f"no protocol {key!r}: choose from {', '.join(known)} with a scale of cpu, paper or tiny")
        check_registered(PROTOCOLS[key])
        out.append(PROTOCOLS[key])
    return out


def complete(partial: dict, precision: str | None = None):
    """The full run spec of a planned partial spec: the scale's sizes plus the partial's keys."""
    kw = {k: v for k, v in partial.items() if k not in ("task", "scale")}
    if precision is not None and "precision" not in kw:
        kw["precision"] = precision
    return BUILDERS[partial["task"]](partial["scale"], **kw)


def load_records(tasks: Iterable[str], scale: str, store: RunStore | None = None) -> list[dict]:
    """Every stored record of `tasks` at `scale`, as JSON dicts (stamps included)."""
    store = store or RunStore()
    return [r.to_json() for t in dict.fromkeys(tasks) for r in store.records(t, scale)]


def _pending(protocol: Protocol, recs: list[dict]) -> list[dict]:
    todo = plan(protocol, recs)
    if todo and todo[0]["role"] == "tune":  # the evaluation runs to come, at lrs tuning has not chosen yet
        todo += [{**a.partial, "lr": None, "seed": s, "role": "eval"} for a in protocol.arms for s in protocol.eval_seeds]
    return todo


def status(protocols: Iterable[Protocol] | Protocol, records) -> tuple[dict, dict]:
    """(recorded, pending): per protocol name, its stamped records that match one of its arms, and the
    partial specs of the runs still to make (lr None: an evaluation run waiting for its arm's tuning).
    The total grows when a tuning grid extends at an edge."""
    protocols = [protocols] if isinstance(protocols, Protocol) else list(protocols)
    records = as_dicts(records)
    recorded, pending = {}, {}
    for p in protocols:
        recs = admitted(p, records)
        recorded[p.name] = [r for r in recs if any(matches(r, a.partial) for a in p.arms)]
        pending[p.name] = _pending(p, recs)
    return recorded, pending


def parse_until(until) -> float | None:
    """A deadline as a Unix time: None, a number (Unix time), a datetime, or "HH:MM" (the next time the
    local clock shows it)."""
    if until is None or isinstance(until, (int, float)):
        return until
    if isinstance(until, dt.datetime):
        return until.timestamp()
    try:
        hh, mm = (int(x) for x in str(until).split(":"))
        now = dt.datetime.now()
        at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    except ValueError:
        raise ValueError(f"until {until!r}: give HH:MM (24-hour clock), a datetime or a Unix time") from None
    return (at if at > now else at + dt.timedelta(days=1)).timestamp()


def run_campaign(protocols: Iterable[Protocol] | Protocol, scale: str | None = None, *, max_runs: int | None = None,
                 until=None, train: bool = True, refresh: bool = False, store: RunStore | None = None,
                 data_dir: str | None = None, device: str = "cpu", precision: str | None = None,
                 show_progress: bool = True) -> list[dict]:
    """Train what `protocols` still need (see the module docstring) and return every stamped record of
    them, as JSON dicts. `scale`: where the store reads (default: the protocols' own scale).
    `train=False` trains and writes nothing. `refresh`: each needed run is trained again once.
    `precision`: for specs whose partial spec does not fix it (None: the scale's fp32)."""
    from lionlib.experiments.progress import progress

    protocols = [protocols] if isinstance(protocols, Protocol) else list(protocols)
    for p in protocols:
        check_registered(p)
    store = store or RunStore()
    scales = {scale} if scale else {dict(a.spec).get("scale") for p in protocols for a in p.arms}
    records = [] if refresh else [r for s in scales for r in load_records([p.task for p in protocols], s, store)]
    deadline, seconds, fresh = parse_until(until), [], set()  # fresh: the spec hashes this campaign trained
    if train:
        _, pending = status(protocols, records)
        bar = progress(total=sum(len(v) for v in pending.values()), desc="campaign runs", disable=not show_progress)
        try:
            for p in protocols:
                while todo := plan(p, admitted(p, records)):
                    for partial in todo:
                        if max_runs is not None and len(fresh) >= max_runs:
                            return _stamped(protocols, records)
                        if deadline is not None and seconds and time.time() + sum(seconds) / len(seconds) > deadline:
                            return _stamped(protocols, records)
                        if deadline is not None and time.time() > deadline:
                            return _stamped(protocols, records)
                        spec = complete(partial, precision)
                        bar.set_description(f"{p.name}: {partial['role']} {partial.get('optimizer')} "
                                            f"lambda {partial.get('weight_decay')} lr {partial['lr']:.3g} seed {partial['seed']}")
                        again = refresh and spec_hash(spec) not in fresh
                        new = again or store.get(spec) is None
                        t0 = time.time()
                        rec: RunRecord = store.run([spec], refresh=again, data_dir=data_dir, show_progress=show_progress,
                                                   device=device)[0]
                        if new:
                            fresh.add(rec.spec_hash)
                            seconds.append(time.time() - t0)
                        rec.protocols = stamp({"protocols": rec.protocols}, p)["protocols"]
                        store.put(rec)
                        records = [r for r in records if r["spec_hash"] != rec.spec_hash] + [rec.to_json()]
                        bar.update()
        finally:
            bar.close()
    return _stamped(protocols, records)


def _stamped(protocols: list[Protocol], records: list[dict]) -> list[dict]:
    keep = {}
    for p in protocols:
        for r in admitted(p, records):
            keep[r["spec_hash"]] = r
    return list(keep.values())


@dataclass
class ProtocolFinding(Finding):
    """A protocol finding in a notebook's claims file: the report's finding fields (its `verdict` the
    Holm-adjusted one for a primary finding) plus what the decision rests on."""

    primary: bool = False
    verdict_raw: str = ""
    verdict_holm: str | None = None
    p: float = math.nan
    p_holm: float | None = None
    mde: float = math.nan
    sesoi: float = math.nan
    units: str = ""
    reason: str = ""
    protocol_name: str = ""
    protocol_hash: str = ""


def report_protocols(report, protocols: list[Protocol], records, element: str) -> dict:
    """Everything a companion notebook reports from its protocols, into `report`: per protocol a check
    "all protocol runs recorded (k of n)"; for the complete protocols, in one `analyse` call (Holm over
    their primary findings), every regime check and every finding. An incomplete protocol gives no
    finding, and while one is incomplete the Holm family is too: the primary findings' adjusted
    verdict is then "pending". Returns {"analysis", "recorded", "pending", "complete"}."""
    records = as_dicts(records)
    recorded, pending = status(protocols, records)
    for p in protocols:
        k, n = len(recorded[p.name]), len(recorded[p.name]) + len(pending[p.name])
        report.check(element, f"{p.name}: all protocol runs recorded ({k} of {n})", k, ">=", n, stable=False)
    done = [p for p in protocols if not pending[p.name]]
    out = analyse(done, records) if done else {"findings": [], "checks": [], "tuning": {}}
    whole = len(done) == len(protocols)
    for c in out["checks"]:
        report.check(element, f"{c['protocol']}: {c['check']} ({c['arm']})", c["value"], c["op"], c["threshold"], stable=False)
    for f in out["findings"]:
        if f["primary"] and not whole:
            f["verdict_holm"] = f"pending ({len(done)} of {len(protocols)} protocols of the primary family complete)"
        hyp = ReportProtocol(f["hypothesis"], f"{f['label']} ({f['units']})", tuple(f["seeds"]), source=f["source"],
                             choices=next(p.notes for p in done if p.name == f["protocol"]),
                             decision_rule=next(p.rule for p in done if p.name == f["protocol"]))
        report.found[(element, f"{f['protocol']}: {f['name']}")] = ProtocolFinding(
            element, f"{f['protocol']}: {f['hypothesis']}", list(f["effects"]), f["effect"], f["ci_low"], f["ci_high"], f["n"],
            f["verdict_holm"] if f["primary"] and whole else f["verdict"], hyp, primary=f["primary"], verdict_raw=f["verdict"],
            verdict_holm=f["verdict_holm"], p=f["p"], p_holm=f["p_holm"], mde=f["mde"], sesoi=f["sesoi"], units=f["units"],
            reason=f["reason"], protocol_name=f["protocol"], protocol_hash=f["protocol_hash"])
    return {"analysis": out, "recorded": recorded, "pending": pending, "complete": [p.name for p in done]}


def curves(protocols: list[Protocol], records, section: str, keys: tuple[str, ...]):
    """The evaluation runs' curves `record[section][key]` as a long DataFrame (protocol, arm, seed, lr,
    step, key, value), for figures; arms whose tuning is unfinished are left out."""
    import pandas as pd

    rows = []
    for p in protocols:
        recs = admitted(p, as_dicts(records))
        lrs = tuned_lrs(p, recs)
        for (arm, seed), r in eval_records(p, recs, lrs).items():
            for key in keys:
                for step, v in zip(r[section]["step"], r[section][key]):
                    rows.append(dict(protocol=p.name, arm=arm, seed=seed, lr=r["spec"]["lr"], step=step, key=key,
                                     value=math.nan if v is None else v))
    return pd.DataFrame(rows, columns=["protocol", "arm", "seed", "lr", "step", "key", "value"])


def tuning_frame(protocols: list[Protocol], records):
    """Every tuned arm's grid so far as a DataFrame (protocol, arm, lr, score, chosen): the mean tuning
    score per lr point run, and whether it is the chosen lr (only once the grid is complete)."""
    import pandas as pd

    rows = []
    for p in protocols:
        lrs = tuned_lrs(p, admitted(p, as_dicts(records)))
        for a in p.arms:
            if a.tune:
                t = lrs[a.name]
                rows += [dict(protocol=p.name, arm=a.name, lr=a.lr * p.tuning.factor ** k, score=v, chosen=k == t["k"])
                         for k, v in sorted(t["scores"].items())]
    return pd.DataFrame(rows, columns=["protocol", "arm", "lr", "score", "chosen"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lionlib.companion.campaign", description=__doc__.split("\n\n")[0])
    ap.add_argument("--protocol", action="append", required=True,
                    help="a protocol of lionlib.companion.protocol_library without its scale (repeat for several)")
    ap.add_argument("--scale", default="cpu", help="tiny | cpu | paper (default cpu)")
    ap.add_argument("--max-runs", type=int, default=None, help="train at most this many runs, then stop")
    ap.add_argument("--until", default=None, help="HH:MM: start no run that would end after this time (local clock)")
    ap.add_argument("--refresh", action="store_true", help="train every needed run again (once)")
    ap.add_argument("--status", action="store_true", help="print what is recorded and pending; train nothing")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    protocols = resolve(a.protocol, a.scale)
    t0 = time.time()
    records = run_campaign(protocols, a.scale, max_runs=a.max_runs, until=a.until, train=not a.status, refresh=a.refresh,
                           data_dir=a.data_dir, device=a.device)
    recorded, pending = status(protocols, records)
    for p in protocols:
        k, n = len(recorded[p.name]), len(recorded[p.name]) + len(pending[p.name])
        print(f"{p.name}: {k} of {n} runs recorded, {len(pending[p.name])} pending")
    print(f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
