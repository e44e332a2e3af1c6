"""The one result type of every trainer: `RunRecord`, the run record of schema `lionlib.run/1`.

A record holds the spec and its hash, the code version, the environment, the training-loss curve
(window means, at most `MAX_POINTS` points), the evaluation curves, the constraint monitor's values
at the same kind of steps, the final evaluation and the wall time. It is written as JSON with
sorted keys and floats as Python's repr (`RunRecord.dumps`), so two runs that computed the same
numbers write the same bytes apart from `wall_seconds` and `finished`, the only clock readings in it.
A record made for a protocol also carries `protocols` ({name: hash}, `lionlib.companion.protocol.stamp`),
beside the spec: read and written back, never part of the spec or its hash.

`Curves` is what a trainer accumulates while it runs (and what a checkpoint saves), turned into a
record by `RunRecord.build`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
from dataclasses import dataclass, field

import torch

from lionlib.experiments.common import REPO
from lionlib.experiments.specs import canonical, spec_from_dict, spec_hash

__all__ = ["SCHEMA", "MAX_POINTS", "RunRecord", "Curves", "window_means", "code_info", "environment", "cpu_model",
           "monitor_summary"]

SCHEMA = "lionlib.run/1"
MAX_POINTS = 200
_CODE: dict = {}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def code_info() -> dict:
    """{"version", "commit", "dirty"}: lionlib's version and the git state of the checkout (None/False
    outside a git checkout, e.g. an installed package). Read once per process."""
    if not _CODE:
        import lionlib

        commit, dirty = None, False
        try:
            git = ["git", "-C", str(REPO)]
            commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                    check=True).stdout.strip() or None
            dirty = bool(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                        text=True, timeout=10, check=True).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            commit, dirty = None, False
        _CODE.update(version=lionlib.__version__, commit=commit, dirty=dirty)
    return dict(_CODE)


def environment(device: str, precision: str, compile: bool, world_size: int = 1, **extra) -> dict:
    """What a result depends on besides its spec: torch, python, the CPU, threads, device, precision."""
    return dict(torch=torch.__version__, python=platform.python_version(), cpu=cpu_model(),
                threads=torch.get_num_threads(), device=str(device), precision=precision, compile=bool(compile),
                world_size=world_size, deterministic=torch.are_deterministic_algorithms_enabled(),
                cuda=torch.cuda.get_device_name() if str(device).startswith("cuda") else None, **extra)


def window_means(steps: list[int], values: list[float], max_points: int = MAX_POINTS) -> dict:
    """At most `max_points` points: consecutive windows of equal length (the last may be shorter),
    each the mean of its values at its last step."""
    n = len(values)
    w = max(1, math.ceil(n / max_points))
    out_s, out_v = [], []
    for i in range(0, n, w):
        chunk = values[i:i + w]
        out_s.append(int(steps[min(i + w, n) - 1]))
        out_v.append(float(sum(chunk) / len(chunk)))
    return {"step": out_s, "loss": out_v}


def _thin(curves: dict, max_points: int = MAX_POINTS) -> dict:
    """Every k-th entry of equal-length columns (the last kept), at most `max_points` rows."""
    n = len(curves.get("step", []))
    if n <= max_points:
        return curves
    k = math.ceil(n / max_points)
    keep = sorted(set(range(n - 1, -1, -k)))
    return {key: ([col[i] for i in keep] if isinstance(col, list) else col) for key, col in curves.items()}


def monitor_summary(rows: list[dict], lr_lambda: list[float]) -> dict:
    """The monitor's per-tensor rows (`ConstraintMonitor.rows`) as per-step columns.

    `lr_lambda[s]` is the step-s decay lr_s * lambda of the spec's base group. Per recorded step:
    `sum_lr_lambda` (sum of lr_s lambda up to it), `bound_factor` (prod (1 - lr_s lambda)),
    `box_violation` (max over decayed tensors of constraint / phase-1 bound - 1; <= 0 when Theorem
    B.9 holds), `max_constraint` (max of lambda ||x||), `kkt` (mean relative KKT score over tensors),
    and, per tensor for figures, `constraint` ({name: [lambda ||x||]}) and `bound` ({name: [its
    phase-1 bound]}, None outside Lion-K).
    """
    steps = sorted({int(r["step"]) for r in rows})
    by_step: dict[int, list[dict]] = {s: [] for s in steps}
    for r in rows:
        by_step[int(r["step"])].append(r)
    sums, prods = [0.0], [1.0]  # after 0, 1, 2, ... steps
    for x in lr_lambda:
        sums.append(sums[-1] + x)
        prods.append(prods[-1] * max(1 - x, 0.0))
    at = lambda xs, s: xs[min(max(s, 0), len(xs) - 1)]  # noqa: E731  (monitor step s: after s steps)
    names = list(dict.fromkeys(r["name"] for r in rows))
    out = {"step": steps, "sum_lr_lambda": [at(sums, s) for s in steps], "bound_factor": [at(prods, s) for s in steps],
           "box_violation": [], "max_constraint": [], "kkt": [], "constraint": {n: [] for n in names},
           "bound": {n: [] for n in names}}
    for s in steps:
        rs = by_step[s]
        ratios = [r["constraint"] / r["bound"] - 1 for r in rs if not math.isnan(r["bound"]) and r["bound"] > 0]
        kkts = [r["kkt_rel"] for r in rs if not math.isnan(r["kkt_rel"])]
        out["box_violation"].append(max(ratios) if ratios else None)
        out["max_constraint"].append(max(r["constraint"] for r in rs))
        out["kkt"].append(sum(kkts) / len(kkts) if kkts else None)
        got = {r["name"]: r for r in rs}
        for n in names:
            out["constraint"][n].append(got[n]["constraint"] if n in got else None)
            b = got[n]["bound"] if n in got else math.nan
            out["bound"][n].append(None if math.isnan(b) else b)
    return _thin_monitor(out)


def _thin_monitor(out: dict) -> dict:
    """`_thin` over the per-step columns and the per-tensor ones alike."""
    nested = {key: out.pop(key) for key in ("constraint", "bound")}
    flat = {**out, **{f"{key}\0{n}": col for key, cols in nested.items() for n, col in cols.items()}}
    thin = _thin(flat)
    result = {k: v for k, v in thin.items() if "\0" not in k}
    for key in nested:
        result[key] = {k.split("\0", 1)[1]: v for k, v in thin.items() if k.startswith(key + "\0")}
    return result


@dataclass
class Curves:
    """What a trainer accumulates: every step's training loss and lr * lambda, evaluation rows, the
    monitor's rows. Plain lists, so a checkpoint saves and restores them exactly."""

    loss: list = field(default_factory=list)  # training loss of steps 1, 2, ...
    lr_lambda: list = field(default_factory=list)
    evals: list = field(default_factory=list)  # {"step": s, metric: value, ...}
    monitor_rows: list = field(default_factory=list)

    def state(self) -> dict:
        return dict(loss=self.loss, lr_lambda=self.lr_lambda, evals=self.evals, monitor_rows=self.monitor_rows)


