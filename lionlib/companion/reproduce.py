"""Re-run the companion's notebooks with papermill: `python -m lionlib.companion.reproduce` (what `make reproduce` calls).

    python -m lionlib.companion.reproduce --list                      # notebooks, paper elements, parameters
    python -m lionlib.companion.reproduce                             # all notebooks at the cpu scale
    python -m lionlib.companion.reproduce --only 01_box_constraint,06_muon --scale smoke -p SEED 1
    python -m lionlib.companion.reproduce --update-notebooks          # refresh the committed notebooks/X.ipynb outputs
    python -m lionlib.companion.reproduce --verify --only 02_continuous_lyapunov   # same numbers as committed?
    python -m lionlib.companion.reproduce --check-sync                # CI: every notebooks/X.ipynb matches its X.py

What a run writes, and where (nothing else is touched):
- the executed notebooks: `build/notebooks/<name>.ipynb` (`--build-dir`);
- figures, `claims/<name>.json` and `manifest.json`: into the results folder of the run. That is the
  committed `paper_figures/` for the cpu scale with the notebooks' own parameters, and
  `build/paper_figures/<scale>/` for any other scale or any `-p` override (`--out-dir` chooses another).
  Each notebook runs into a staging folder (`build/notebooks/.staging/<name>/`); its files are copied
  into the results folder, one atomic replace each, only when it ran to its end (a failed check is
  copied too: it is a result the reader must see, and the run exits 1).
  A notebook that fails, or a Ctrl-C, leaves the results folder as it was (the staged files stay for
  inspection), and the manifest is rebuilt from what the folder then holds.
- with `--update-notebooks` (cpu scale only): the committed `notebooks/X.ipynb`, stripped of the
  injected parameters cell, papermill's banner and all run metadata, so its inputs equal the `.py`.

Each notebook's kernel gets a fixed thread count (`Entry.threads`, `--threads`: OMP_NUM_THREADS and
MKL_NUM_THREADS, which torch reads at start-up) and PYTHONHASHSEED=0; its claims file records them with
the scale, the parameters, the lionlib version, the git commit and the machine (`manifest.run_record`).
`--verify` re-runs notebooks at the scale of their committed claims, writes nothing but `build/`, and
compares the new claims with the committed ones (`lionlib.companion.verify`: exact for the float64
notebooks, within a stated tolerance for the trainings). A failing notebook does not stop the others;
the run names the notebook, the cell and the error and exits non-zero, as it does when a check fails.
Findings never fail a run.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lionlib.companion.children import Terminated, end_groups, record_group, signals_as_interrupt
from lionlib.companion.manifest import (COMMITTED_SCALE, SCALES, MixedScales, clear_staging, git_commit, promote,
                                        results_dir, write_atomic, write_manifest)
from lionlib.companion.params import ParameterError, check_overrides, notebook_parameters, parse_value
from lionlib.companion.paths import BUILD, NOTEBOOKS, PAPER_FIGURES, require_notebooks
from lionlib.companion.preflight import OneLineParser, check_environment, check_folders, dirty_promotion, positive
from lionlib.companion.sync import (DROP_TAGS, RUN_METADATA, check_outputs, check_sync, clean_executed,
                                    sync_parameters_cell, to_ipynb)

__all__ = ["SCALES", "DEFAULT_THREADS", "REGISTRY", "Entry", "Result", "discover", "registry_entry",
           "notebook_parameters", "parse_overrides", "kernel_environment", "run_notebook", "check_sync",
           "clean_executed", "write_manifest", "main", "DROP_TAGS", "RUN_METADATA"]

DEFAULT_THREADS = 2  # the dev box's core count, with which the committed results were made


@dataclass(frozen=True)
class Entry:
    """A notebook of the companion: the paper elements it reproduces and its expected minutes per scale."""
    name: str
    elements: tuple[str, ...]
    minutes: dict[str, float] = field(default_factory=dict)  # scale -> expected wall time
    reads_manifest: bool = False  # run after the others, once the manifest exists
    threads: int = DEFAULT_THREADS  # torch/OpenMP/MKL threads of its kernel: fixed, so its numbers are too


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
    Entry("14_cautious", ("Cautious optimizers (arXiv 2411.16085)", "Cautious weight decay (arXiv 2510.12402)"), {"smoke": 0.6, "cpu": 1.2}),
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


@dataclass
class Result:
    name: str
    seconds: float
    error: str | None = None  # "cell 7 (In [6]): ValueError: ..." when the notebook failed
    failed_claims: list[str] = field(default_factory=list)
    staging: Path | None = None  # where the run wrote its figures and claims
    promoted: bool = False  # copied into the results folder


def _source_cell_index(nb, cell_index: int) -> int:
    """Index in the .py (0-based, markdown cells counted) of a cell of the executed notebook."""
    return cell_index - sum(1 for c in nb.cells[:cell_index] if DROP_TAGS & set(c.metadata.get("tags", [])))


def kernel_environment(staging: Path, scale: str, threads: int) -> dict[str, str]:
    """Environment variables of a notebook's kernel: results into `staging`, the scale, fixed threads."""
    return {"LIONLIB_OUT_DIR": str(staging), "LIONLIB_SCALE": scale, "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}


def _ipc_kernel_manager(socket_dir: str):
    """A kernel manager on IPC sockets in `socket_dir`: a local kernel needs no TCP port, and ipykernel
    then skips its "running over TCP without encryption" warning."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            return str(Path(socket_dir) / "kernel")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            record_group(getattr(self.provisioner, "pgid", None))  # ended with the driver (children.py)

    return IPCKernelManager


def run_notebook(py: Path, parameters: dict, build_dir: Path, *, update: bool = False, out_dir: Path | None = None,
                 cell_timeout: int | None = None, log_output: bool = False, threads: int | None = None,
                 promote_results: bool = True, progress: dict | bool = False) -> Result:
    """Execute one notebook into `build_dir/<name>.ipynb`, its figures and claims into a staging folder,
    and, if it ran to its end, copy them into `out_dir` (and, with `update`, write the executed notebook
    back next to its `.py`). An error, a dead kernel or Ctrl-C leaves `out_dir` untouched. A failed
    check is a result, not a failure to run: it is copied (the reader must see it) and reported.
    `progress`: papermill's cell bar (True, or tqdm's arguments), on the driver's stderr."""
    import nbformat
    import papermill as pm

    build_dir.mkdir(parents=True, exist_ok=True)
    scale = str(parameters.get("SCALE", COMMITTED_SCALE))
    out_dir = Path(out_dir or parameters.get("OUT_DIR") or results_dir(scale))
    staging = clear_staging(build_dir / ".staging" / py.stem)
    if "OUT_DIR" in parameters:  # the notebook writes into staging; out_dir receives the files after
        parameters = parameters | {"OUT_DIR": str(staging)}
    threads = threads or registry_entry(py.stem).threads
    output = build_dir / f"{py.stem}.ipynb"
    start = time.perf_counter()
    error = None
    saved = {k: os.environ.get(k) for k in kernel_environment(staging, scale, threads)}
    os.environ.update(kernel_environment(staging, scale, threads))  # the kernel inherits them
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = to_ipynb(py, Path(tmp) / f"{py.stem}.ipynb")
            try:
                pm.execute_notebook(source, output, parameters=parameters, kernel_name="python3", cwd=str(py.parent),
                                    progress_bar=progress, log_output=log_output, execution_timeout=cell_timeout,
                                    kernel_manager_class=_ipc_kernel_manager(tmp))
            except pm.PapermillExecutionError as e:
                executed = nbformat.read(output, as_version=4)
                banner = 1 if executed.cells and "papermill-error-cell-tag" in executed.cells[0].metadata.get("tags", []) else 0
                index = _source_cell_index(executed, e.cell_index + banner)
                first = next((line for line in e.source.splitlines() if line.strip()), "")
                error = f"cell {index} (In [{e.exec_count}]) `{first[:60]}`: {e.ename}: {e.evalue}".strip()
            except Exception as e:  # dead kernel, timeout, bad notebook: still report and keep going
                error = f"{type(e).__name__}: {e}"
    finally:
        end_groups()  # what is left of the kernel's process group (a worker that outlived it)
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    result = Result(py.stem, time.perf_counter() - start, error, staging=staging)
    claims = staging / "claims" / f"{py.stem}.json"
    if error is None and claims.exists():
        record = json.loads(claims.read_text())
        result.failed_claims = [f"{c['element']}: {c['claim']}" for c in record["claims"]
                                if c.get("kind", "check") != "finding" and not c["verdict"]]
    if error is None:  # ran to its end: a result, also when a check failed (reported, and the run exits 1)
        if promote_results:
            try:
                promote(staging, out_dir, py.stem)
                result.promoted = True
            except MixedScales as e:
                result.error = str(e)
            except OSError as e:  # a results folder that went away or filled up during the run
                result.error = f"could not copy the results into {out_dir}: {e}"
        if update and result.error is None:
            nb = nbformat.read(output, as_version=4)
            clean_executed(nb)
            write_atomic(py.with_suffix(".ipynb"), nbformat.writes(nb) + "\n")
    return result


