"""STAND-IN for `lionlib.companion.campaign` (written in parallel on branch nb-gpt), with its interface:
`run_campaign(protocols, scale, *, max_runs=None, until=None, train=True) -> list[record]` and
`status(protocols, records) -> (recorded, pending)`. At the merge the notebooks import the real module
and this file is deleted; nothing else depends on it.

What it does, minimally: for each registered protocol, `protocol_records.plan` lists the runs still to
make (tuning first, then evaluation at the tuned lr); each partial spec is completed from the scale
(`complete_spec`), read from or trained into the run store (`lionlib.experiments.store`), stamped with
the protocol's hash (`protocol.stamp`) and written back; then plan again until the plan is empty (a
grid grows at an edge only once its points are run). A run already in the store (made for another
protocol with the same spec) is stamped, not retrained. Records are JSON dicts.
"""

from __future__ import annotations

import datetime as _dt
import json
import time

from lionlib.companion.protocol import Protocol, check_registered, stamp
from lionlib.companion.protocol_analysis import admitted
from lionlib.companion.protocol_records import matches, plan
from lionlib.experiments.progress import progress
from lionlib.experiments.record import RunRecord
from lionlib.experiments.specs import cifar_spec, default_precision, distributed_spec, gpt_spec
from lionlib.experiments.store import RunStore

__all__ = ["run_campaign", "status", "complete_spec", "load_records", "device_for"]

BUILDERS = {"cifar": cifar_spec, "gpt": gpt_spec, "distributed": distributed_spec}


def device_for(scale: str) -> str:
    """The paper scale trains on CUDA, every other scale on the CPU."""
    return "cuda" if scale == "paper" else "cpu"


def complete_spec(partial: dict, scale: str, device: str = "cpu"):
    """The full run spec of a planned partial spec: the scale's sizes, the partial's keys over them,
    and the precision of `device` (fp32 on the CPU, bf16 autocast on CUDA: `specs.default_precision`)."""
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in partial.items()}
    task, at = d.pop("task"), d.pop("scale")
    if at != scale:
        raise ValueError(f"planned spec of scale {at!r} in a campaign at scale {scale!r}: pass the {at} protocols")
    d.setdefault("precision", default_precision(device))
    return BUILDERS[task](scale, **d)


def load_records(task: str, scale: str) -> list[dict]:
    """Every stored record of `task` in the run store of `scale`, as JSON dicts (stamps included)."""
    return [r.to_json() for r in RunStore().records(task, scale)]


def _deadline(until) -> float | None:
    if until is None or isinstance(until, (int, float)):
        return until
    if isinstance(until, _dt.datetime):
        return until.timestamp()
    raise TypeError(f"until: a datetime or a time.time() value, got {type(until).__name__}")


def run_campaign(protocols, scale: str, *, max_runs: int | None = None, until=None, train: bool = True) -> list[dict]:
    """Every record of the protocols' tasks at `scale` after making the missing runs (see the module
    docstring): at most `max_runs` trainings, none started after `until` (a datetime or time.time()),
    none at all when `train` is False. A protocol left incomplete is made complete by the next call."""
    protocols = [protocols] if isinstance(protocols, Protocol) else list(protocols)
    for p in protocols:
        check_registered(p)
    records = {r["spec_hash"]: r for task in sorted({p.task for p in protocols}) for r in load_records(task, scale)}
    if not train:
        return list(records.values())
    store, device, deadline, trained = RunStore(), device_for(scale), _deadline(until), 0
    bar = progress(total=None, desc=f"campaign ({scale})", unit="run")
    try:
        for p in protocols:
            while todo := plan(p, admitted(p, records.values())):
                for partial in todo:
                    spec = complete_spec(partial, scale, device)
                    stored = store.get(spec) is not None
                    if not stored and ((max_runs is not None and trained >= max_runs)
                                       or (deadline is not None and time.time() >= deadline)):
                        return list(records.values())
                    bar.set_description(f"{p.name}: {partial.get('optimizer')} lr {partial['lr']:.3g} seed {partial['seed']}")
                    rec = store.run([spec], device=device, show_progress=False)[0]
                    trained += not stored
                    stamped = RunRecord.loads(json.dumps(stamp(rec.to_json(), p)))
                    store.put(stamped)
                    records[stamped.spec_hash] = stamped.to_json()
                    bar.update(1)
    finally:
        bar.close()
    return list(records.values())


def status(protocols, records) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """(recorded, pending), each {protocol name: [...]}: the records made under the protocol (stamped
    with its hash) that match one of its arms, and the partial specs of the runs its plan lists now
    (the next round only: a tuning grid's later points and the evaluation runs follow from its results)."""
    protocols = [protocols] if isinstance(protocols, Protocol) else list(protocols)
    records = [r if isinstance(r, dict) else r.to_json() for r in records]
    recorded, pending = {}, {}
    for p in protocols:
        mine = admitted(p, records)
        recorded[p.name] = [r for r in mine if any(matches(r, a.partial) for a in p.arms)]
        pending[p.name] = plan(p, mine)
    return recorded, pending
