"""What notebook 07 (CIFAR-10) computes from its protocols and run records, as pure functions.

- `protocols_for(scale)`: the five CIFAR protocols of a notebook scale (smoke runs the `tiny` ones);
- `campaign_runs` / `campaign_table`: every run a protocol needs, recorded or not, each one a key
  (the arm's partial spec, lr, seed, role), so runs shared by several protocols (the lambda = 1 arm of
  the trade-off is Lion on the ResNet in three protocols) count once. A tuning grid not yet finished
  can grow to `Tuning.max_points`: "at least" counts the grid as it stands, "at most" at its largest;
  an arm's evaluation runs wait for its tuned lr;
- `campaign_seconds`: that count times the seconds a run of each kind takes;
- the figures' data frames (`curves_frame`, `accuracy_frame`, `spectrum_frame`), from whatever
  evaluation records exist (a figure of an incomplete protocol shows what is recorded).
"""

from __future__ import annotations

from lionlib.companion.protocol_analysis import admitted
from lionlib.companion.protocol_library import PROTOCOLS
from lionlib.companion.protocol_records import eval_records, matches, tuned_lrs

__all__ = ["NAMES", "PROTOCOL_SCALE", "protocols_for", "campaign_runs", "campaign_table", "campaign_seconds",
           "run_kind", "curves_frame", "accuracy_frame", "spectrum_frame"]

NAMES = ("lambda_tradeoff_resnet", "architecture_p", "lion_vs_adamw_resnet", "lion_vs_adamw_vit", "muon_spectral")
PROTOCOL_SCALE = {"smoke": "tiny", "tiny": "tiny", "cpu": "cpu", "paper": "paper"}


def protocols_for(scale: str) -> list:
    if scale not in PROTOCOL_SCALE:
        raise ValueError(f"scale {scale!r}: choose one of {', '.join(PROTOCOL_SCALE)}")
    return [PROTOCOLS[f"{n}_{PROTOCOL_SCALE[scale]}"] for n in NAMES]


def _key(d: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in d.items()))


def campaign_runs(protocol, records) -> dict[str, set]:
    """{"recorded", "outstanding", "possible"}: keys of the runs made under `protocol`, of those still
    to make on the grids as they stand, and of the extra grid points a tuning may still add."""
    recs = admitted(protocol, records)
    lrs = tuned_lrs(protocol, recs)
    t = protocol.tuning
    want, possible = [], set()
    for a in protocol.arms:
        if a.tune:
            state = lrs[a.name]
            want += [{**a.partial, "lr": a.lr * t.factor ** k, "seed": s, "role": "tune"} for k in state["ks"] for s in t.seeds]
            if state["k"] is None:  # still tuning: the grid may grow at an edge
                possible |= {("extra", _key(a.partial), i, s) for i in range(t.max_points - len(state["ks"])) for s in t.seeds}
        src = protocol.arm(a.lr_from) if a.lr_from else a
        for s in protocol.eval_seeds:
            lr = lrs[a.name]["lr"]
            if lr is None:  # waits for the tuned lr of `src`
                want.append({"pending": _key(a.partial), "lr_of": _key(src.partial), "seed": s, "role": "eval"})
            else:
                want.append({**a.partial, "lr": lr, "seed": s, "role": "eval"})
    recorded, outstanding = set(), set()
    for w in want:
        done = "pending" not in w and any(r["spec"].get("role") == w["role"] and matches(r, w) for r in recs)
        (recorded if done else outstanding).add(_key(w))
    return {"recorded": recorded, "outstanding": outstanding, "possible": possible}


def campaign_table(protocols, records):
    """One row per protocol and one for all of them (shared runs counted once): runs recorded, the
    least and the most still to make."""
    import pandas as pd

    runs = {p.name: campaign_runs(p, records) for p in protocols}
    rows = [dict(protocol=name, recorded=len(r["recorded"]), to_make_at_least=len(r["outstanding"]),
                 to_make_at_most=len(r["outstanding"]) + len(r["possible"])) for name, r in runs.items()]
    union = {k: set().union(*(r[k] for r in runs.values())) for k in ("recorded", "outstanding", "possible")}
    rows.append(dict(protocol="all (distinct runs)", recorded=len(union["recorded"]),
                     to_make_at_least=len(union["outstanding"] - union["recorded"]),
                     to_make_at_most=len(union["outstanding"] - union["recorded"]) + len(union["possible"])))
    return pd.DataFrame(rows).set_index("protocol")


def run_kind(key: tuple) -> str:
    """The cost class of a run key: its model, and for Muon whether msign is exact."""
    d = dict(key[1]) if key[0] == "extra" else dict(key)
    d = dict(d["pending"]) if "pending" in d else d
    if d.get("optimizer") == "muon":
        return f"{d['model']} muon {'exact' if d.get('muon_exact') else 'ns'}"
    return d["model"]


def campaign_seconds(protocols, records, seconds: dict[str, float]) -> dict[str, float]:
    """{"runs_min", "runs_max", "seconds_min", "seconds_max"} of every distinct run of `protocols`
    (recorded or not: the campaign from an empty store), `seconds[run_kind]` each."""
    runs = [campaign_runs(p, records) for p in protocols]
    base = set().union(*(r["recorded"] | r["outstanding"] for r in runs))
    extra = set().union(*(r["possible"] for r in runs))
    missing = sorted({run_kind(k) for k in base | extra} - set(seconds))
    if missing:
        raise KeyError(f"no seconds per run for {missing}: measure them and add them to `seconds`")
    lo = sum(seconds[run_kind(k)] for k in base)
    return dict(runs_min=len(base), runs_max=len(base) + len(extra), seconds_min=lo,
                seconds_max=lo + sum(seconds[run_kind(k)] for k in extra))


def _runs(protocol, records) -> dict:
    recs = admitted(protocol, records)
    return eval_records(protocol, recs, tuned_lrs(protocol, recs))


def curves_frame(protocol, records, section: str = "train", key: str = "loss"):
    """Long frame (arm, seed, step, value) of `record[section][key]` of every evaluation run recorded."""
    import pandas as pd

    rows = [dict(arm=arm, seed=seed, step=s, value=v) for (arm, seed), r in _runs(protocol, records).items()
            for s, v in zip(r[section]["step"], r[section][key]) if v is not None]
    return pd.DataFrame(rows, columns=["arm", "seed", "step", "value"])


def accuracy_frame(protocols, records):
    """Long frame (protocol, arm, seed, test_acc in %) of every evaluation run recorded."""
    import pandas as pd

    rows = [dict(protocol=p.name, arm=arm, seed=seed, test_acc=100 * r["final"]["test_acc"])
            for p in protocols for (arm, seed), r in _runs(p, records).items()]
    return pd.DataFrame(rows, columns=["protocol", "arm", "seed", "test_acc"])


def spectrum_frame(protocol, records):
    """Long frame (arm, seed, step, matrix, lambda sigma_max, phase-1 bound) of the Muon runs' monitor."""
    import pandas as pd

    rows = [dict(arm=arm, seed=seed, step=s, matrix=name, constraint=c, bound=b)
            for (arm, seed), r in _runs(protocol, records).items()
            for name, col in r["monitor"].get("constraint", {}).items()
            for s, c, b in zip(r["monitor"]["step"], col, r["monitor"]["bound"][name]) if c is not None]
    return pd.DataFrame(rows, columns=["arm", "seed", "step", "matrix", "constraint", "bound"])
