"""What every notebook of the companion uses to save figures and state its claims.

A notebook creates one `Report` (`lionlib.companion.notebook.start` does it in one line), saves each
figure through `report.savefig` (a deterministic PNG in its results folder, recorded against the paper
element it reproduces, one of `ELEMENTS`) and states each claim as one of four kinds:

- a **check** (`report.check`): a property the maths or the code guarantees, as a value, a
  comparison and a threshold, so PASS/FAIL is computed, never typed. Its slack is a named tolerance
  `tol` with its reason `why` (e.g. "float64 rounding of 3000 steps"): the verdict is
  `value <= threshold + tol` (for `>=`, `value >= threshold - tol`; for `==`, `|value - threshold| <= tol`),
  so no constant hides in a denominator. A check must pass: `lionlib.companion.reproduce` exits
  non-zero when one fails. `sanity=True` labels the checks that only say training works.
  `across` is how closely its value is promised on another CPU model (`verify.Tolerance`, with
  its reason); on the same CPU model the promise is the same bits.
- a **finding** (`report.finding`): an empirical statement, of the paper or of this companion,
  measured under a `Protocol` written in the notebook before the runs. Its per-seed effects give a
  mean, a 95 % t interval and a verdict (`lionlib.companion.stats`): `reproduced`, `not reproduced`
  or `inconclusive at this scale`. A finding never fails a run. A finding of a registered protocol
  (`lionlib.companion.protocol_analysis.analyse`) is recorded as computed there, with `primary`,
  `mde`, `sesoi` and its Holm-adjusted verdict beside the raw one (`report.protocol_finding`).
- an **identity** (`report.identity`): a relation that holds by construction (an algebraic rewriting
  of the update, a telescoped sum). It is computed and shown, so a broken implementation shows it,
  but it is no evidence for the paper and is never counted as a check passed.
- an **illustration** (`report.illustration`): a number shown to the reader (a fitted slope, a count),
  not tested against anything.

Checks and findings are written to the claims file's `claims` list; identities and illustrations to
their own lists (`identities`, `illustrations`), so nothing that counts checks counts them.

Its last cells are

    # NBVAL_IGNORE_OUTPUT
    report.table()          # every number, machine-dependent ones included

    # NBVAL_CHECK_OUTPUT
    report.summary()        # one PASS/FAIL line per check; writes claims/<notebook>.json

nbval compares the text of the last cell with the committed notebook, so that text must not depend on
the machine or on the scale. That is why it lists checks only and counts the findings: a finding's
numbers and verdict depend on the scale and the seeds, so they are shown by `report.findings()` in a
cell whose output nbval ignores (and in `table()`). For checks: values of claims marked `stable=False` (losses, timings) are not printed
there, and stable values are printed rounded with `fmt`. A value that changes with the scale
(smoke/cpu/paper) must be marked `stable=False` too. `lionlib.companion.reproduce` collects
`claims/*.json` into `manifest.json`.

Where the files go (`default_out_dir`): run directly (Jupyter, papermill, nbval) a notebook writes
under `build/` (or `$LIONLIB_OUT_DIR`); the committed `paper_figures/` changes only through the
driver's cpu-scale run, which promotes a notebook's files once it has succeeded. Every file is
written atomically, and each claims file records how it was made (`run`: scale, parameters, lionlib
version, git commit, environment; see `lionlib.companion.manifest.run_record`).
"""

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import matplotlib

from lionlib.companion import stats
from lionlib.companion.claims import OPS, Claim, Finding, Illustration, Protocol, _float, _fmt, _json_num, decide
from lionlib.companion.elements import check_element
from lionlib.companion.manifest import SCALES, run_record, write_atomic
from lionlib.companion.paths import BUILD, NOTEBOOKS, REPO
from lionlib.companion.verify import FLOAT64, Tolerance

__all__ = ["Report", "Claim", "Finding", "Illustration", "Protocol", "Tolerance", "decide", "setup_plotting", "default_out_dir",
           "check_parameters"]

DPI = 150  # fixed so the PNG bytes do not depend on the display's or the user's rcParams