def parse_overrides(items: list[list[str]]) -> dict:
    """`-p NAME VALUE` (papermill's form) or `-p NAME=VALUE`, values read as Python literals."""
    overrides = {}
    for item in items:
        if len(item) == 1 and "=" in item[0]:
            key, _, value = item[0].partition("=")
        elif len(item) == 2:
            key, value = item
        else:
            raise ParameterError(f"-p takes NAME VALUE or NAME=VALUE, got {' '.join(item)!r}")
        overrides[key.strip()] = parse_value(value)
    return overrides


def _print_results(results: list[Result], args, out_dir: Path, manifest: Path | None) -> int:
    print(f"\nscale={args.scale}; executed notebooks in {args.build_dir}; results in {out_dir}"
          + (f"; manifest {manifest}" if manifest else ""))
    if args.update_notebooks:
        print(f"updated the committed notebooks in {args.notebooks_dir} (those that succeeded)")
    failed = [r for r in results if r.error or r.failed_claims]
    for r in failed:
        if r.error:
            print(f"FAILED {r.name}: {r.error}  (see {args.build_dir / (r.name + '.ipynb')})")
        for c in r.failed_claims:
            print(f"FAILED {r.name}: check failed: {c}")
        if not r.promoted:
            print(f"       {r.name}: nothing copied to {out_dir}; this run's files are in {r.staging}")
    print(f"{len(results) - len(failed)}/{len(results)} notebooks ran with every check passing "
          f"in {sum(r.seconds for r in results):.1f} s")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m lionlib.companion.reproduce", description=__doc__.split("\n\n")[0],
                           epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="list notebooks, paper elements and parameters")
    parser.add_argument("--only", default="", help="comma-separated notebook names (default: all)")
    parser.add_argument("--scale", choices=SCALES, default=None, help="problem sizes (default: cpu)")
    parser.add_argument("-p", "--param", action="append", nargs="+", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter (NAME VALUE or NAME=VALUE; names are case-sensitive)")
    parser.add_argument("--update-notebooks", action="store_true",
                        help="write the executed notebooks back to notebooks/X.ipynb (cpu scale only)")
    parser.add_argument("--verify", action="store_true", help="re-run at the committed scale into build/ and "
                        "compare the claims with the committed ones (exit 1 on a difference)")
    parser.add_argument("--threads", type=positive, default=None, help="threads of every kernel (default: per notebook, "
                        f"{DEFAULT_THREADS})")
    parser.add_argument("--build-dir", type=Path, default=BUILD / "notebooks")
    parser.add_argument("--out-dir", type=Path, default=None, help="results folder (default: paper_figures/ for "
                        "the cpu scale without -p, else build/paper_figures/<scale>/)")
    parser.add_argument("--cell-timeout", type=positive, default=None, help="seconds per cell (default: none)")
    parser.add_argument("--log-output", action="store_true", help="stream cell outputs while running")
    parser.add_argument("--check-sync", action="store_true", help="check each notebooks/X.ipynb against its X.py "
                        "(inputs) and its claims file (outputs)")
    parser.add_argument("--write-manifest", action="store_true", help="only rebuild the results folder's "
                        "manifest.json from its claims/*.json (after merging claims files)")
    parser.add_argument("--sync-parameters-cells", action="store_true", help="copy each X.py's parameters cell "
                        "into X.ipynb without running it (after a mechanical edit of that cell only)")
    parser.add_argument("--notebooks-dir", type=Path, default=NOTEBOOKS, help=argparse.SUPPRESS)
    parser.add_argument("--committed-dir", type=Path, default=PAPER_FIGURES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    missing = None if args.write_manifest else require_notebooks(args.notebooks_dir)
    if missing:  # an installed lionlib, or a wrong folder: say so, never "nothing to do"
        print(f"{parser.prog}: {missing}", file=sys.stderr)
        return 2

    if args.check_sync:
        problems = check_sync(args.notebooks_dir) + check_outputs(args.notebooks_dir, args.committed_dir / "claims")
        for p in problems:
            print(f"OUT OF SYNC  {p}")
        print(f"{len(problems)} problem(s) in {len(list(args.notebooks_dir.glob('*.py')))} notebook pairs")
        return 1 if problems else 0

    if args.sync_parameters_cells:
        for py in sorted(args.notebooks_dir.glob("*.py")):
            if py.with_suffix(".ipynb").exists() and sync_parameters_cell(py):
                print(f"parameters cell copied into {py.with_suffix('.ipynb').name}")
        return 0

    paths = discover(args.notebooks_dir)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in {p.stem for p in paths}]
        if unknown:
            parser.error(f"unknown notebook(s) {unknown}; available: {[p.stem for p in paths]}")
        paths = [p for p in paths if p.stem in wanted]
    declared = {py.stem: notebook_parameters(py) for py in paths}

    if args.list:
        for py in paths:
            e = registry_entry(py.stem)
            minutes = ", ".join(f"{s} ~{e.minutes[s]:g} min" for s in SCALES if s in e.minutes) or "time not recorded"
            print(f"{py.stem}  [{', '.join(e.elements) or 'not in the registry'}]  ({minutes}; {e.threads} threads)")
            for name, p in declared[py.stem].items():
                print(f"    {name}: {p['type'] or '?'} = {p['default']}" + (f"  # {p['help']}" if p["help"] else ""))
        return 0

    try:
        overrides = parse_overrides(args.param)
        scale = overrides.pop("SCALE", None)
        if scale is not None and scale not in SCALES:
            raise ParameterError(f"-p SCALE: unknown scale {scale!r}; the scales are {', '.join(SCALES)} "
                                 f"(or use --scale)")
        if scale is not None and args.scale not in (None, scale):
            raise ParameterError(f"--scale {args.scale} and -p SCALE {scale} disagree; give one")
        args.scale = scale or args.scale or COMMITTED_SCALE
        if "OUT_DIR" in overrides:  # where results go is the driver's choice: the same as --out-dir
            value = overrides.pop("OUT_DIR")
            args.out_dir = Path(value) if value else args.out_dir
        check_overrides(overrides, declared)
        check_environment(overrides)
    except ParameterError as e:
        parser.error(str(e))
    if args.update_notebooks and (overrides or args.scale != COMMITTED_SCALE):
        # the committed outputs are those of the .py as written, at the committed scale
        parser.error(f"--update-notebooks writes the committed outputs: the {COMMITTED_SCALE} scale and the "
                     f"notebooks' own parameters only (drop -p / --scale)")
    if args.write_manifest:
        folder = args.out_dir or (args.committed_dir if args.scale == COMMITTED_SCALE else
                                  args.build_dir.parent / "paper_figures" / args.scale)
        manifest = _manifest_or_none(folder)
        print(f"wrote {manifest}" if manifest else f"no manifest written for {folder}")
        return 0 if manifest else 1
    if args.verify:
        from lionlib.companion.verify import verify_notebooks

        check_folders(parser, {"--build-dir": args.build_dir})
        with signals_as_interrupt():
            return verify_notebooks(paths, args, registry_entry, run_notebook)
    if args.out_dir:
        out_dir = args.out_dir
    elif args.scale == COMMITTED_SCALE and not overrides:
        out_dir = args.committed_dir  # paper_figures/: the committed results
    else:
        out_dir = args.build_dir.parent / "paper_figures" / args.scale  # build/paper_figures/<scale>/
    out_dir = Path(out_dir).expanduser().absolute()  # the kernels run in notebooks/: a relative path would move
    check_folders(parser, {"--build-dir": args.build_dir, "--out-dir": out_dir})
    if problem := dirty_promotion(out_dir, args.update_notebooks, args.notebooks_dir, git_commit()):
        parser.error(problem)
    with signals_as_interrupt():  # SIGTERM and SIGHUP end the kernels as Ctrl-C does
        return _run_all(paths, declared, overrides, out_dir, args)


def _run_all(paths, declared, overrides, out_dir: Path, args) -> int:
    from tqdm.auto import tqdm

    results, manifest = [], None
    bar = tqdm(paths, unit="notebook", file=sys.stderr)
    try:
        for py in bar:
            bar.set_postfix_str(py.stem)
            entry = registry_entry(py.stem)
            params = {k: v for k, v in ({"SCALE": args.scale} | overrides).items() if k in declared[py.stem]}
            if entry.reads_manifest:  # the index shows this run's results
                write_manifest(out_dir, REGISTRY)
                if "MANIFEST" in declared[py.stem]:
                    params["MANIFEST"] = str(out_dir / "manifest.json")
            expected = entry.minutes.get(args.scale)
            r = run_notebook(py, params, args.build_dir, update=args.update_notebooks, out_dir=out_dir,
                             cell_timeout=args.cell_timeout, log_output=args.log_output,
                             threads=args.threads or entry.threads, progress=_cell_bar(py.stem, expected))
            tqdm.write(f"{'ok  ' if r.error is None and not r.failed_claims else 'FAIL'}  {py.stem:28s} "
                       f"{r.seconds:7.1f} s" + (f"  (expected ~{expected * 60:.0f} s)" if expected else ""), file=sys.stdout)
            results.append(r)
    except KeyboardInterrupt as e:
        done = [r.name for r in results if r.promoted]
        print(f"\ninterrupted{f' ({e})' if isinstance(e, Terminated) else ''}: the notebook that was running wrote nothing to {out_dir}; "
              f"notebooks finished before it: {', '.join(done) or 'none'}", file=sys.stderr)
        _manifest_or_none(out_dir)
        return 128 + e.signum if isinstance(e, Terminated) else 130
    manifest = _manifest_or_none(out_dir)
    code = _print_results(results, args, out_dir, manifest)
    return code if manifest is not None else 1


def _cell_bar(stem: str, minutes: float | None) -> dict:
    """tqdm's arguments for one notebook's bar: cells done / total, elapsed, and the registry's estimate."""
    estimate = f"~{minutes * 60:.0f} s expected" if minutes else "no estimate recorded"
    return {"desc": f"{stem} ({estimate})", "file": sys.stderr, "leave": False, "mininterval": 1.0,
            "bar_format": "{desc}: {n_fmt}/{total_fmt} cells, {elapsed} elapsed |{bar:20}|"}


def _manifest_or_none(out_dir: Path) -> Path | None:
    try:
        return write_manifest(out_dir, REGISTRY) if (out_dir / "claims").is_dir() else None
    except MixedScales as e:
        print(f"manifest not written: {e}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
