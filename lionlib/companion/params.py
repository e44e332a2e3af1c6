"""The `parameters` cell of a notebook, read the way papermill reads it, and `-p` overrides checked against it.

One reading of the cell serves three readers: `papermill --help-notebook` (which lists each
parameter with the type it finds in an annotation, `STEPS: Optional[int] = None`, or a
`# type: int` comment), the driver's `--list`, and the driver's check of `-p NAME VALUE`. The cell
is parsed with `ast`, not with papermill's line parser, so a value over several lines or a comment
holding "=" never loses a parameter here; `papermill_problems` says which lines papermill itself
would skip, so a test can keep every notebook's cell readable by both.

Conventions of a parameters cell (what `tests/test_reproduce.py` enforces on every notebook):
one assignment per line, an annotation on each (`typing.Optional` for "None or ..." since papermill
cannot read `int | None`), no second "=" on a line (comments included), and the help text as a
trailing comment.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

__all__ = ["parameters_cell", "notebook_parameters", "papermill_problems", "parse_value", "check_value",
           "RANGES", "NUMERIC", "in_range", "check_range", "check_overrides", "ParameterError", "annotate_cell",
           "annotate_notebook", "main"]

_TYPE_COMMENT = re.compile(r"#\s*type:\s*(?P<type>\S+)\s*(?P<help>.*)$")


class ParameterError(ValueError):
    """A `-p` override that no selected notebook can take; the message says how to fix it."""


def parameters_cell(path: Path) -> str | None:
    """Source of the cell tagged `parameters` of a jupytext `.py` or an `.ipynb` (None if it has none)."""
    import jupytext

    cell = next((c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])), None)
    return None if cell is None else cell.source


def notebook_parameters(path: Path) -> dict[str, dict]:
    """name -> {"default": source text, "type": annotation text or None, "help": trailing comment}.

    "type" is what papermill shows: the annotation as written, else a `# type:` comment, else None.
    """
    src = parameters_cell(path)
    return {} if src is None else parse_cell(src)


def parse_cell(src: str) -> dict[str, dict]:
    params, lines = {}, src.splitlines()
    for node in ast.parse(src).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        rest = lines[node.end_lineno - 1][node.end_col_offset:].strip()
        type_, help_ = None, rest[1:].strip() if rest.startswith("#") else ""
        if m := _TYPE_COMMENT.match(rest):
            type_, help_ = m["type"], m["help"].strip()
        if isinstance(node, ast.AnnAssign):
            type_ = ast.get_source_segment(src, node.annotation).strip("\"'")
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(target, ast.Name):
                params[target.id] = {"default": ast.get_source_segment(src, node.value), "type": type_, "help": help_}
            elif isinstance(target, ast.Tuple):  # A, B = 1, 2
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [None] * len(target.elts)
                for t, v in zip(target.elts, values):
                    if isinstance(t, ast.Name):
                        params[t.id] = {"default": ast.get_source_segment(src, v) if v else "?", "type": None,
                                        "help": help_}
    return params


def papermill_problems(src: str) -> list[str]:
    """What papermill's Python translator does not read in this cell: lines it skips with "Unable to
    parse line" (a second "="), parameters it does not find, parameters it types as "None" (unknown)."""
    import logging

    from papermill.translators import PythonTranslator

    problems = [f"line {i}: a second '=' (papermill skips the line): {line.strip()}"
                for i, line in enumerate(src.splitlines(), 1)
                if not line.strip().startswith("#") and line.count("=") > 1]
    log = logging.getLogger("papermill.translators")
    level, log.level = log.level, logging.ERROR  # its warnings are the problems listed here
    try:
        seen = {p.name: p for p in PythonTranslator.inspect({"source": src})}
    finally:
        log.setLevel(level)
    for name, p in parse_cell(src).items():
        if name not in seen:
            problems.append(f"{name}: papermill does not find this parameter (one name per line, please)")
        elif seen[name].inferred_type_name in ("None", ""):
            problems.append(f"{name}: no type for papermill (annotate it: `{name}: int = ...`)")
        elif seen[name].inferred_type_name != p["type"]:
            problems.append(f"{name}: papermill reads type {seen[name].inferred_type_name!r}, the driver {p['type']!r}")
    return problems


