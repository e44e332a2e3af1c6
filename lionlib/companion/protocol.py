"""Protocols as data: what a finding measures and how it is decided, fixed and hashed before the runs.

A `Protocol` is one paper claim as a frozen value: the hypothesis in words, the arms (partial run
specs, matched against the `spec` of the run records that `lionlib.experiments` writes), how every
arm's learning rate is tuned (`Tuning`: a x2-spaced grid around the arm's `lr`, extended at an edge
until its optimum is interior, on tuning seeds and the validation split), the evaluation seeds (at
least 5, none of them a tuning seed), the hypotheses it tests (`Hypothesis`: the contrasts of arms,
the metric each reads from a record, the smallest effect of interest, the test, primary or
exploratory), the regime checks they rest on (`Check`), and the decision rule (`alpha`, `power`, the
rule in words; `lionlib.companion.stats.decide`).

Its canonical JSON (sorted keys, no spaces, floats as Python's repr) is hashed (the first 16 hex
digits of its sha256, as the run records' `spec_hash`) and committed as
`paper_figures/protocols/<name>.json` by `register` before any run. `check_registered` refuses a
protocol whose committed file is missing or holds another hash, and the analysis
(`lionlib.companion.protocol_analysis`) refuses run records stamped (`stamp`) with another hash: a
changed protocol is a new protocol, and its runs are made again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from lionlib.companion import stats
from lionlib.companion.paths import PAPER_FIGURES

__all__ = ["TASKS", "METRICS", "TESTS", "CHECKS", "CHECK_WORDS", "PROTOCOL_DIR", "Metric", "Arm", "Tuning",
           "Contrast", "Hypothesis", "Check", "Protocol", "ProtocolChanged", "register", "registered",
           "check_registered", "stamp"]

TASKS = ("cifar", "gpt", "distributed")
METRICS = {  # kind -> what it reads from a run record (lionlib.companion.protocol_records.metric_value)
    "final": "record['final'][key]",
    "plateau_loss": "mean training loss over the last `window` of the steps",
    "steps_to_plateau": "first step from which the smoothed training loss stays within `tol` of the plateau loss, "
                        "as a fraction of the run's steps",
    "monitor_end": "record['monitor'][key] at the last monitored step",
    "bytes_to_target": "bytes sent when record['eval'][key] first reaches the target (the contrast's largest final key)",
}
TESTS = ("superiority", "non-inferiority", "intersection-union")
CHECKS = {  # kind -> (op, what the value is): lionlib.companion.protocol_records.run_check
    "phase1_by": (">=", "smallest sum of lr_t * lambda over the arm's runs at fraction `at` of the steps"),
    "starts_outside": (">", "smallest monitor[key] (lambda ||x||, largest over tensors) at the first monitored step"),
    "plateau": ("<=", "largest relative change of the smoothed training loss over the last `at` of the steps"),
    "interior": (">=", "grid points between the tuned lr and the nearer edge of its grid"),
    "final_at_least": (">=", "smallest record['final'][key] over the arm's runs"),
    "final_at_most": ("<=", "largest record['final'][key] over the arm's runs"),
    "inside_after_phase1": ("<=", "largest monitor[key] (lambda ||x||) at monitored steps where sum lr_t * lambda >= 5"),
    "min_steps": (">=", "fewest training steps of the arm's runs"),
}
CHECK_WORDS = {"phase1_by": "phase 1", "inside_after_phase1": "phase 1", "plateau": "plateau", "interior": "interior"}
PROTOCOL_DIR = PAPER_FIGURES / "protocols"
MIN_EVAL_SEEDS = 5


def _freeze(x):
    """Spec values as hashable, comparable data: lists -> tuples, dicts -> sorted (key, value) pairs."""
    if isinstance(x, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in x.items()))
    if isinstance(x, (list, tuple)):
        return tuple(_freeze(v) for v in x)
    if isinstance(x, float) and not math.isfinite(x):
        raise ValueError(f"protocol values must be finite numbers, got {x}")
    return x


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class Metric:
    """How one number is computed from a run record (`kind` in METRICS): (raw + offset) x scale, then
    log10 if asked, in `units`."""

    kind: str
    key: str = "loss"
    units: str = ""
    scale: float = 1.0  # 100: a fraction in percentage points
    offset: float = 0.0  # -1: lambda ||x|| - 1, the distance past the box
    window: float = 0.1  # plateau: the last 10 % of the steps
    tol: float = 0.1  # steps_to_plateau: within 10 % of the arm's own plateau loss
    log10: bool = False  # report log10 of the value (after scale): byte counts, ratios

    def __post_init__(self):
        _need(self.kind in METRICS, f"metric kind must be one of {sorted(METRICS)}, got {self.kind!r}")
        _need(0 < self.window <= 1 and self.tol > 0, f"metric window in (0, 1] and tol > 0, got {self.window}, {self.tol}")


@dataclass(frozen=True)
class Arm:
    """One arm: the partial spec its runs match (`spec`, a dict), the centre of its lr grid (`lr`,
    tuned when `tune`), or `lr_from`: the name of the arm whose tuned lr it runs at (an lr-matched
    control). An untuned arm carries its lr in `spec`."""

    name: str
    spec: tuple
    lr: float | None = None
    tune: bool = True
    lr_from: str = ""

    def __post_init__(self):
        object.__setattr__(self, "spec", _freeze(dict(self.spec)))
        keys = dict(self.spec)
        _need("lr" not in keys or not (self.tune or self.lr_from), f"arm {self.name!r}: a tuned arm takes its lr from the grid, not from spec")
        _need(not (self.tune and self.lr_from), f"arm {self.name!r}: tune and lr_from exclude each other")
        _need(not self.tune or (self.lr is not None and self.lr > 0), f"arm {self.name!r}: a tuned arm needs lr > 0 (its grid centre)")
        _need(self.tune or self.lr_from or "lr" in keys, f"arm {self.name!r}: an untuned arm needs lr in spec or lr_from")
        _need(not {"seed", "role"} & set(keys), f"arm {self.name!r}: seed and role come from the protocol, not the arm")

    @property
    def partial(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.spec}


@dataclass(frozen=True)
class Tuning:
    """Every tuned arm's lr: lr_arm * factor**k for `initial` points centred on k = 0, one more point
    beyond an edge while the optimum (the mean of `metric` over `seeds`, `goal` min or max) sits at
    that edge, up to `max_points`. Tuning runs have role "tune" and read the validation split."""

    seeds: tuple
    metric: Metric
    goal: str
    factor: float = 2.0
    initial: int = 5
    max_points: int = 9

    def __post_init__(self):
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        _need(self.goal in ("min", "max"), f"tuning goal must be 'min' or 'max', got {self.goal!r}")
        _need(self.initial >= 3 and self.max_points >= self.initial, "a tuning grid needs >= 3 points and max_points >= initial")
        _need(self.factor > 1 and len(self.seeds) >= 1, "a tuning grid needs factor > 1 and at least one seed")


@dataclass(frozen=True)
class Contrast:
    """A per-seed effect: sum of coefficient x metric over the arms of `weights` ((arm, coefficient)
    pairs), signed so that the hypothesis predicts > 0. `sesoi`: the smallest effect of interest, in
    the metric's units (for non-inferiority it is the margin). `pilot_sd`: the SD of the per-seed
    effect measured by a pilot, for the MDE; None: the MDE is computed from the evaluation runs."""

    label: str
    metric: Metric
    weights: tuple
    sesoi: float
    pilot_sd: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "weights", tuple((str(a), float(c)) for a, c in self.weights))
        _need(self.sesoi > 0, f"contrast {self.label!r}: the SESOI must be > 0, got {self.sesoi}")
        _need(len(self.weights) >= 1, f"contrast {self.label!r}: needs at least one arm")


@dataclass(frozen=True)
class Hypothesis:
    """One tested statement: `test` in TESTS over its `contrasts` (one, or the components of an
    intersection-union test), resting on the regime `checks` (names of the protocol's checks)."""

    name: str
    text: str
    test: str
    contrasts: tuple
    primary: bool
    checks: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "contrasts", tuple(self.contrasts))
        object.__setattr__(self, "checks", tuple(self.checks))
        _need(self.test in TESTS, f"hypothesis {self.name!r}: test must be one of {TESTS}, got {self.test!r}")
        k = len(self.contrasts)
        _need(k >= 2 if self.test == "intersection-union" else k == 1,
              f"hypothesis {self.name!r}: {self.test} takes {'>= 2 contrasts' if self.test == 'intersection-union' else 'one contrast'}, got {k}")