def default_out_dir(scale: str | None = None) -> Path:
    """Where a notebook's figures and claims go when it passes OUT_DIR=None: `$LIONLIB_OUT_DIR` if set
    (relative paths from the repo root; the test suite and the driver set it), else
    `build/paper_figures/<scale>/`. Never the committed `paper_figures/`: only the driver's cpu-scale
    run writes there, by promoting a notebook's results once it has succeeded
    (`lionlib.companion.manifest`), so a direct papermill or Jupyter run cannot overwrite them."""
    env = os.environ.get("LIONLIB_OUT_DIR")
    if env:
        return REPO / env  # REPO / an absolute path is that absolute path
    return BUILD / "paper_figures" / (scale or _notebook_scale())


def _user_namespace() -> dict:
    """The variables of the running notebook (its parameters cell included), or {} outside Jupyter."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    return getattr(ip, "user_ns", None) or {}


def _notebook_scale() -> str:
    """The notebook's SCALE (after papermill's injection), else `$LIONLIB_SCALE`, else cpu."""
    scale = _user_namespace().get("SCALE") or os.environ.get("LIONLIB_SCALE") or "cpu"
    return str(scale)


def _jsonable(x):
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    if isinstance(x, float):
        return _json_num(x)
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return repr(x)


NOT_RECORDED = ("OUT_DIR", "MANIFEST")  # where results go is not a parameter of the results


def _parameters_source(notebook: str) -> Path | None:
    candidates = [Path.cwd() / f"{notebook}.py", Path.cwd() / f"{notebook}.ipynb", NOTEBOOKS / f"{notebook}.py"]
    return next((p for p in candidates if p.exists()), None)


def _injected_names(ns: dict) -> list[str]:
    """Names assigned by papermill's injected cell (its source starts with "# Parameters"), if any."""
    import ast

    names = []
    for src in ns.get("In", []):
        if isinstance(src, str) and src.startswith("# Parameters\n"):
            try:
                tree = ast.parse(src)
            except SyntaxError:
                continue
            names += [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                      if isinstance(t, ast.Name)]
    return names


def check_parameters(notebook: str, scale: str) -> None:
    """Refuse what papermill only warns about: `papermill X.ipynb out.ipynb -p scale smoke` injects a
    `scale` that the notebook never reads, and it would run at its default scale. A name papermill
    injected that the parameters cell does not declare, or an unknown scale, is a ValueError naming
    the parameter (and the declared name it differs from by case, if any)."""
    import difflib

    from lionlib.companion.params import notebook_parameters

    if scale not in SCALES:
        raise ValueError(f"SCALE must be one of {', '.join(SCALES)}, got {scale!r}")
    ns, source = _user_namespace(), _parameters_source(notebook)
    injected = _injected_names(ns) if ns else []
    if not injected or source is None:
        return
    try:
        declared = list(notebook_parameters(source))
    except ImportError:  # jupytext (the notebooks extra) missing: nothing to compare with
        return
    wrong = [n for n in injected if n not in declared]
    if wrong:
        def hint(n):
            close = [d for d in declared if d.lower() == n.lower()] or difflib.get_close_matches(n, declared, n=2)
            return f"; did you mean {' or '.join(close)}?" if close else ""
        raise ValueError("; ".join(f"{n!r} is not a parameter of {notebook}{hint(n)}" for n in wrong)
                         + f" (parameter names are case-sensitive; this notebook takes {', '.join(declared)})")


def _notebook_parameters(notebook: str) -> dict:
    """The values, as the notebook ran, of the names its parameters cell declares. The cell is read from
    `<name>.py` or `<name>.ipynb` in the working directory (Jupyter and papermill run a notebook in its
    own folder), else from `notebooks/<name>.py`."""
    from lionlib.companion.params import notebook_parameters

    ns, source = _user_namespace(), _parameters_source(notebook)
    if source is None or not ns:
        return {}
    try:
        names = notebook_parameters(source)
    except ImportError:  # jupytext (the notebooks extra) missing: the run record says so
        return {"unrecorded": "jupytext is not installed"}
    return {k: _jsonable(ns[k]) for k in names if k in ns and k not in NOT_RECORDED}


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (papermill and nbval included), where inline figures are wanted."""
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"



def setup_plotting() -> None:
    """The companion's figure style. Scripts get the headless Agg backend; notebooks keep inline."""
    if not _in_notebook():
        matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams["savefig.dpi"] = DPI