def parse_value(text: str):
    """`-p key=value` values: Python literals (1, 0.5, None, "x", [1, 2]) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


_SIMPLE = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "dict": (dict,),
           "list": (list, tuple), "tuple": (list, tuple), "None": (type(None),), "NoneType": (type(None),)}


def check_value(value, type_text: str | None) -> bool:
    """Does `value` fit the annotation text `type_text`? Unknown annotations accept anything."""
    if not type_text:
        return True
    try:
        node = ast.parse(type_text, mode="eval").body
    except SyntaxError:
        return True
    return _fits(value, node)


def _fits(value, node) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return value is None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _fits(value, node.left) or _fits(value, node.right)
    if isinstance(node, ast.Name):
        types = _SIMPLE.get(node.id)
        if types is None:
            return True
        return isinstance(value, types) and not (node.id in ("int", "float") and isinstance(value, bool))
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if node.value.id == "Optional":
            return value is None or _fits(value, args[0])
        if node.value.id == "Union":
            return any(_fits(value, a) for a in args)
        if node.value.id in ("tuple", "list"):
            if not isinstance(value, (list, tuple)):
                return False
            if node.value.id == "tuple" and not (len(args) == 2 and isinstance(args[1], ast.Constant)
                                                 and args[1].value is Ellipsis):
                return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
            return all(_fits(v, args[0]) for v in value)
        if node.value.id == "dict":
            return isinstance(value, dict)
    return True


# The range of every numeric parameter (int, float, Optional[...] of them) of the notebooks, by name:
# one declaration for every notebook that uses the name, beside the types read from their parameters
# cells. Interval notation, "inf" unbounded. tests/test_params.py keeps this table and the notebooks'
# cells in step (each numeric parameter has a range, each range a parameter, each default is in it).
RANGES = {
    "SEED": "[0, inf)", "N_SEEDS": "[2, inf)", "MAX_RUNS": "[1, inf)",  # a 95 % t interval needs two seeds
    "STEPS": "[1, inf)", "TAIL": "[1, inf)", "MD_STEPS": "[1, inf)", "NS_STEPS": "[1, inf)", "N_STATES": "[1, inf)",
    "T_END": "(0, inf)",
    "DIM": "[1, inf)", "N_SAMPLES": "[1, inf)", "ROWS": "[1, inf)", "COLS": "[1, inf)",
    "CPU_SIZE_M": "[1, inf)", "GPU_SIZE_M": "[1, inf)",
    "LR": "(0, inf)", "LR_FIXED": "(0, inf)", "ODE_LR": "(0, inf)", "RATE_EPS0": "(0, inf)", "FD_STEP": "(0, inf)", "TOL": "(0, inf)",
    "BETA": "[0, 1)", "MU": "[0, 1)", "MOMENTUM": "[0, 1)",
    "WEIGHT_DECAY": "[0, inf)", "LAM": "(0, inf)", "MD_LAM": "(0, inf)",
    "ALPHA": "(0, inf)", "GAMMA": "(0, inf)", "EPS": "(0, inf)", "EPS_NESTEROV": "(0, inf)", "DELTA": "(0, inf)",
    "SIGMA_TRUE": "(0, inf)", "SIGMA_START": "(0, inf)", "SIGMA_FIXED": "[0, inf)",
    "WAVY_AMP": "[0, inf)", "WAVY_FREQ": "(0, inf)", "LP_P": "[1, inf)",  # p < 1 is not a norm
    "MUON_STEPS": "[1, inf)", "MUON_LR": "(0, inf)", "NOISE": "[0, inf)", "START_RANGE": "(0, inf)",
}
NUMERIC = {"int", "float", "Optional[int]", "Optional[float]"}  # the annotations RANGES must cover

_INTERVAL = re.compile(r"^([\[(])\s*(\S+?)\s*,\s*(\S+?)\s*([\])])$")


def in_range(value, interval: str) -> bool:
    """Is the number `value` in `interval` ("[1, inf)", "(0, 1]")?"""
    m = _INTERVAL.match(interval)
    if m is None:
        raise ValueError(f"bad interval {interval!r}: write it as [a, b], (a, b), [a, b) or (a, b]")
    lo, hi = float(m[2]), float(m[3])
    return (value >= lo if m[1] == "[" else value > lo) and (value <= hi if m[4] == "]" else value < hi)


def check_range(name: str, value) -> str | None:
    """None if `value` is in the declared range of parameter `name` (or `name` has none), else the problem."""
    interval = RANGES.get(name)
    if interval is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if in_range(value, interval) else f"-p {name} {value!r} is out of range: {name} takes values in {interval}"


def check_overrides(overrides: dict, declared: dict[str, dict[str, dict]]) -> None:
    """Raise ParameterError unless every override is a parameter of some selected notebook
    (case-sensitive), fits its annotation there and lies in its declared range (`RANGES`). `declared`: notebook -> notebook_parameters."""
    names = sorted({n for params in declared.values() for n in params})
    for key, value in overrides.items():
        where = {nb: params[key] for nb, params in declared.items() if key in params}
        if not where:
            same_case = [n for n in names if n.lower() == key.lower()]
            close = same_case or difflib.get_close_matches(key, names, n=3)
            if close:
                raise ParameterError(f"unknown parameter {key!r}; did you mean {' or '.join(close)}? "
                                     f"(names are case-sensitive; see --list)")
            raise ParameterError(f"unknown parameter {key!r}; the selected notebooks take {', '.join(names)} "
                                 f"(see --list)")
        for nb, p in where.items():
            if not check_value(value, p["type"]):
                raise ParameterError(f"-p {key}: {nb} takes {p['type']} (default {p['default']}), got {value!r}")
        if problem := check_range(key, value):
            raise ParameterError(f"{problem} (default {next(iter(where.values()))['default']}; see --list)")


_PATHLIKE = ("DIR", "PATH", "FILE", "RESULTS", "MANIFEST")
_ASSIGN = re.compile(r"^(?P<name>[A-Za-z_]\w*) = (?P<value>.*?)(?P<comment>\s+#.*)?$")


def _annotation(name: str, value: str, comment: str) -> str | None:
    """The annotation a default implies; None when it cannot be told (a human chooses)."""
    if value.startswith("os.environ.get("):
        return "str"
    try:
        v = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    if v is None:
        if any(name.endswith(p) for p in _PATHLIKE):
            return "Optional[str]"
        numbers = re.findall(r"None\s*->\s*(-?[\d.e]+)", comment or "")
        if numbers:
            return "Optional[float]" if any("." in n or "e" in n for n in numbers) else "Optional[int]"
        return None
    for t in (bool, int, float, str, dict):
        if isinstance(v, t):
            return t.__name__
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return "tuple[float, float]"
    if isinstance(v, list) and v and all(isinstance(x, float) for x in v):
        return "list[float]"
    return type(v).__name__ if isinstance(v, (tuple, list)) else None


def _dict_literal(value: str) -> str:
    """`dict(lr=0.1, wd=2.0)` -> `{"lr": 0.1, "wd": 2.0}` (a call papermill would skip), else as is."""
    try:
        node = ast.parse(value, mode="eval").body
    except SyntaxError:
        return value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args
            and all(k.arg for k in node.keywords)):
        return "{" + ", ".join(f'"{k.arg}": {ast.unparse(k.value)}' for k in node.keywords) + "}"
    return value


def annotate_cell(src: str) -> tuple[str, list[str]]:
    """Mechanical edit of a parameters cell so papermill reads it: an annotation on each one-line
    assignment (from its default), `dict(k=v)` as a literal, `<=`/`>=`/`!=` in comments as ≤/≥/≠.
    Returns the new source and what is left for a human (then see `papermill_problems`)."""
    out, todo = [], []
    for line in src.splitlines():
        m = _ASSIGN.match(line)
        if m:
            comment = (m["comment"] or "").replace("<=", "≤").replace(">=", "≥").replace("!=", "≠")
            value = _dict_literal(m["value"])
            ann = _annotation(m["name"], value, comment)
            if ann is None:
                todo.append(f"{m['name']}: annotate by hand (default {value})")
                ann_text = ""
            else:
                ann_text = f": {ann}"
            line = f"{m['name']}{ann_text} = {value}{comment}"
        out.append(line)
    text = "\n".join(out) + ("\n" if src.endswith("\n") else "")
    if "Optional[" in text and "from typing import Optional" not in text:
        text = ("from typing import Optional\n" + text) if "import os\n" not in text else \
            text.replace("import os\n", "import os\nfrom typing import Optional\n", 1)
    todo += [p for p in papermill_problems(text) if "no type" not in p]
    return text, todo


def annotate_notebook(py: Path) -> list[str]:
    """Apply `annotate_cell` to the parameters cell of a jupytext `.py` in place; returns the to-do list."""
    text = Path(py).read_text()
    marker = '# %% tags=["parameters"]\n'
    if marker not in text:
        return [f"{py}: no parameters cell"]
    start = text.index(marker) + len(marker)
    end = text.find("\n# %%", start)
    end = len(text) if end < 0 else end + 1
    new, todo = annotate_cell(text[start:end])
    Path(py).write_text(text[:start] + new + text[end:])
    return [f"{Path(py).name}: {t}" for t in todo]


def main(argv=None) -> int:
    """`python -m lionlib.companion.params --annotate notebooks/*.py`: annotate parameters cells in place,
    print what is left for a human; then `python -m lionlib.companion.reproduce --sync-parameters-cells`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m lionlib.companion.params", description=main.__doc__)
    parser.add_argument("--annotate", nargs="+", type=Path, required=True, metavar="NOTEBOOK.py")
    todo = [t for py in parser.parse_args(argv).annotate for t in annotate_notebook(py)]
    print("\n".join(todo) or "every parameter is readable by papermill")
    return 1 if todo else 0


if __name__ == "__main__":
    raise SystemExit(main())