@dataclass(frozen=True)
class Check:
    """A regime check (`kind` in CHECKS) on every run of `arms`; the value is compared with
    `threshold` by the kind's operator. `at`: the fraction of the steps it reads (phase1_by: the
    early read-out) or the final share it covers (plateau); `key`: the record key it reads."""

    name: str
    kind: str
    arms: tuple
    threshold: float
    at: float = 1.0
    key: str = ""

    def __post_init__(self):
        object.__setattr__(self, "arms", tuple(self.arms))
        _need(self.kind in CHECKS, f"check {self.name!r}: kind must be one of {sorted(CHECKS)}, got {self.kind!r}")
        word = CHECK_WORDS.get(self.kind)
        _need(word is None or word in self.name, f"check {self.name!r}: a check of kind {self.kind} is named with the words {word!r}")
        _need(0 < self.at <= 1, f"check {self.name!r}: at must be in (0, 1], got {self.at}")


@dataclass(frozen=True)
class Protocol:
    name: str
    task: str
    claim: str  # the paper's statement, in words
    source: str  # "paper [confirmed]", "paper [inferred]", "Muon follow-up", "companion", ...
    arms: tuple
    tuning: Tuning
    eval_seeds: tuple
    hypotheses: tuple
    checks: tuple = ()
    notes: str = ""  # the companion's own choices the result depends on
    alpha: float = stats.ALPHA  # one-sided level of every test
    power: float = stats.POWER  # of the MDE
    rule: str = stats.RULE  # the decision rule in words (stats.decide), hashed with the rest

    def __post_init__(self):
        _need(0 < self.alpha < 0.5 and 0 < self.power < 1, f"protocol {self.name!r}: alpha in (0, 0.5), power in (0, 1)")
        for f in ("arms", "hypotheses", "checks"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        object.__setattr__(self, "eval_seeds", tuple(int(s) for s in self.eval_seeds))
        _need(self.task in TASKS, f"protocol {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        names = [a.name for a in self.arms]
        _need(len(set(names)) == len(names), f"protocol {self.name!r}: arm names must be unique, got {names}")
        _need(len(set(self.eval_seeds)) >= MIN_EVAL_SEEDS and len(set(self.eval_seeds)) == len(self.eval_seeds),
              f"protocol {self.name!r}: needs >= {MIN_EVAL_SEEDS} distinct evaluation seeds, got {self.eval_seeds}")
        _need(not set(self.eval_seeds) & set(self.tuning.seeds),
              f"protocol {self.name!r}: evaluation seeds {self.eval_seeds} must differ from tuning seeds {self.tuning.seeds}")
        for a in self.arms:
            _need(not a.lr_from or a.lr_from in names, f"arm {a.name!r}: lr_from {a.lr_from!r} is not an arm of {self.name!r}")
        checks = [c.name for c in self.checks]
        _need(len(set(checks)) == len(checks), f"protocol {self.name!r}: check names must be unique")
        tuned = {a.name for a in self.arms if a.tune}
        for c in self.checks:
            _need(set(c.arms) <= set(names), f"check {c.name!r}: unknown arms {sorted(set(c.arms) - set(names))}")
            _need(c.kind != "interior" or set(c.arms) <= tuned, f"check {c.name!r}: only tuned arms have a grid, not "
                  f"{sorted(set(c.arms) - tuned)}")
        for h in self.hypotheses:
            _need(set(h.checks) <= set(checks), f"hypothesis {h.name!r}: unknown checks {sorted(set(h.checks) - set(checks))}")
            for c in h.contrasts:
                unknown = {a for a, _ in c.weights} - set(names)
                _need(not unknown, f"hypothesis {h.name!r}: unknown arms {sorted(unknown)}")

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def to_dict(self) -> dict:
        d = json.loads(json.dumps(asdict(self)))  # tuples -> lists
        for a in d["arms"]:
            a["spec"] = dict(a["spec"])  # stored as sorted (key, value) pairs; written as the partial spec it is
        return d

    def canonical(self) -> str:
        """The hashed form: sorted keys, no whitespace, floats as Python's repr, ASCII."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> Protocol:
        def build(klass, value):
            return klass(**{f.name: value[f.name] for f in fields(klass) if f.name in value})

        def metric(m):
            return build(Metric, m)

        return cls(
            name=d["name"], task=d["task"], claim=d["claim"], source=d["source"], notes=d["notes"],
            alpha=d["alpha"], power=d["power"], rule=d["rule"],
            arms=[build(Arm, a) for a in d["arms"]],
            tuning=build(Tuning, {**d["tuning"], "metric": metric(d["tuning"]["metric"])}),
            eval_seeds=d["eval_seeds"],
            hypotheses=[build(Hypothesis, {**h, "contrasts": [build(Contrast, {**c, "metric": metric(c["metric"])})
                                                              for c in h["contrasts"]]}) for h in d["hypotheses"]],
            checks=[build(Check, c) for c in d["checks"]])


class ProtocolChanged(RuntimeError):
    """A protocol differs from its committed registration (or has none)."""


def _path(name: str, folder: Path) -> Path:
    return Path(folder) / f"{name}.json"


def register(protocol: Protocol, folder: Path = PROTOCOL_DIR, replace: bool = False) -> Path:
    """Write `<folder>/<name>.json` ({"name", "hash", "protocol"}), before any of its runs. An existing
    file with another hash is refused unless `replace`: its records were made under the old hash."""
    path = _path(protocol.name, folder)
    if path.exists() and not replace:
        old = json.loads(path.read_text())["hash"]
        if old != protocol.hash:
            raise ProtocolChanged(f"protocol {protocol.name!r} is registered with hash {old}, this one hashes to "
                                  f"{protocol.hash}: pass replace=True to register the change (records made under {old} "
                                  "will then be refused and must be run again)")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"name": protocol.name, "hash": protocol.hash, "protocol": protocol.to_dict()}, indent=1, sort_keys=True)
    path.write_text(text + "\n")
    return path


def registered(name: str, folder: Path = PROTOCOL_DIR) -> Protocol:
    """The committed protocol `name`, rebuilt from its file (its stored hash is verified)."""
    path = _path(name, folder)
    if not path.exists():
        raise ProtocolChanged(f"protocol {name!r} is not registered: no {path} (register it before its runs)")
    d = json.loads(path.read_text())
    protocol = Protocol.from_dict(d["protocol"])
    if protocol.hash != d["hash"]:
        raise ProtocolChanged(f"{path}: its content hashes to {protocol.hash}, the file says {d['hash']} (edited by hand?)")
    return protocol


def check_registered(protocol: Protocol, folder: Path = PROTOCOL_DIR) -> None:
    """Raise ProtocolChanged unless `protocol` is exactly the committed one."""
    committed = registered(protocol.name, folder)
    if committed.hash != protocol.hash:
        raise ProtocolChanged(f"protocol {protocol.name!r} hashes to {protocol.hash}, the committed one to {committed.hash}: "
                              "register the change (a new hash; its runs are made again) or restore the committed protocol")


def stamp(record: dict, protocol: Protocol) -> dict:
    """`record` with `protocols[name] = hash` added: the registered protocol the run was made under.
    The driver stamps a record when it trains it for a protocol; the analysis refuses other stamps."""
    return {**record, "protocols": {**record.get("protocols", {}), protocol.name: protocol.hash}}
