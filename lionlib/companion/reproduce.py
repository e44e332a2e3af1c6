"""Re-run the companion's notebooks with papermill: `python -m lionlib.companion.reproduce` (what `make reproduce` calls).

    python -m lionlib.companion.reproduce --list                      # notebooks, paper elements, parameters
    python -m lionlib.companion.reproduce                             # all notebooks at the cpu scale -> build/notebooks/
    python -m lionlib.companion.reproduce --only 01_box_constraint,06_muon --scale smoke -p SEED=1
    python -m lionlib.companion.reproduce --update-notebooks          # refresh the committed notebooks/X.ipynb outputs
    python -m lionlib.companion.reproduce --check-sync                # CI: every notebooks/X.ipynb matches its X.py

The jupytext `.py` is the source of truth: each run converts it to a fresh ipynb (kernel `python3`),
injects the parameters (always `SCALE`), executes it with `cwd=notebooks/`, and writes the executed
notebook to `build/notebooks/`. With `--update-notebooks` the result, stripped of the injected
parameters cell, the papermill error banner and all papermill/timing metadata, replaces the committed
`notebooks/X.ipynb`, whose inputs then equal the `.py` exactly (what `--check-sync` verifies).
A failing notebook does not stop the others; the run then names the notebook, the cell and the error
and exits non-zero, as it does when a claim of a notebook fails.
Finally the claims the notebooks wrote (`paper_figures/claims/*.json`, see `lionlib.companion.report`) are
collected into `paper_figures/manifest.json`: paper element -> notebook, figure files, claim verdicts.
"""

import argparse
import ast
import copy
import difflib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lionlib.companion.paths import BUILD, NOTEBOOKS
from lionlib.companion.report import default_out_dir

__all__ = ["SCALES", "REGISTRY", "Entry", "Result", "discover", "registry_entry", "notebook_parameters", "run_notebook", "check_sync", "write_manifest", "main"]

SCALES = ("smoke", "cpu", "paper")
RUN_METADATA = ("papermill", "execution", "ExecuteTime")  # per-run cell metadata, never committed
DROP_TAGS = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill adds


@dataclass(frozen=True)
class Entry:
    """A notebook of the companion: the paper elements it reproduces and its expected minutes per scale."""
    name: str
    elements: tuple[str, ...]
    minutes: dict[str, float] = field(default_factory=dict)  # scale -> expected wall time
    reads_manifest: bool = False  # run after the others, once the manifest exists


REGISTRY = [  # minutes: wall time measured through this driver on the 2-core dev box (under load); {} = not yet
    Entry("00_index", ("Companion map",), {"smoke": 0.2, "cpu": 0.2}, reads_manifest=True),
    Entry("01_box_constraint", ("Figure 1",), {"smoke": 0.6, "cpu": 1.6}),
    Entry("02_continuous_lyapunov", ("Theorem 3.1",), {"smoke": 0.6, "cpu": 0.5}),
    Entry("03_discrete_lyapunov", ("Theorem 4.1", "Theorem B.9"), {"smoke": 0.6, "cpu": 0.7}),
    Entry("04_lionk_family", ("Table 2", "Figure 4"), {"smoke": 0.6, "cpu": 1.1}),
    Entry("05_connections", ("Section 3.1",), {"smoke": 0.5, "cpu": 1.2}),
    Entry("06_muon", ("Muon note",), {"smoke": 0.4, "cpu": 0.6}),
    Entry("11_table2_toy", ("Figure 4", "Figure 1 (lambda, decay scheme)", "Gradient enhancement (Section 3.1)"),
          {"cpu": 2.4}),
    Entry("12_mirror_classical", ("Section 3.1 (mirror descent)", "Section 3.1 (classical ODEs)"), {"cpu": 1.2}),
    Entry("13_stochastic_rate", ("Stochastic gradients (arXiv v2+)", "Theorem 4.1 (rate)"), {"cpu": 0.7}),
    Entry("cifar10", ("Section 5 (CIFAR-10)",), {"smoke": 0.8, "cpu": 8.1}),
    Entry("gpt", ("Section 5 (GPT-2)",), {"smoke": 0.4, "cpu": 8.7}),
    Entry("fused_update", ("Fused kernel",)),
    Entry("distributed", ("Distributed Lion (arXiv 2404.00438)",), {"smoke": 0.5, "cpu": 3.0}),
]


def registry_entry(stem: str) -> Entry:
    """The registry entry of a notebook file; `07_cifar10` matches `cifar10`. Unknown notebooks still run."""
    for e in REGISTRY:
        if stem == e.name or (stem.split("_", 1)[-1] == e.name and stem.split("_", 1)[0].isdigit()):
            return e
    return Entry(stem, ())


