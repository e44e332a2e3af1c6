"""The committed notebook pairs: `notebooks/X.py` (jupytext, the source of truth) and `notebooks/X.ipynb`
(the committed outputs, written only by the driver). Converting one to the other, cleaning an
executed notebook for committing, and checking that each pair is in sync (`make sync`): its inputs
(`check_sync`) and its outputs (`check_outputs`).

Opening a pair safely: `jupytext --to notebook X.py` writes a fresh `X.ipynb` without outputs over
the committed one (issue 21: 650 KB to 22 KB); use `jupytext --update --to notebook X.py` (keeps the
outputs, replaces the inputs) or open `X.ipynb` in JupyterLab with jupytext installed (it pairs the
two). `check_outputs` catches the other case: an ipynb whose outputs are gone or are not those of
its claims file.
"""

import difflib
import json
import shutil
import tempfile
from pathlib import Path

from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES

__all__ = ["RUN_METADATA", "DROP_TAGS", "to_ipynb", "clean_executed", "sync_parameters_cell", "check_sync",
           "output_problems", "check_outputs"]

RUN_METADATA = ("papermill", "execution", "ExecuteTime")  # per-run cell metadata, never committed
DROP_TAGS = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill adds


def to_ipynb(py: Path, dest: Path) -> Path:
    """Convert a jupytext `.py` into a fresh ipynb with the `python3` kernel, as papermill needs."""
    import jupytext

    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


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


def sync_parameters_cell(py: Path) -> bool:
    """Copy the parameters cell's source from `X.py` into the committed `X.ipynb` without re-running
    it (its output is empty: a parameters cell only assigns). For mechanical edits of that cell (types,
    comments) only; returns whether the ipynb changed. Any other difference needs a real run."""
    import jupytext
    import nbformat

    ipynb = py.with_suffix(".ipynb")
    src = next(c.source for c in jupytext.read(py).cells if "parameters" in c.metadata.get("tags", []))
    nb = nbformat.read(ipynb, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    if cell.source == src:
        return False
    cell.source = src
    nbformat.write(nb, ipynb)
    return True


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


_RESTORE = "(restore it: git checkout -- notebooks/{name}.ipynb, or re-run: python -m lionlib.companion.reproduce --only {stem} --update-notebooks)"


def output_problems(ipynb: Path, claims: Path | None = None) -> list[str]:
    """What is wrong with the outputs of a committed notebook: code cells never executed (a notebook
    rewritten from its `.py`), or, given its claims file, a check of that file whose PASS/FAIL line
    (`Report.summary`) is not among the outputs, or a different count of passing claims."""
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    fix = _RESTORE.format(name=ipynb.stem, stem=ipynb.stem)
    code = [c for c in nb.cells if c.cell_type == "code"]
    unrun = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.get("execution_count") is None]
    if code and (unrun or not any(c.get("outputs") for c in code)):
        return [f"{ipynb.name}: {len(unrun) or len(code)} of {len(code)} code cells have no outputs (not executed) {fix}"]
    if claims is None or not claims.exists():
        return []
    text = "".join(o.get("text", "") if isinstance(o.get("text", ""), str) else "".join(o["text"])
                   for c in code for o in c.get("outputs", []) if o.get("output_type") == "stream")
    record = json.loads(claims.read_text())
    checks = [c for c in record["claims"] if c.get("kind", "check") != "finding"]
    missing = [f"{'PASS' if c['verdict'] else 'FAIL'}  {c['element']}: {c['claim']}" for c in checks]
    missing = [m for m in missing if m not in text]
    problems = [f"{ipynb.name}: its outputs lack {len(missing)} of the {len(checks)} checks of {claims.name}, "
                f"e.g. {missing[0]!r} {fix}"] if missing else []
    count = f"{sum(bool(c['verdict']) for c in checks)}/{len(checks)} claims pass"
    if checks and not missing and count not in text:
        problems.append(f"{ipynb.name}: its outputs do not say {count!r} as {claims.name} does {fix}")
    return problems


def check_outputs(notebooks_dir: Path = NOTEBOOKS, claims_dir: Path = PAPER_FIGURES / "claims") -> list[str]:
    """`output_problems` of every committed notebook, against `claims_dir/<name>.json` when it exists."""
    return [p for ipynb in sorted(Path(notebooks_dir).glob("*.ipynb"))
            for p in output_problems(ipynb, Path(claims_dir) / f"{ipynb.stem}.json")]