def _decide_sesoi(effects: list[float], sesoi: float, test: str) -> str:
    """stats.decide for one contrast: superiority (H: effect > 0; against: effect < sesoi) or
    non-inferiority (H: effect > -sesoi; against: effect < -sesoi), MDE from the effects' SD."""
    if not sesoi > 0 or test not in ("superiority", "non-inferiority"):
        raise ValueError(f"sesoi must be > 0 and test 'superiority' or 'non-inferiority', got {sesoi!r}, {test!r}")
    bound = 0.0 if test == "superiority" else -sesoi
    against = stats.p_less(effects, sesoi if test == "superiority" else -sesoi)
    return stats.decide(stats.p_greater(effects, bound), against, n=len(effects),
                        mde=stats.mde(stats.sd(effects), len(effects)), sesoi=sesoi)


class Report:
    """Figures and claims of one notebook.

    `out_dir=None` writes to `default_out_dir()`: `$LIONLIB_OUT_DIR` if set, else
    `build/paper_figures/<scale>/`. `scale=None` reads the notebook's `SCALE` variable (its parameters
    cell, after papermill's injection), else `$LIONLIB_SCALE`, else cpu. The claims file records the
    scale, the values of the parameters-cell names and the environment (`manifest.run_record`);
    `parameters=None` reads those values from the notebook's namespace.
    """

    def __init__(self, notebook: str, out_dir: str | Path | None = None, scale: str | None = None,
                 parameters: dict | None = None):
        self.notebook = notebook
        self.scale = scale or _notebook_scale()
        check_parameters(notebook, self.scale)
        self.parameters = parameters
        self.out_dir = Path(out_dir) if out_dir else default_out_dir(self.scale)
        self.claims: dict[tuple[str, str], Claim] = {}  # keyed so re-running a cell replaces, not duplicates
        self.found: dict[tuple[str, str], Finding] = {}
        self.shown: dict[tuple[str, str], Illustration] = {}
        self.protocol_found: dict[tuple[str, str], dict] = {}  # findings of protocol_analysis.analyse
        self.figures: dict[str, list[str]] = {}  # element -> file names relative to out_dir

    def savefig(self, fig, name: str, *, element: str) -> Path:
        """Save `fig` as `<out_dir>/<name>.png` with no timestamp or version in its metadata."""
        check_element(element)
        if Path(name).suffix or "/" in name:
            raise ValueError(f"name must be a bare file stem (the figure is always PNG), got {name!r}")
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight",  # the PNG says which run made it
                    metadata={"Software": None, "Source": f"lionlib companion {self.notebook}, scale {self.scale}"})
        path = write_atomic(self.out_dir / f"{name}.png", buf.getvalue())
        files = self.figures.setdefault(element, [])
        if path.name not in files:
            files.append(path.name)
        return path

    def check(self, element: str, claim: str, value, op: str, threshold, fmt: str = ".3g",
              stable: bool = True, sanity: bool = False, *, tol: float = 0.0, why: str = "",
              across: Tolerance | None = None, scaled: bool = False) -> bool:
        """Record `value op threshold` (slack `tol`, for the reason `why`) as a check about `element`
        and return the verdict (NaN fails). `across`: the tolerance promised on another CPU model
        (default `verify.FLOAT64`, widened to `tol` in absolute terms). `scaled=True`: the threshold
        depends on the scale, so the checked summary hides it (like the value of `stable=False`)."""
        return self._record(element, claim, value, op, threshold, fmt, stable, "sanity" if sanity else "check",
                            tol, why, across, scaled)

    def identity(self, element: str, claim: str, value, op: str, threshold, fmt: str = ".3g", stable: bool = False,
                 *, tol: float = 0.0, why: str = "", across: Tolerance | None = None) -> bool:
        """Record a relation that holds by construction (shown as HOLDS/BROKEN, never counted as a check)."""
        return self._record(element, claim, value, op, threshold, fmt, stable, "identity", tol, why, across, False)

    def illustration(self, element: str, claim: str, value, fmt: str = ".3g", stable: bool = False,
                     across: Tolerance | None = None) -> float:
        """Record a number that is shown, not tested (a fitted slope, a count of steps)."""
        check_element(element)
        value, across = _float(value), across or FLOAT64
        self.shown[(element, claim)] = Illustration(element, claim, value, stable, fmt,
                                                    {"rtol": across.rtol, "atol": across.atol, "why": across.why})
        return value

    def _record(self, element, claim, value, op, threshold, fmt, stable, kind, tol, why, across, scaled) -> bool:
        check_element(element)
        if op not in OPS:
            raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
        if tol < 0 or (tol > 0 and not why):
            raise ValueError(f"{claim!r}: a tolerance must be >= 0 and state its reason (why=...), got tol={tol!r}")
        value, threshold = _float(value), _float(threshold)
        verdict = decide(value, op, threshold, tol)
        across = across or FLOAT64
        across = {"rtol": across.rtol, "atol": max(across.atol, tol), "why": across.why}
        self.claims[(element, claim)] = Claim(element, claim, value, op, threshold, verdict, stable, fmt, kind, tol,
                                              why, across, scaled)
        return verdict

    def finding(self, element: str, claim: str, effects: Sequence[float], *, protocol: Protocol,
                fmt: str = ".3g", across: Tolerance | None = None, sesoi: float | None = None,
                test: str = "superiority") -> str:
        """Record a finding about `element` from per-seed `effects` (signed so that the protocol's
        hypothesis predicts > 0) and return its verdict. Never fails the run. With `sesoi` (the
        smallest effect of interest, or the margin of a `test="non-inferiority"`) the verdict is
        `stats.decide`'s (one of `stats.DECISIONS`), else the older interval rule (`stats.verdict`)."""
        check_element(element)
        if not isinstance(protocol, Protocol):
            raise TypeError(f"protocol must be a lionlib.companion.report.Protocol, got {type(protocol).__name__}")
        effects = [_float(e) for e in effects]
        if len(effects) != len(protocol.seeds):
            raise ValueError(f"{claim!r}: {len(effects)} effects for the protocol's {len(protocol.seeds)} seeds")
        ci = stats.t_interval(effects)
        verdict = stats.verdict(ci) if sesoi is None else _decide_sesoi(effects, sesoi, test)
        across = across or FLOAT64
        self.found[(element, claim)] = Finding(element, claim, effects, ci.mean, ci.low, ci.high, ci.n, verdict,
                                               protocol, fmt, {"rtol": across.rtol, "atol": across.atol,
                                                               "why": across.why})
        return verdict

    def protocol_finding(self, element: str, finding: dict) -> str:
        """Record a finding of `protocol_analysis.analyse` about `element`, its numbers and verdicts as
        computed there (raw and, for a primary finding, Holm-adjusted); returns the verdict that counts."""
        keep = ("primary", "test", "mde", "mde_from", "sesoi", "margin", "p", "p_against", "p_holm", "verdict_holm",
                "units", "label", "reason", "checks_pass", "protocol_hash")
        self.protocol_found[(element, finding["hypothesis"])] = dict(
            element=element, claim=finding["hypothesis"], kind="finding", verdict=finding["verdict"],
            mean=finding["effect"], ci_low=finding["ci_low"], ci_high=finding["ci_high"], n=finding["n"],
            effects=list(finding["effects"]), **{k: finding[k] for k in keep},
            protocol=dict(name=finding["protocol"], hypothesis=finding["hypothesis"], seeds=list(finding["seeds"]),
                          metric=f"{finding['label']} ({finding['units']})", unit=finding["units"],
                          source=finding["source"], design="paired", decision_rule=stats.RULE))
        return finding["verdict_holm"] if finding["primary"] else finding["verdict"]

    def findings(self):
        """Every finding with its effect, interval, verdict and protocol, as a DataFrame (varies with
        the scale and the seeds, so shown in a cell whose output nbval ignores)."""
        import pandas as pd

        cols = ["element", "claim", "verdict", "mean", "ci_low", "ci_high", "n", "hypothesis", "metric"]
        rows = [{**{k: getattr(f, k) for k in cols[:7]}, "hypothesis": f.protocol.hypothesis, "metric": f.protocol.metric}
                for f in self.found.values()]
        rows += [{**{k: f[k] for k in cols[:7]}, "hypothesis": f["claim"], "metric": f["protocol"]["metric"]}
                 for f in self.protocol_found.values()]
        return pd.DataFrame(rows, columns=cols)

    def sentence(self, claim: str) -> str:
        """The finding `claim` (its claim text) as one Markdown sentence with its verdict and numbers, so
        prose states a result by rendering it, never by typing it."""
        f = next((f for f in self.found.values() if f.claim == claim), None)
        if f is None:
            raise KeyError(f"no finding {claim!r} recorded yet; recorded: {[f.claim for f in self.found.values()]}")
        return (f"**{f.verdict}**: {f.claim} (mean effect {_fmt(f.mean, f.fmt)}, 95 % interval "
                f"({_fmt(f.ci_low, f.fmt)}, {_fmt(f.ci_high, f.fmt)}), {f.n} seeds; {f.protocol.metric}).")

    def value(self, claim: str) -> float:
        """The value of the check, identity or illustration whose claim text is `claim`."""
        for c in [*self.claims.values(), *self.shown.values()]:
            if c.claim == claim:
                return c.value
        raise KeyError(f"no claim {claim!r} recorded")

    def table(self):
        """All checks, identities and illustrations with their full-precision values, as a DataFrame
        (for the reader, not for nbval)."""
        import pandas as pd

        cols = ["element", "claim", "kind", "value", "op", "threshold", "tol", "verdict", "stable"]
        rows = [asdict(c) for c in self.claims.values()]
        rows += [{**asdict(i), "op": None, "threshold": None, "tol": None, "verdict": None} for i in self.shown.values()]
        return pd.DataFrame(rows, columns=cols + ["fmt"])[cols]

    def summary(self) -> None:
        """Print one PASS/FAIL line per check (then the identities and illustrations, not counted),
        count the findings, and write `<out_dir>/claims/<notebook>.json`."""
        checks = [c for c in self.claims.values() if c.kind != "identity"]
        identities = [c for c in self.claims.values() if c.kind == "identity"]
        for c in checks:
            print(c.line())
        print(f"{sum(c.verdict for c in checks)}/{len(checks)} claims pass")  # the words nbval compares in every notebook
        for c in [*identities, *self.shown.values()]:
            print(c.line())
        if self.found or self.protocol_found:
            print(f"{len(self.found) + len(self.protocol_found)} findings recorded (verdicts in report.findings() and the manifest)")
        findings = [{**{k: _json_num(v) for k, v in asdict(f).items() if k not in ("fmt", "protocol", "effects")},
                     "effects": [_json_num(e) for e in f.effects], "protocol": asdict(f.protocol)}
                    for f in self.found.values()] + [_jsonable(f) for f in self.protocol_found.values()]
        parameters = self.parameters if self.parameters is not None else _notebook_parameters(self.notebook)

        def row(c):
            return {k: _json_num(v) for k, v in asdict(c).items() if k != "fmt"}

        record = {
            "notebook": self.notebook,
            "run": run_record(self.scale, _jsonable(parameters)),
            "claims": [row(c) for c in checks] + findings,
            "identities": [row(c) for c in identities],
            "illustrations": [row(c) for c in self.shown.values()],
            "figures": self.figures,
        }
        write_atomic(self.out_dir / "claims" / f"{self.notebook}.json", json.dumps(record, indent=1, sort_keys=True) + "\n")