def discover(notebooks_dir: Path = NOTEBOOKS) -> list[Path]:
    """Every `NN_name.py` notebook, in run order: by name, manifest readers (the index) last."""
    paths = sorted(notebooks_dir.glob("*.py"))
    return sorted(paths, key=lambda p: registry_entry(p.stem).reads_manifest)


def to_ipynb(py: Path, dest: Path) -> Path:
    """Convert a jupytext `.py` into a fresh ipynb with the `python3` kernel, as papermill needs."""
    import jupytext

    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


def notebook_parameters(py: Path) -> dict[str, dict]:
    """The parameters cell of a notebook: name -> {"default": source text, "help": trailing comment}.

    Parsed with `ast` rather than papermill's line parser, which skips any line with a second "="
    (in a comment, or `dict(lr=...)`) and tuple assignments such as `A, B = 1, 2`.
    """
    import jupytext

    cell = next((c for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    src, params = cell.source, {}
    lines = src.splitlines()
    for node in ast.parse(src).body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        rest = lines[node.end_lineno - 1][node.end_col_offset:].strip()
        help_ = rest[1:].strip() if rest.startswith("#") else ""
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if isinstance(target, ast.Name):
                params[target.id] = {"default": ast.get_source_segment(src, node.value), "help": help_}
            elif isinstance(target, ast.Tuple):  # A, B = 1, 2
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [None] * len(target.elts)
                for t, v in zip(target.elts, values):
                    if isinstance(t, ast.Name):
                        params[t.id] = {"default": ast.get_source_segment(src, v) if v else "?", "help": help_}
    return params


def parse_value(text: str):
    """`-p key=value` values: Python literals (1, 0.5, None, "x", [1, 2]) or else a plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def clean_executed(nb) -> None:
    """Make an executed notebook committable: drop papermill's cells, per-run metadata, Python version."""
    nb.cells = [c for c in nb.cells if not DROP_TAGS & set(c.metadata.get("tags", []))]
    for c in nb.cells:
        for key in RUN_METADATA:
            c.metadata.pop(key, None)
    nb.metadata.pop("papermill", None)
    nb.metadata.get("language_info", {}).pop("version", None)
    for i, c in enumerate(nb.cells):  # stable ids: the committed file changes only where its content does
        c.id = f"cell-{i:03d}"


@dataclass
class Result:
    name: str
    seconds: float
    error: str | None = None  # "cell 7 (In [6]): ValueError: ..." when the notebook failed
    failed_claims: list[str] = field(default_factory=list)


def _source_cell_index(nb, cell_index: int) -> int:
    """Index in the .py (0-based, markdown cells counted) of a cell of the executed notebook."""
    return cell_index - sum(1 for c in nb.cells[:cell_index] if DROP_TAGS & set(c.metadata.get("tags", [])))


def run_notebook(py: Path, parameters: dict, build_dir: Path, *, update: bool = False, out_dir: Path | None = None,
                 cell_timeout: int | None = None, log_output: bool = False) -> Result:
    """Execute one notebook into `build_dir/<name>.ipynb` (and, with `update`, back next to its `.py`)."""
    import nbformat
    import papermill as pm

    build_dir.mkdir(parents=True, exist_ok=True)
    out_dir = out_dir or default_out_dir()
    claims = out_dir / "claims" / f"{py.stem}.json"
    claims.unlink(missing_ok=True)  # so a notebook that fails leaves no stale verdicts in the manifest
    output = build_dir / f"{py.stem}.ipynb"
    start = time.perf_counter()
    error = None
    with tempfile.TemporaryDirectory() as tmp:
        source = to_ipynb(py, Path(tmp) / f"{py.stem}.ipynb")
        try:
            pm.execute_notebook(source, output, parameters=parameters, kernel_name="python3", cwd=str(py.parent),
                                progress_bar=False, log_output=log_output, execution_timeout=cell_timeout)
        except pm.PapermillExecutionError as e:
            executed = nbformat.read(output, as_version=4)
            banner = 1 if executed.cells and "papermill-error-cell-tag" in executed.cells[0].metadata.get("tags", []) else 0
            index = _source_cell_index(executed, e.cell_index + banner)
            first = next((line for line in e.source.splitlines() if line.strip()), "")
            error = f"cell {index} (In [{e.exec_count}]) `{first[:60]}`: {e.ename}: {e.evalue}".strip()
        except Exception as e:  # dead kernel, timeout, bad notebook: still report and keep going
            error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - start
    result = Result(py.stem, seconds, error)
    if error is None:
        if update:
            nb = nbformat.read(output, as_version=4)
            clean_executed(nb)
            nbformat.write(nb, py.with_suffix(".ipynb"))
        if claims.exists():
            record = json.loads(claims.read_text())
            result.failed_claims = [f"{c['element']}: {c['claim']}" for c in record["claims"]
                                    if c.get("kind", "check") != "finding" and not c["verdict"]]
    return result


def write_manifest(out_dir: Path, entries: list[Entry]) -> Path:
    """Collect `<out_dir>/claims/*.json` into `<out_dir>/manifest.json` (sorted, no timestamps)."""
    elements: dict[str, dict] = {}

    def element(name):
        return elements.setdefault(name, {"notebooks": [], "figures": [], "claims": []})

    for e in entries:
        for name in e.elements:
            element(name)["notebooks"].append(e.name)
    notebooks = {}
    for path in sorted((out_dir / "claims").glob("*.json")):
        record = json.loads(path.read_text())
        nb = record["notebook"]
        claims = record["claims"]
        checks = [c for c in claims if c.get("kind", "check") != "finding"]
        notebooks[nb] = {"claims": len(checks), "passed": sum(c["verdict"] for c in checks),
                         "findings": len(claims) - len(checks)}
        for name, files in record["figures"].items():
            el = element(name)
            el["figures"] += [f for f in files if f not in el["figures"]]
            el["notebooks"] += [nb] if nb not in el["notebooks"] else []
        for c in claims:
            el = element(c["element"])
            kind = c.get("kind", "check")
            if kind == "finding":  # the verdict is already a word; keep the numbers and the protocol
                el["claims"].append({k: c[k] for k in ("claim", "verdict", "mean", "ci_low", "ci_high", "n",
                                                        "effects", "protocol")} | {"notebook": nb, "kind": kind})
            else:
                el["claims"].append({k: c[k] for k in ("claim", "value", "op", "threshold", "stable")}
                                    | {"notebook": nb, "kind": kind, "verdict": "PASS" if c["verdict"] else "FAIL"})
            el["notebooks"] += [nb] if nb not in el["notebooks"] else []
    for el in elements.values():
        el["notebooks"] = sorted(set(el["notebooks"]))
        el["figures"] = sorted(el["figures"])
    manifest = out_dir / "manifest.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"elements": elements, "notebooks": notebooks}, indent=1, sort_keys=True) + "\n")
    return manifest


def check_sync(notebooks_dir: Path = NOTEBOOKS) -> list[str]:
    """Problems with the committed pairs: a missing `.ipynb`, or inputs that differ from the `.py`.

    Each `.py` is converted with `jupytext --to ipynb --update` into a temporary copy of its committed
    ipynb (the documented recipe; jupytext's config is honoured), and the cell types, sources and
    metadata are compared. Timestamps are never consulted.
    """
    import jupytext
    import nbformat
    from jupytext.cli import jupytext as jupytext_cli
    from jupytext.config import find_jupytext_configuration_file

    problems = []
    config = find_jupytext_configuration_file(str(notebooks_dir))
    stems = {p.stem for p in notebooks_dir.glob("*.py")}
    problems += [f"{s}.ipynb has no paired {s}.py" for s in sorted({p.stem for p in notebooks_dir.glob("*.ipynb")} - stems)]
    for py in sorted(notebooks_dir.glob("*.py")):
        committed = py.with_suffix(".ipynb")
        if not committed.exists():
            problems.append(f"{py.name} has no paired {committed.name} (run python -m lionlib.companion.reproduce "
                            f"--only {py.stem} --update-notebooks)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            if config:
                shutil.copy(config, Path(tmp) / Path(config).name)
            shutil.copy(py, Path(tmp) / py.name)
            shutil.copy(committed, Path(tmp) / committed.name)
            jupytext_cli(["--to", "ipynb", "--update", "--quiet", str(Path(tmp) / py.name)])
            expected = nbformat.read(Path(tmp) / committed.name, as_version=4)
        actual = nbformat.read(committed, as_version=4)
        problems += [f"{committed.name}: {d}" for d in _diff_cells(expected, actual)]
        problems += [f"{committed.name}: cell {i} has run metadata {sorted(set(c.metadata) & set(RUN_METADATA))}"
                     for i, c in enumerate(actual.cells) if set(c.metadata) & set(RUN_METADATA)]
        if "papermill" in actual.metadata:
            problems.append(f"{committed.name}: notebook metadata has a papermill record")
        kernel = actual.metadata.get("kernelspec", {}).get("name")
        if kernel != "python3":
            problems.append(f"{committed.name}: kernel is {kernel!r}, not 'python3'")
    return problems


def _diff_cells(expected, actual) -> list[str]:
    """Describe how the committed notebook's cells differ from those jupytext makes from the `.py`."""
    def key(c):
        return c.cell_type, c.source, json.dumps(dict(c.metadata), sort_keys=True)

    exp, act = [key(c) for c in expected.cells], [key(c) for c in actual.cells]
    if exp == act:
        return []
    out = [f"{len(act)} cells committed, {len(exp)} in the .py"] if len(exp) != len(act) else []
    for i, (e, a) in enumerate(zip(exp, act)):
        if e != a:
            what = "type" if e[0] != a[0] else "source" if e[1] != a[1] else "metadata"
            diff = difflib.unified_diff(a[1].splitlines(), e[1].splitlines(), "ipynb", "py", lineterm="", n=0)
            detail = "; ".join(list(diff)[2:6]) if what == "source" else f"{a[2]} != {e[2]}" if what == "metadata" else ""
            out.append(f"cell {i} {what} differs from the .py {detail}".rstrip())
            break  # the first difference is enough to know the pair must be refreshed
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lionlib.companion.reproduce", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list notebooks, paper elements and parameters")
    parser.add_argument("--only", default="", help="comma-separated notebook names (default: all)")
    parser.add_argument("--scale", choices=SCALES, default="cpu", help="problem sizes (default: cpu)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="override a parameter in every selected notebook that declares it")
    parser.add_argument("--update-notebooks", action="store_true",
                        help="write the executed notebooks back to notebooks/X.ipynb (the committed outputs)")
    parser.add_argument("--build-dir", type=Path, default=BUILD / "notebooks")
    parser.add_argument("--out-dir", type=Path, default=None, help="figures/claims/manifest (default paper_figures/ or $LIONLIB_OUT_DIR)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--log-output", action="store_true", help="stream cell outputs while running")
    parser.add_argument("--check-sync", action="store_true", help="check each notebooks/X.ipynb against its X.py")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.check_sync:
        problems = check_sync(args.notebooks_dir)
        for p in problems:
            print(f"OUT OF SYNC  {p}")
        print(f"{len(problems)} problem(s) in {len(list(args.notebooks_dir.glob('*.py')))} notebook pairs")
        return 1 if problems else 0

    paths = discover(args.notebooks_dir)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in {p.stem for p in paths}]
        if unknown:
            parser.error(f"unknown notebook(s) {unknown}; available: {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in wanted]

    if args.list:
        for py in paths:
            e = registry_entry(py.stem)
            minutes = ", ".join(f"{s} ~{e.minutes[s]:g} min" for s in SCALES if s in e.minutes) or "time not recorded"
            print(f"{py.stem}  [{', '.join(e.elements) or 'not in the registry'}]  ({minutes})")
            for name, p in notebook_parameters(py).items():
                print(f"    {name} = {p['default']}" + (f"  # {p['help']}" if p["help"] else ""))
        return 0

    overrides = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-p takes KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value)
    if args.update_notebooks and overrides:
        # the committed outputs must be those of the .py as written (the injected cell is removed)
        parser.error("--update-notebooks runs the notebooks with their own defaults; drop -p")
    out_dir = args.out_dir or default_out_dir()
    declared = {py: notebook_parameters(py) for py in paths}
    for key in overrides:
        if not any(key in d for d in declared.values()):
            parser.error(f"no selected notebook has a parameter {key!r}")

    from tqdm.auto import tqdm

    results = []
    readers = [p for p in paths if registry_entry(p.stem).reads_manifest]
    bar = tqdm(paths, unit="notebook", file=sys.stderr)
    for py in bar:
        bar.set_postfix_str(py.stem)
        if py == next(iter(readers), None):
            write_manifest(out_dir, REGISTRY)  # the index reads the verdicts of this run
        params = {"SCALE": args.scale} | ({"OUT_DIR": str(out_dir)} if args.out_dir else {}) | overrides
        params = {k: v for k, v in params.items() if k in declared[py]}
        r = run_notebook(py, params, args.build_dir, update=args.update_notebooks, out_dir=out_dir,
                         cell_timeout=args.cell_timeout, log_output=args.log_output)
        expected = registry_entry(py.stem).minutes.get(args.scale)
        tqdm.write(f"{'ok  ' if r.error is None and not r.failed_claims else 'FAIL'}  {py.stem:28s} "
                   f"{r.seconds:7.1f} s" + (f"  (expected ~{expected * 60:.0f} s)" if expected else ""), file=sys.stdout)
        results.append(r)
    manifest = write_manifest(out_dir, REGISTRY)

    print(f"\nscale={args.scale}; executed notebooks in {args.build_dir}; manifest {manifest}")
    if args.update_notebooks:
        print(f"updated the committed notebooks in {args.notebooks_dir}")
    failed = [r for r in results if r.error or r.failed_claims]
    for r in failed:
        if r.error:
            print(f"FAILED {r.name}: {r.error}  (see {args.build_dir / (r.name + '.ipynb')})")
        for c in r.failed_claims:
            print(f"FAILED {r.name}: claim failed: {c}")
    print(f"{len(results) - len(failed)}/{len(results)} notebooks ran with every claim passing "
          f"in {sum(r.seconds for r in results):.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
