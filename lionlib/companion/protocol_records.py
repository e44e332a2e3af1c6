"""What a protocol reads from run records: matching, metrics, regime checks, tuning and the run plan.

Pure functions of the JSON run records that `lionlib.experiments` writes (schema "lionlib.run/1":
`spec`, `train` {step, loss}, `eval` {step, <metric>...}, `monitor` {step, sum_lr_lambda,
max_constraint, ...}, `final`); a monitor value of None (not defined for that optimizer) reads as NaN,
which fails any check. A record matches an arm when its `spec` holds every key of the arm's
partial spec with an equal value (floats compared to 1e-9 relative); a key the record lacks is an
error, never a default. Curves are the record's <= 200 points, each the mean over its window of steps.

Smoothing (`smooth`) is a centred moving mean over 5 % of the points (at least 1); the plateau loss
is the mean training loss over the last 10 % of the steps; "steps to plateau" is the first step from
which the smoothed loss stays within 10 % of that plateau, as a fraction of the run's steps;
"plateau reached" compares the smoothed loss at the start and the end of the last 20 % of the steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from lionlib.companion.protocol import CHECKS, Arm, Check, Metric, Protocol

__all__ = ["PHASE1_SUM", "SMOOTH", "as_dicts", "matches", "curve", "smooth", "metric_value", "tuning_state", "tuned_lrs",
           "eval_records", "run_check", "plan"]

PHASE1_SUM = 5.0  # sum of lr_t * lambda after which phase 1 counts as over: prod(1 - lr lambda) <= e^-5 < 0.7 %
SMOOTH = 0.05  # share of a curve's points in the moving mean


def _same(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def as_dicts(records) -> list[dict]:
    """Records as JSON dicts: dicts as they are, record objects through their `to_json()`."""
    return [r if isinstance(r, dict) else r.to_json() for r in records]


def matches(record: dict, partial: dict) -> bool:
    """True when `record['spec']` holds `partial`; a key of `partial` missing from the spec is an error."""
    spec = record["spec"]
    missing = [k for k in partial if k not in spec]
    if missing:
        raise KeyError(f"run record {record.get('spec_hash', '?')} has no spec key {missing}: the engine writes every "
                       "key of the spec (missing keys are errors, not defaults)")
    return all(_same(spec[k], v) for k, v in partial.items())


def curve(record: dict, section: str, key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of `record[section][key]` (section: train, eval or monitor)."""
    try:
        part = record[section]
        steps, values = [float(s) for s in part["step"]], [math.nan if v is None else float(v) for v in part[key]]
    except KeyError as e:
        raise KeyError(f"run record {record.get('spec_hash', '?')} has no {section}[{e.args[0]!r}]") from None
    if len(steps) != len(values) or not steps:
        raise ValueError(f"run record {record.get('spec_hash', '?')}: {section}.{key} has {len(values)} values for {len(steps)} steps")
    return steps, values