@dataclass
class RunRecord:
    """A finished run (schema `lionlib.run/1`); `dumps()` is the file, `loads()` reads it back."""

    spec: object
    code: dict
    env: dict
    train: dict
    eval: dict
    monitor: dict
    final: dict
    wall_seconds: float
    finished: str
    data: dict = field(default_factory=dict)  # what the data were: label, sha256, sizes
    protocols: dict = field(default_factory=dict)  # {protocol name: hash} it was trained for (outside spec: no rehash)
    model: object = field(default=None, repr=False, compare=False)  # the trained model, in memory only

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.spec)

    @classmethod
    def build(cls, spec, curves: Curves, env: dict, wall_seconds: float, data: dict | None = None, model=None) -> RunRecord:
        evals = curves.evals
        metrics = list(dict.fromkeys(k for e in evals for k in e if k != "step"))
        ev = {"step": [int(e["step"]) for e in evals], **{m: [e.get(m) for e in evals] for m in metrics}}
        final = {m: ev[m][-1] for m in metrics} if evals else {}
        steps = list(range(1, len(curves.loss) + 1))
        return cls(spec=spec, code=code_info(), env=env, train=window_means(steps, curves.loss),
                   eval=_thin(ev), monitor=monitor_summary(curves.monitor_rows, curves.lr_lambda) if curves.monitor_rows
                   else {"step": []}, final=final, wall_seconds=float(wall_seconds),
                   finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), data=data or {}, model=model)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "task": self.task, "spec": json.loads(canonical(self.spec)), "spec_hash": self.spec_hash,
                "code": self.code, "env": self.env, "train": self.train, "eval": self.eval, "monitor": self.monitor,
                "final": self.final, "data": self.data, "wall_seconds": self.wall_seconds, "finished": self.finished,
                **({"protocols": dict(sorted(self.protocols.items()))} if self.protocols else {})}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, indent=1) + "\n"

    @classmethod
    def loads(cls, text: str, where: str = "record") -> RunRecord:
        d = json.loads(text)
        if d.get("schema") != SCHEMA:
            raise ValueError(f"{where}: schema {d.get('schema')!r}, expected {SCHEMA!r}")
        spec = spec_from_dict(d["spec"])
        if spec_hash(spec) != d["spec_hash"]:
            raise ValueError(f"{where}: spec_hash {d['spec_hash']} does not match its spec ({spec_hash(spec)})")
        return cls(spec=spec, **{k: d[k] for k in ("code", "env", "train", "eval", "monitor", "final", "wall_seconds",
                                                   "finished")}, data=d.get("data", {}),
                   protocols=dict(d.get("protocols", {})))

    def monitor_frame(self):
        """The monitor's per-tensor values as a long DataFrame (step, name, constraint, bound)."""
        import pandas as pd

        m = self.monitor
        rows = [dict(step=s, name=n, constraint=c, bound=b) for n in m.get("constraint", {})
                for s, c, b in zip(m["step"], m["constraint"][n], m["bound"][n]) if c is not None]
        return pd.DataFrame(rows, columns=["step", "name", "constraint", "bound"]).astype({"bound": float})

    def numbers(self) -> dict:
        """The record without its clock readings, the machine description and its protocol stamps: what
        a bit-identical re-run must reproduce exactly."""
        d = self.to_json()
        for k in ("wall_seconds", "finished", "protocols"):
            d.pop(k, None)
        return d
