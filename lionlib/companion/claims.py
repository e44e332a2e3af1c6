"""The kinds of claim a companion notebook states, as records: `Claim` (a check, a sanity check or an
identity), `Illustration`, `Finding` and the `Protocol` a finding is measured under; and `decide`,
the one comparison every check and identity goes through (a named slack on the lenient side).
`lionlib.companion.report.Report` creates them; see its module for what each kind means.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

from lionlib.companion import stats

__all__ = ["OPS", "Claim", "Illustration", "Finding", "Protocol", "decide"]

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


@dataclass
class Claim:
    element: str  # the paper element it supports: "Figure 1", "Theorem 3.1", ... (one of ELEMENTS)
    claim: str  # what is asserted, in words
    value: float
    op: str
    threshold: float
    verdict: bool
    stable: bool  # False: the value may differ between machines or scales; summary() hides it
    fmt: str = ".3g"
    kind: str = "check"  # "check", "sanity" (training works; not a paper claim) or "identity"
    tol: float = 0.0  # slack added to the threshold in the lenient direction
    why: str = ""  # the reason for tol (required when tol > 0)
    across: dict | None = None  # {"rtol", "atol", "why"}: how close the value is promised on another CPU model
    scaled: bool = False  # True: the threshold depends on the scale (e.g. 10x a rest after T steps); summary hides it

    def line(self) -> str:
        value = _fmt(self.value, self.fmt) if self.stable else "<varies>"
        threshold = "<scaled>" if self.scaled else _fmt(self.threshold, self.fmt)
        tag = {"sanity": "  (sanity check)", "identity": "  (true by construction; not counted)"}.get(self.kind, "")
        word = ("HOLDS" if self.verdict else "BROKEN") if self.kind == "identity" else ("PASS" if self.verdict else "FAIL")
        slack = f" + {self.tol:.0e}" if self.tol and self.op in ("<=", "<") else (
            f" - {self.tol:.0e}" if self.tol and self.op in (">=", ">") else (f" +- {self.tol:.0e}" if self.tol else ""))
        return f"{word}  {self.element}: {self.claim}  [{value} {self.op} {threshold}{slack}]{tag}"


@dataclass
class Illustration:
    element: str
    claim: str
    value: float
    stable: bool = False
    fmt: str = ".3g"
    across: dict | None = None  # {"rtol", "atol", "why"}: how close the value is promised on another CPU model
    kind: str = field(default="illustration", init=False)

    def line(self) -> str:
        value = _fmt(self.value, self.fmt) if self.stable else "<varies>"
        return f"SHOWN  {self.element}: {self.claim}  [{value}]  (illustration; not tested)"


def decide(value: float, op: str, threshold: float, tol: float = 0.0) -> bool:
    """`value op threshold` with the slack `tol` on the lenient side (NaN is False)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    if math.isnan(value):
        return False
    if op == "==":
        return abs(value - threshold) <= tol if tol else value == threshold
    limit = threshold + tol if op in ("<=", "<") else threshold - tol
    return bool(OPS[op](value, limit))


@dataclass(frozen=True)
class Protocol:
    """How a finding is measured, fixed before the numbers (and recorded with them in the manifest).

    hypothesis: the statement tested, with its direction, e.g. "p = 1 beats p = 2 on the ViT";
        the effects passed to `Report.finding` are signed so that it predicts a positive effect.
    metric: what one effect is, e.g. "final test accuracy (p=1) - (p=2), percentage points".
    seeds: the seeds run (at least 5 at the cpu scale for a decision).
    design: "paired" (per-seed differences of two arms sharing a seed) or "unpaired".
    source: where the hypothesis comes from: "paper [confirmed]", "paper [inferred]", "companion".
    choices: the companion's own settings the result depends on (grids, step scales, decayed tensors).
    """

    hypothesis: str
    metric: str
    seeds: tuple[int, ...]
    design: str = "paired"
    source: str = "paper [inferred]"
    choices: str = ""
    decision_rule: str = ("95 % t interval of the mean effect over seeds: above 0 -> reproduced, "
                          "below 0 -> not reproduced, else inconclusive at this scale (always "
                          f"inconclusive with fewer than {stats.MIN_SEEDS} seeds)")

    def __post_init__(self):
        if self.design not in ("paired", "unpaired"):
            raise ValueError(f"design must be 'paired' or 'unpaired', got {self.design!r}")
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))


@dataclass
class Finding:
    element: str
    claim: str
    effects: list[float]
    mean: float
    ci_low: float
    ci_high: float
    n: int
    verdict: str  # one of stats.VERDICTS
    protocol: Protocol
    fmt: str = ".3g"
    across: dict | None = None  # {"rtol", "atol", "why"}: how close the effects are promised on another CPU model
    kind: str = field(default="finding", init=False)

    def line(self) -> str:
        return (f"{self.verdict.upper()}  {self.element}: {self.claim}  [effect {_fmt(self.mean, self.fmt)}, "
                f"95% CI ({_fmt(self.ci_low, self.fmt)}, {_fmt(self.ci_high, self.fmt)}), n={self.n}]")


def _fmt(x: float, fmt: str) -> str:
    s = format(x, fmt)
    # -0 and 0 are the same claim; rounding a tiny negative number must not change the checked text
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def _json_num(x):
    """Strict JSON has no NaN or infinity: write them as null."""
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _float(x) -> float:
    """Accept Python numbers, numpy scalars and 0-d torch tensors."""
    return float(x.item()) if hasattr(x, "item") else float(x)
