"""From run records to findings: `analyse(protocols, records)` and `sentence(finding)`.

`analyse` takes registered protocols (`lionlib.companion.protocol`) and the run records of
`paper_figures/runs/`, and for each protocol: refuses it unless it is the committed one; admits only
the records stamped with its hash (a record stamped with another hash of the same protocol is an
error); picks every arm's tuned lr from the tuning runs; finds one evaluation run per arm and
evaluation seed (a missing run is an error: `protocol_records.plan` lists what to run); runs the
regime checks; and computes every hypothesis' per-seed effects, their mean and 95 % interval, the MDE
(80 % power, from the contrast's pilot SD, else from the evaluation runs' SD), its p-values and its
verdict (`stats.decide`). Holm-Bonferroni is applied across the primary hypotheses of every protocol
passed in one call (the primary family); exploratory findings carry no adjusted verdict (None).

`sentence` renders a finding as one line for a notebook, every number and word taken from the finding.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lionlib.companion import stats
from lionlib.companion.protocol import PROTOCOL_DIR, Contrast, Hypothesis, Protocol, ProtocolChanged, check_registered
from lionlib.companion.protocol_records import as_dicts, eval_records, matches, metric_value, plan, run_check, tuned_lrs

__all__ = ["analyse", "sentence", "admitted"]


def admitted(protocol: Protocol, records: Iterable[dict], require_stamp: bool = True) -> list[dict]:
    """The records of the protocol's task that were made under it: stamped `protocols[name] == hash`
    (every record of the task when `require_stamp` is False). Another hash for this name raises."""
    out = []
    for r in records:
        if r.get("spec", {}).get("task") != protocol.task:
            continue
        mark = r.get("protocols", {}).get(protocol.name)
        if mark is not None and mark != protocol.hash:
            raise ProtocolChanged(f"run record {r.get('spec_hash')} was made under protocol {protocol.name!r} {mark}, not "
                                  f"{protocol.hash}: the protocol changed since; delete the record or run it again")
        if mark == protocol.hash or not require_stamp:
            out.append(r)
    return out


def _effects(c: Contrast, runs: dict, seeds: list[int]) -> list[float]:
    target = None
    if c.metric.kind == "bytes_to_target":  # the largest final value over the contrast's runs: every run reaches it
        target = max(float(runs[a, s]["final"][c.metric.key]) for a, _ in c.weights for s in seeds)
    return [sum(w * metric_value(c.metric, runs[a, s], target) for a, w in c.weights) for s in seeds]


def _component(pr: Protocol, test: str, c: Contrast, effects: list[float]) -> dict:
    n, ci, spread = len(effects), stats.t_interval(effects), stats.sd(effects)
    if test == "non-inferiority":  # H: effect > -margin; against: effect < -margin
        p, p_against = stats.p_greater(effects, -c.sesoi), stats.p_less(effects, -c.sesoi)
    else:  # H: effect > 0; against: effect < SESOI (no effect of interest in the predicted direction)
        p, p_against = stats.p_greater(effects, 0.0), stats.p_less(effects, c.sesoi)
    return dict(label=c.label, effect=ci.mean, ci_low=ci.low, ci_high=ci.high, level=ci.level, units=c.metric.units,
                n=n, effects=effects, sd=spread, sesoi=c.sesoi, mde=stats.mde(c.pilot_sd if c.pilot_sd is not None else spread, n, pr.alpha, pr.power),
                mde_from="pilot" if c.pilot_sd is not None else "evaluation runs", p=p, p_against=p_against)


def _finding(pr: Protocol, h: Hypothesis, runs: dict, checks: dict) -> dict:
    seeds = list(pr.eval_seeds)
    comps = [_component(pr, h.test, c, _effects(c, runs, seeds)) for c in h.contrasts]
    if h.test == "intersection-union":  # "A and B": shown when each is; refuted when either is (Bonferroni over them)
        p, p_against = stats.intersection_union([c["p"] for c in comps]), min(1.0, len(comps) * min(c["p_against"] for c in comps))
    else:
        p, p_against = comps[0]["p"], comps[0]["p_against"]
    untestable = [c for c in comps if c["mde"] > c["sesoi"]]
    head = max(untestable, key=lambda c: c["mde"] / c["sesoi"]) if untestable else max(comps, key=lambda c: c["p"])
    rests = [x for name in h.checks for x in checks[name]]
    failed = sorted({f"{x['check']} ({x['arm']})" for x in rests if not x["passed"]})
    reasons = ([f"n = {len(seeds)} < {stats.MIN_SEEDS}"] if len(seeds) < stats.MIN_SEEDS else []) + \
              ([f"regime check failed: {', '.join(failed)}"] if failed else []) + \
              [f"MDE = {c['mde']:.3g} {c['units']} > SESOI = {c['sesoi']:.3g} {c['units']} ({c['label']})" for c in untestable]
    finding = dict(
        protocol=pr.name, protocol_hash=pr.hash, alpha=pr.alpha, name=h.name, hypothesis=h.text, claim=pr.claim, source=pr.source,
        test=h.test, primary=h.primary, seeds=seeds, **{k: head[k] for k in ("label", "effect", "ci_low", "ci_high", "level",
                                                                          "units", "n", "effects", "sd", "mde", "mde_from", "sesoi")},
        margin=head["sesoi"] if h.test == "non-inferiority" else None, p=p, p_against=p_against,
        checks=[{k: x[k] for k in ("check", "arm", "passed", "value", "op", "threshold")} for x in rests],
        checks_pass=not failed, components=comps, reason="; ".join(reasons))
    finding["verdict"] = _decide(finding, p, p_against)
    finding.update(p_holm=None, p_against_holm=None, verdict_holm=None)
    return finding


def _decide(f: dict, p: float, p_against: float) -> str:
    head_mde = max((c["mde"] / c["sesoi"] for c in f["components"]), default=0.0)
    return stats.decide(p, p_against, n=len(f["seeds"]), mde=head_mde, sesoi=1.0, checks_pass=f["checks_pass"], alpha=f["alpha"])


def analyse(protocols: Protocol | Iterable[Protocol], records: Iterable[dict], *, folder=PROTOCOL_DIR,
            require_stamp: bool = True) -> dict:
    """Findings and regime checks of `protocols` from `records` (see the module docstring).

    `records`: JSON dicts or record objects with `to_json()`. Returns {"findings": [...], "checks":
    [...], "tuning": {protocol: {arm: {lr, interior, ...}}}}.
    `folder=None` skips the registration check (tests of unregistered protocols)."""
    protocols = [protocols] if isinstance(protocols, Protocol) else list(protocols)
    if len({p.alpha for p in protocols if any(h.primary for h in p.hypotheses)}) > 1:
        raise ValueError("one primary family takes one alpha: analyse protocols of different alpha in separate calls")
    records = as_dicts(records)
    findings, all_checks, tuning = [], [], {}
    for pr in protocols:
        if folder is not None:
            check_registered(pr, folder)
        recs = admitted(pr, records, require_stamp)
        missing = plan(pr, recs)
        if missing:
            unstamped = sum(1 for r in records if r.get("spec", {}).get("task") == pr.task and pr.name not in r.get("protocols", {})
                            and any(matches(r, a.partial) for a in pr.arms))
            raise ValueError(f"protocol {pr.name!r}: {len(missing)} runs missing, the first {missing[0]} "
                             f"(protocol_records.plan lists them all; {unstamped} records match its arms without its stamp)")
        lrs = tuned_lrs(pr, recs)
        runs = eval_records(pr, recs, lrs)
        checks = {c.name: run_check(c, pr, runs, lrs) for c in pr.checks}
        all_checks += [dict(protocol=pr.name, **x) for results in checks.values() for x in results]
        tuning[pr.name] = {a: {k: v for k, v in s.items() if k != "todo"} for a, s in lrs.items()}
        findings += [_finding(pr, h, runs, checks) for h in pr.hypotheses]
    primary = [f for f in findings if f["primary"]]
    for f, p, q in zip(primary, stats.holm([f["p"] for f in primary]), stats.holm([f["p_against"] for f in primary])):
        f.update(p_holm=p, p_against_holm=q, verdict_holm=_decide(f, p, q))
    return {"findings": findings, "checks": all_checks, "tuning": tuning}


def _num(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.3g}"


def sentence(finding: dict) -> str:
    """One line: the hypothesis, primary or exploratory, the verdict (raw and Holm-adjusted), and per
    component the effect with its 95 % interval, n, MDE and SESOI."""
    f = finding
    verdict = f["verdict"] + (f" ({f['reason']})" if f["verdict"] == stats.NOT_TESTABLE and f["reason"] else "")
    holm = f"; Holm-adjusted: {f['verdict_holm']}" if f["primary"] else ""
    parts = [f"{c['label']} {_num(c['effect'])} {c['units']} (95 % CI {_num(c['ci_low'])} to {_num(c['ci_high'])}, "
             f"n = {c['n']}, MDE {_num(c['mde'])}, SESOI {_num(c['sesoi'])})" for c in f["components"]]
    kind = "primary" if f["primary"] else "exploratory"
    return f"{f['hypothesis']} [{kind}, {f['test']}]: {verdict}{holm}; " + "; ".join(parts) + "."