def smooth(values: Sequence[float], share: float = SMOOTH) -> list[float]:
    """Centred moving mean over `share` of the points (an odd window, shrunk at the ends)."""
    n = len(values)
    half = max(0, int(round(share * n)) // 2)
    return [sum(values[max(0, i - half):i + half + 1]) / len(values[max(0, i - half):i + half + 1]) for i in range(n)]


def _tail(steps: list[float], total: float, share: float) -> int:
    """Index of the first point in the last `share` of the `total` steps."""
    start = total * (1 - share)
    return next((i for i, s in enumerate(steps) if s >= start), len(steps) - 1)


def plateau_loss(record: dict, window: float = 0.1) -> float:
    steps, loss = curve(record, "train", "loss")
    tail = loss[_tail(steps, record["spec"]["steps"], window):]
    return sum(tail) / len(tail)


def steps_to_plateau(record: dict, window: float = 0.1, tol: float = 0.1) -> float:
    steps, loss = curve(record, "train", "loss")
    threshold = plateau_loss(record, window) * (1 + tol)
    s = smooth(loss)
    first = len(s)
    for i in range(len(s) - 1, -1, -1):
        if s[i] > threshold:
            break
        first = i
    return steps[min(first, len(s) - 1)] / record["spec"]["steps"]


def plateau_change(record: dict, share: float = 0.2) -> float:
    """Relative change of the smoothed training loss over the last `share` of the steps."""
    steps, loss = curve(record, "train", "loss")
    s = smooth(loss)
    start = s[_tail(steps, record["spec"]["steps"], share)]
    return abs(s[-1] - start) / abs(start)


def bytes_to_target(record: dict, key: str, target: float) -> float:
    """Bytes sent (record['eval']['bytes']) when eval[key] first reaches `target`, linearly interpolated
    between evaluations; infinite when it never does."""
    _, values = curve(record, "eval", key)
    _, sent = curve(record, "eval", "bytes")
    for i, v in enumerate(values):
        if v <= target:
            if i == 0 or values[i - 1] == v:
                return sent[i]
            w = (values[i - 1] - target) / (values[i - 1] - v)
            return sent[i - 1] + w * (sent[i] - sent[i - 1])
    return math.inf


def metric_value(metric: Metric, record: dict, target: float | None = None) -> float:
    """The number `metric` reads from `record`: (raw + offset) x scale, then log10 if the metric says so.
    `target`: the loss a bytes_to_target metric waits for."""
    if metric.kind == "final":
        try:
            value = float(record["final"][metric.key])
        except KeyError:
            raise KeyError(f"run record {record.get('spec_hash', '?')} has no final[{metric.key!r}]") from None
        if metric.key.endswith("_acc") and not 0 <= value <= 1:
            raise ValueError(f"final[{metric.key!r}] = {value}: accuracies are fractions in [0, 1] in run records")
    elif metric.kind == "plateau_loss":
        value = plateau_loss(record, metric.window)
    elif metric.kind == "steps_to_plateau":
        value = steps_to_plateau(record, metric.window, metric.tol)
    elif metric.kind == "monitor_end":
        value = curve(record, "monitor", metric.key)[1][-1]
    elif metric.kind == "bytes_to_target":
        if target is None:
            raise ValueError("bytes_to_target needs the target loss")
        value = bytes_to_target(record, metric.key, target)
    else:
        raise ValueError(f"unknown metric kind {metric.kind!r}")
    value = (value + metric.offset) * metric.scale
    return math.log10(value) if metric.log10 else value


def _role(records, protocol: Protocol, role: str, seeds) -> list[dict]:
    return [r for r in records if r["spec"].get("task") == protocol.task and r["spec"].get("role") == role
            and r["spec"].get("seed") in seeds]


def _k(lr: float, arm: Arm, factor: float) -> int | None:
    k = math.log(lr / arm.lr) / math.log(factor)
    return round(k) if abs(k - round(k)) < 1e-6 else None


def tuning_state(protocol: Protocol, arm: Arm, records) -> dict:
    """The tuning of one arm so far: the grid points `ks` that count, the mean score per point, the
    points still to run (`todo`), and once none are left the chosen `k`, `lr` and whether it is interior."""
    t = protocol.tuning
    scores: dict[int, dict[int, float]] = {}
    for r in _role(records, protocol, "tune", t.seeds):
        if matches(r, arm.partial):
            k = _k(r["spec"]["lr"], arm, t.factor)
            if k is None:
                raise ValueError(f"arm {arm.name!r}: tuning record {r.get('spec_hash')} has lr {r['spec']['lr']}, not on "
                                 f"the grid {arm.lr} x {t.factor}^k")
            scores.setdefault(k, {})[r["spec"]["seed"]] = metric_value(t.metric, r)
    half = t.initial // 2
    ks = list(range(-half, t.initial - half))
    while True:
        todo = [k for k in ks if set(scores.get(k, {})) != set(t.seeds)]
        mean = {k: sum(scores[k].values()) / len(t.seeds) for k in ks if k not in todo}
        if todo:
            return dict(ks=ks, scores=mean, todo=todo, k=None, lr=None, interior=None)
        sign = 1.0 if t.goal == "min" else -1.0  # ties go to the point nearer the grid's centre
        pick = min(ks, key=lambda k: (sign * mean[k], abs(k)))
        if pick in (ks[0], ks[-1]) and len(ks) < t.max_points:
            ks = [ks[0] - 1, *ks] if pick == ks[0] else [*ks, ks[-1] + 1]
            continue
        return dict(ks=ks, scores=mean, todo=[], k=pick, lr=arm.lr * t.factor ** pick,
                    interior=ks[0] < pick < ks[-1], edge_distance=min(pick - ks[0], ks[-1] - pick))


def tuned_lrs(protocol: Protocol, records) -> dict[str, dict]:
    """Every arm's lr: tuned arms from their tuning state, lr_from arms from the named arm's, untuned
    arms from their spec (None while tuning runs are missing)."""
    out = {a.name: tuning_state(protocol, a, records) for a in protocol.arms if a.tune}
    for a in protocol.arms:
        if not a.tune:
            lr = out[a.lr_from]["lr"] if a.lr_from else dict(a.spec)["lr"]
            out[a.name] = dict(lr=lr, todo=[], interior=None)
    return out


def eval_records(protocol: Protocol, records, lrs: dict[str, dict]) -> dict[tuple[str, int], dict]:
    """The evaluation record of every (arm, seed) at the arm's lr; two records for one is an error."""
    found: dict[tuple[str, int], dict] = {}
    pool = _role(records, protocol, "eval", protocol.eval_seeds)
    for a in protocol.arms:
        if lrs[a.name]["lr"] is None:
            continue
        want = {**a.partial, "lr": lrs[a.name]["lr"]}
        for r in pool:
            if matches(r, want):
                key = (a.name, r["spec"]["seed"])
                if key in found and found[key].get("spec_hash") != r.get("spec_hash"):
                    raise ValueError(f"arm {a.name!r}, seed {key[1]}: two records match ({found[key].get('spec_hash')}, "
                                     f"{r.get('spec_hash')}); make the arm's partial spec tell them apart")
                found[key] = r
    return found


def run_check(check: Check, protocol: Protocol, runs: dict, lrs: dict) -> list[dict]:
    """One result per arm of `check`: the value over its runs, the operator, the threshold, pass/fail
    (NaN fails; an arm without runs fails)."""
    op, _ = CHECKS[check.kind]
    out = []
    for name in check.arms:
        recs = [r for (a, _), r in sorted(runs.items()) if a == name]
        value = math.nan
        if check.kind == "interior":
            value = lrs[name].get("edge_distance", math.nan) if lrs[name].get("k") is not None else math.nan
        elif recs:
            value = _check_value(check, recs)
        ok = not math.isnan(value) and {">=": value >= check.threshold, ">": value > check.threshold,
                                        "<=": value <= check.threshold}[op]
        out.append(dict(check=check.name, kind=check.kind, arm=name, value=value, op=op, threshold=check.threshold,
                        passed=bool(ok), n=len(recs)))
    return out


def _monitor_at(record: dict, key: str, at: float) -> float:
    steps, values = curve(record, "monitor", key)
    limit = at * record["spec"]["steps"]
    before = [v for s, v in zip(steps, values) if s <= limit]
    return before[-1] if before else math.nan


def _check_value(check: Check, recs: list[dict]) -> float:
    kind = check.kind
    if kind == "phase1_by":
        return min(_monitor_at(r, "sum_lr_lambda", check.at) for r in recs)
    if kind == "starts_outside":
        return min(curve(r, "monitor", check.key)[1][0] for r in recs)
    if kind == "plateau":
        return max(plateau_change(r, check.at) for r in recs)
    if kind in ("final_at_least", "final_at_most"):
        values = [metric_value(Metric("final", check.key), r) for r in recs]
        return min(values) if kind == "final_at_least" else max(values)
    if kind == "inside_after_phase1":
        after = []
        for r in recs:
            box, phase = curve(r, "monitor", check.key)[1], curve(r, "monitor", "sum_lr_lambda")[1]
            after += [b for b, s in zip(box, phase) if s >= PHASE1_SUM]
        return max(after) if after else math.nan  # no monitored step after phase 1: the check fails
    if kind == "min_steps":
        return float(min(r["spec"]["steps"] for r in recs))
    raise ValueError(f"unknown check kind {kind!r}")


def plan(protocol: Protocol, records) -> list[dict]:
    """The partial specs of the runs still to make, tuning first: arm spec + lr + seed + role. The
    engine completes them from the scale; run them, record them (stamped), and plan again until empty
    (a grid grows at an edge only once its points are run, so tuning takes several rounds)."""
    records = as_dicts(records)
    lrs = tuned_lrs(protocol, records)
    todo = [{**a.partial, "lr": a.lr * protocol.tuning.factor ** k, "seed": s, "role": "tune"}
            for a in protocol.arms if a.tune for k in lrs[a.name]["todo"] for s in protocol.tuning.seeds
            if not any(matches(r, {**a.partial, "lr": a.lr * protocol.tuning.factor ** k, "seed": s, "role": "tune"})
                       for r in records if r["spec"].get("task") == protocol.task)]
    if todo:
        return todo
    runs = eval_records(protocol, records, lrs)
    todo = [{**a.partial, "lr": lrs[a.name]["lr"], "seed": s, "role": "eval"}
            for a in protocol.arms for s in protocol.eval_seeds if (a.name, s) not in runs]
    unique = {json.dumps(t, sort_keys=True): t for t in todo}  # an lr-matched control may be another arm's run
    return list(unique.values())
