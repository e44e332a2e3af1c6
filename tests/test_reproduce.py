"""lionlib.companion.reproduce: the papermill driver, on throwaway notebooks written into tmp_path.

Each test that executes notebooks starts real kernels (a few seconds each), so they are few and share
one small notebook pair: one that passes (with a claim and a figure) and one that fails in its third cell.
The failures of issue 12 ("nothing lost") each have a test here: a smoke run that rewrote the committed
cpu results, a failing or interrupted notebook that deleted its committed claims, a direct papermill
run that wrote into paper_figures/, parameters papermill could not read, `-p scale smoke` silently
ignored, `-p SCALE=tiny` dying with a KeyError; and results that recorded no scale or mixed scales.
"""

import json
import textwrap

import nbformat
import pytest

from pathlib import Path

from lionlib.companion import reproduce
from lionlib.companion.manifest import MixedScales, promote
from lionlib.companion.params import check_value, notebook_parameters, papermill_problems, parameters_cell
from lionlib.companion.report import Report
from lionlib.companion.verify import Tolerance, compare_claims

OK = '''\
    # ---
    # jupyter:
    #   kernelspec:
    #     display_name: Python 3 (ipykernel)
    #     language: python
    #     name: python3
    # ---

    # %% [markdown]
    # # A demo notebook

    # %% tags=["parameters"]
    import os
    from typing import Optional
    SCALE: str = os.environ.get("LIONLIB_SCALE", "cpu")
    SEED: int = 0  # the seed
    OUT_DIR: Optional[str] = None
    OPT: dict = {"lr": 0.1}  # a dict literal: papermill skips dict(...) with keywords

    # %%
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lionlib.companion.report import Report
    report = Report("01_ok", out_dir=OUT_DIR)
    print(f"scale={SCALE} seed={SEED}")

    # %%
    fig, ax = plt.subplots()
    ax.plot([0, 1], [SEED, SEED])
    report.savefig(fig, "ok_line", element="Figure 1")
    report.check("Figure 1", "the seed is small", SEED, "<=", 10)

    # %%
    # NBVAL_CHECK_OUTPUT
    report.summary()
'''

FAILING = '''\
    # %% tags=["parameters"]
    SCALE = "cpu"

    # %%
    x = 1

    # %% [markdown]
    # The next cell fails.

    # %%
    raise ValueError(f"boom at scale {SCALE}")

    # %%
    print("never reached")
'''


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    (d / "01_ok.py").write_text(textwrap.dedent(OK))
    return d


def _args(tmp_path, nbdir):
    """The driver on tmp_path: tmp/out plays the committed paper_figures/, tmp/paper_figures/<scale> build/'s."""
    return ["--notebooks-dir", str(nbdir), "--build-dir", str(tmp_path / "build"),
            "--committed-dir", str(tmp_path / "out")]


def _committed_claims(out, notebook, scale) -> bytes:
    """A claims file (and a figure) as an earlier run at `scale` left them in the results folder `out`."""
    r = Report(notebook, out_dir=out, scale=scale, parameters={})
    r.check("Figure 1", "committed earlier", 1, "<=", 2)
    r.figures = {"Figure 1": ["ok_line.png"]}
    (out / "ok_line.png").parent.mkdir(parents=True, exist_ok=True)
    (out / "ok_line.png").write_bytes(b"committed figure")
    r.summary()
    return (out / "claims" / f"{notebook}.json").read_bytes()


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_parameters_are_injected_and_claims_collected(tmp_path, nbdir):
    out = tmp_path / "out"
    r = reproduce.run_notebook(nbdir / "01_ok.py", {"SEED": 11, "SCALE": "smoke", "OUT_DIR": str(out)},
                               tmp_path / "build", out_dir=out)
    assert r.error is None and r.failed_claims == ["Figure 1: the seed is small"]
    # a failed check is a result: copied (and reported); an error is not (see the next test)
    assert r.promoted and (out / "claims" / "01_ok.json").exists() and (out / "ok_line.png").exists()
    record = json.loads((r.staging / "claims" / "01_ok.json").read_text())
    assert record["run"]["scale"] == "smoke" and record["run"]["parameters"] == {"SCALE": "smoke", "SEED": 11,
                                                                                 "OPT": {"lr": 0.1}}
    assert record["run"]["environment"]["torch_threads"] == reproduce.DEFAULT_THREADS
    assert record["run"]["environment"]["OMP_NUM_THREADS"] == str(reproduce.DEFAULT_THREADS)
    assert (r.staging / "ok_line.png").is_file()
    executed = nbformat.read(tmp_path / "build" / "01_ok.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert ["injected-parameters"] in tags
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "scale=smoke seed=11" in text
    assert "FAIL  Figure 1: the seed is small  [11 <= 10]" in text
    assert not (nbdir / "01_ok.ipynb").exists()  # without update, the committed notebook is untouched


def test_failure_is_reported_with_cell_index_and_others_still_run(tmp_path, nbdir, capsys):
    (nbdir / "00_fails.py").write_text(textwrap.dedent(FAILING))
    committed = _committed_claims(tmp_path / "out", "00_fails", "cpu")  # results of an earlier, good run
    code = reproduce.main(_args(tmp_path, nbdir) + ["--update-notebooks"])
    out = capsys.readouterr().out
    assert code == 1
    assert (tmp_path / "out" / "claims" / "00_fails.json").read_bytes() == committed  # a failure deletes nothing
    # .py cells: 0 parameters, 1 `x = 1`, 2 markdown, 3 the raise (0-based, markdown counted)
    assert "FAILED 00_fails: cell 3 " in out and "ValueError: boom at scale cpu" in out
    assert "1/2 notebooks ran" in out
    assert not (nbdir / "00_fails.ipynb").exists()  # a failed run never replaces committed outputs

    # the passing notebook was run after the failing one and written back, clean
    committed = nbformat.read(nbdir / "01_ok.ipynb", as_version=4)
    assert not any(set(c.metadata.get("tags", [])) & reproduce.DROP_TAGS for c in committed.cells)
    assert not any(set(c.metadata) & set(reproduce.RUN_METADATA) for c in committed.cells)
    assert "papermill" not in committed.metadata
    assert committed.metadata.kernelspec.name == "python3"
    assert any("PASS  Figure 1" in o.get("text", "") for c in committed.cells if c.cell_type == "code"
               for o in c.outputs)
    assert [p for p in reproduce.check_sync(nbdir) if "01_ok" in p] == []

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    fig1 = manifest["elements"]["Figure 1"]
    assert fig1["figures"] == ["ok_line.png"] and "01_ok" in fig1["notebooks"]
    # the failed notebook's earlier claims are still there, beside the new run's
    assert sorted((c["notebook"], c["verdict"]) for c in fig1["claims"]) == [("00_fails", "PASS"), ("01_ok", "PASS")]
    assert {k: v for k, v in manifest["notebooks"]["01_ok"].items() if k != "run"} == {
        "claims": 1, "passed": 1, "findings": 0, "scale": "cpu"}
    assert manifest["scale"] == "cpu" and manifest["notebooks"]["01_ok"]["run"]["parameters"]["SEED"] == 0


def test_check_sync_detects_missing_pair_and_modified_py(tmp_path, nbdir):
    import jupytext

    py = nbdir / "01_ok.py"
    assert any("has no paired 01_ok.ipynb" in p for p in reproduce.check_sync(nbdir))
    nb = jupytext.read(py)
    reproduce.clean_executed(nb)
    nbformat.write(nb, py.with_suffix(".ipynb"))
    assert reproduce.check_sync(nbdir) == []

    py.write_text(py.read_text().replace("SEED: int = 0  # the seed", "SEED: int = 1  # the seed"))
    problems = reproduce.check_sync(nbdir)
    assert len(problems) == 1 and "cell 1 source differs" in problems[0] and "SEED: int = 1" in problems[0]

    py.write_text(py.read_text() + "\n# %%\nprint('new cell')\n")
    assert any("cells committed" in p for p in reproduce.check_sync(nbdir))

    (nbdir / "99_orphan.ipynb").write_text((nbdir / "01_ok.ipynb").read_text())
    assert any("99_orphan.ipynb has no paired 99_orphan.py" in p for p in reproduce.check_sync(nbdir))


def test_sync_parameters_cells_copies_a_mechanical_edit(tmp_path, nbdir):
    import jupytext

    py = nbdir / "01_ok.py"
    nb = jupytext.read(py)
    reproduce.clean_executed(nb)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="kept\n")]
    nbformat.write(nb, py.with_suffix(".ipynb"))
    py.write_text(py.read_text().replace("SEED: int = 0  # the seed", "SEED: int = 0  # the seed of everything"))
    assert any("cell 1 source differs" in p for p in reproduce.check_sync(nbdir))
    assert reproduce.main(["--notebooks-dir", str(nbdir), "--sync-parameters-cells"]) == 0
    assert reproduce.check_sync(nbdir) == []
    assert nbformat.read(py.with_suffix(".ipynb"), as_version=4).cells[2].outputs[0].text == "kept\n"


def test_check_sync_flags_uncleaned_run_metadata(tmp_path, nbdir):
    import jupytext

    nb = jupytext.read(nbdir / "01_ok.py")
    nb.cells[1].metadata["papermill"] = {"duration": 0.1}
    nbformat.write(nb, nbdir / "01_ok.ipynb")
    assert any("run metadata ['papermill']" in p for p in reproduce.check_sync(nbdir))


def test_manifest_merges_registry_and_claims_deterministically(tmp_path):
    r = Report("04_family", out_dir=tmp_path, scale="cpu")
    r.check("Table 2", "b", 1.0, "<=", 2.0)
    r.check("Figure 4", "a", 3.0, "<=", 2.0)
    r.figures = {"Figure 4": ["z.png", "a.png"]}
    r.summary()
    entries = [reproduce.Entry("04_family", ("Table 2", "Figure 4")), reproduce.Entry("09_later", ("Figure 9",))]
    path = reproduce.write_manifest(tmp_path, entries)
    text = path.read_text()
    m = json.loads(text)
    assert m["elements"]["Figure 9"] == {"notebooks": ["09_later"], "figures": [], "claims": []}
    assert m["elements"]["Figure 4"]["figures"] == ["a.png", "z.png"]
    assert m["elements"]["Figure 4"]["claims"][0]["verdict"] == "FAIL"
    assert {k: v for k, v in m["notebooks"]["04_family"].items() if k != "run"} == {
        "claims": 2, "passed": 1, "findings": 0, "scale": "cpu"}
    assert reproduce.write_manifest(tmp_path, entries).read_text() == text


def test_registry_and_parameter_parsing(tmp_path, nbdir, capsys):
    assert reproduce.registry_entry("07_cifar10").name == "cifar10"
    assert reproduce.registry_entry("01_box_constraint").elements == ("Figure 1",)
    assert reproduce.registry_entry("new_thing").elements == ()
    assert reproduce.parse_value("3") == 3 and reproduce.parse_value("None") is None
    assert reproduce.parse_value("0.5") == 0.5 and reproduce.parse_value("cuda") == "cuda"
    (nbdir / "00_index.py").write_text(textwrap.dedent(FAILING))
    assert [p.stem for p in reproduce.discover(nbdir)] == ["01_ok", "00_index"]  # the index reads the manifest
    assert reproduce.main(_args(tmp_path, nbdir) + ["--list", "--only", "01_ok"]) == 0
    listed = capsys.readouterr().out
    assert "01_ok  [not in the registry]" in listed and "SEED: int = 0  # the seed" in listed
    params = reproduce.notebook_parameters(nbdir / "01_ok.py")
    assert list(params) == ["SCALE", "SEED", "OUT_DIR", "OPT"]
    assert params["OPT"]["default"] == '{"lr": 0.1}' and params["OPT"]["type"] == "dict"
    assert params["OUT_DIR"]["type"] == "Optional[str]" and params["SEED"]["help"] == "the seed"
    with pytest.raises(SystemExit):
        reproduce.main(_args(tmp_path, nbdir) + ["--update-notebooks", "-p", "SEED=2"])
    with pytest.raises(SystemExit):
        reproduce.main(_args(tmp_path, nbdir) + ["--only", "01_ok", "-p", "NOT_A_PARAM=2"])
    with pytest.raises(SystemExit):
        reproduce.main(_args(tmp_path, nbdir) + ["--only", "nope"])


def test_clean_executed_strips_papermill_cells_and_run_metadata():
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook(cells=[
        new_markdown_cell("An Exception was encountered", metadata={"tags": ["papermill-error-cell-tag"]}),
        new_code_cell("SEED = 0", metadata={"tags": ["parameters"], "papermill": {"duration": 1.0}}),
        new_code_cell("SEED = 3", metadata={"tags": ["injected-parameters"]}),
        new_code_cell("print(SEED)", metadata={"execution": {"iopub.status.busy": "2026"}, "ExecuteTime": {}}),
    ], metadata={"papermill": {"parameters": {"SEED": 3}}, "language_info": {"name": "python", "version": "3.11.9"}})
    reproduce.clean_executed(nb)
    assert [c.source for c in nb.cells] == ["SEED = 0", "print(SEED)"]
    assert [dict(c.metadata) for c in nb.cells] == [{"tags": ["parameters"]}, {}]
    assert [c.id for c in nb.cells] == ["cell-000", "cell-001"]
    assert "papermill" not in nb.metadata and nb.metadata.language_info == {"name": "python"}


def test_results_go_to_the_folder_of_their_scale_and_verify_compares_them(tmp_path, nbdir, capfd):
    """cpu -> the committed folder; smoke or -p overrides -> build/paper_figures/<scale>; --verify re-runs
    into build/ only and compares exactly (the toy notebook is deterministic), and catches a stale claim."""
    committed = tmp_path / "out"
    assert reproduce.main(_args(tmp_path, nbdir)) == 0
    err = capfd.readouterr().err  # the kernel's own stderr included
    assert "without encryption" not in err and "Unable to parse" not in err  # IPC kernels; typed cells
    before = _snapshot(committed)
    assert {str(p) for p in before} == {"ok_line.png", "claims/01_ok.json", "manifest.json"}
    assert json.loads(before[Path("manifest.json")])["scale"] == "cpu"

    assert reproduce.main(_args(tmp_path, nbdir) + ["--scale", "smoke"]) == 0
    assert reproduce.main(_args(tmp_path, nbdir) + ["-p", "SEED", "3"]) == 0  # cpu, but not the committed setting
    assert _snapshot(committed) == before  # neither touched the committed results
    smoke = json.loads((tmp_path / "paper_figures" / "smoke" / "claims" / "01_ok.json").read_text())
    assert smoke["run"]["scale"] == "smoke"
    custom = json.loads((tmp_path / "paper_figures" / "cpu" / "claims" / "01_ok.json").read_text())
    assert custom["run"]["parameters"]["SEED"] == 3
    capfd.readouterr()

    assert reproduce.main(_args(tmp_path, nbdir) + ["--verify"]) == 0
    out = capfd.readouterr().out
    assert "ok    01_ok: 1 claims compared exactly: 0 difference(s)" in out
    assert _snapshot(committed) == before  # verify writes only under build/

    stale = json.loads(before[Path("claims/01_ok.json")])
    stale["claims"][0]["value"] = 0.5  # as if the code had changed after the claims were committed
    (committed / "claims" / "01_ok.json").write_text(json.dumps(stale))
    assert reproduce.main(_args(tmp_path, nbdir) + ["--verify"]) == 1
    assert "Figure 1: the seed is small: value 0.0 != committed 0.5" in capfd.readouterr().out


def test_ctrl_c_leaves_the_results_folder_as_it_was(tmp_path, nbdir, monkeypatch, capsys):
    import os

    import papermill

    committed = tmp_path / "out"
    _committed_claims(committed, "01_ok", "cpu")
    reproduce.write_manifest(committed, reproduce.REGISTRY)
    before = _snapshot(committed)

    def interrupted(*args, **kwargs):  # the notebook wrote part of its results, then Ctrl-C
        staging = Path(os.environ["LIONLIB_OUT_DIR"])
        (staging / "claims").mkdir(parents=True)
        (staging / "claims" / "01_ok.json").write_text('{"partial')
        (staging / "ok_line.png").write_bytes(b"half a figure")
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    assert reproduce.main(_args(tmp_path, nbdir)) == 130
    assert "interrupted: the notebook that was running wrote nothing to" in capsys.readouterr().err
    assert _snapshot(committed) == before
    assert "LIONLIB_OUT_DIR" not in os.environ  # the kernel's variables do not leak into the driver


def test_manifest_and_promotion_refuse_to_mix_scales(tmp_path):
    out = tmp_path / "out"
    _committed_claims(out, "01_a", "cpu")
    reproduce.write_manifest(out, [])
    staging = tmp_path / "staging"
    _committed_claims(staging, "02_b", "smoke")
    with pytest.raises(MixedScales, match="holds \\['cpu'\\]-scale results"):
        promote(staging, out, "02_b")
    assert not (out / "claims" / "02_b.json").exists()
    _committed_claims(out, "02_b", "smoke")  # copied in by hand
    with pytest.raises(MixedScales, match="several scales"):
        reproduce.write_manifest(out, [])
    assert reproduce.main(["--write-manifest", "--out-dir", str(out)]) == 1
    (out / "claims" / "02_b.json").unlink()
    assert reproduce.main(["--write-manifest", "--out-dir", str(out)]) == 0


def test_bad_parameters_are_one_line_errors(tmp_path, nbdir, monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(reproduce, "_run_all", lambda paths, declared, overrides, out_dir, args: seen.update(
        overrides=overrides, out_dir=out_dir, scale=args.scale) or 0)

    def error(*argv):
        with pytest.raises(SystemExit) as e:
            reproduce.main(_args(tmp_path, nbdir) + list(argv))
        assert e.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert "unknown parameter 'scale'; did you mean SCALE? (names are case-sensitive" in error("-p", "scale", "smoke")
    assert "unknown scale 'tiny'; the scales are smoke, cpu, paper" in error("-p", "SCALE=tiny")
    assert "01_ok takes int (default 0), got 'abc'" in error("-p", "SEED", "abc")
    assert "--scale cpu and -p SCALE smoke disagree" in error("--scale", "cpu", "-p", "SCALE", "smoke")
    assert "-p takes NAME VALUE or NAME=VALUE" in error("-p", "SEED", "1", "2")
    assert "--update-notebooks writes the committed outputs" in error("--update-notebooks", "--scale", "smoke")

    assert reproduce.main(_args(tmp_path, nbdir) + ["-p", "SCALE", "smoke", "-p", "SEED=2"]) == 0
    assert seen == {"overrides": {"SEED": 2}, "out_dir": tmp_path / "paper_figures" / "smoke", "scale": "smoke"}


def test_direct_papermill_run_writes_under_build_and_records_its_scale(tmp_path, nbdir):
    """`papermill X.ipynb out.ipynb -p SCALE smoke`, outside the driver: never into paper_figures/."""
    import os
    import subprocess
    import sys

    import jupytext

    from lionlib.companion import paths

    name = f"zz_direct_{os.getpid()}"  # the notebook writes into the repo's build/; a unique name, removed after
    (nbdir / f"{name}.py").write_text(textwrap.dedent(OK).replace('"01_ok"', f'"{name}"'))
    nb = jupytext.read(nbdir / f"{name}.py")
    nbformat.write(nb, nbdir / f"{name}.ipynb")
    before = _snapshot(paths.PAPER_FIGURES)
    env = {k: v for k, v in os.environ.items() if k not in ("LIONLIB_OUT_DIR", "LIONLIB_SCALE")}
    env["PYTHONPATH"] = str(paths.REPO)
    run = subprocess.run([sys.executable, "-m", "papermill", str(nbdir / f"{name}.ipynb"), str(tmp_path / "o.ipynb"),
                          "-p", "SCALE", "smoke", "-k", "python3", "--no-progress-bar", "--cwd", str(nbdir)],
                         env=env, capture_output=True, text=True, timeout=300)
    lower = subprocess.run([sys.executable, "-m", "papermill", str(nbdir / f"{name}.ipynb"), str(tmp_path / "o2.ipynb"),
                            "-p", "scale", "smoke", "-k", "python3", "--no-progress-bar", "--cwd", str(nbdir)],
                           env=env, capture_output=True, text=True, timeout=300)
    target = paths.BUILD / "paper_figures" / "smoke"
    try:
        assert run.returncode == 0, run.stderr
        assert "Unable to parse" not in run.stderr
        # papermill only warns about an unknown name; the notebook's Report refuses it before any work
        assert lower.returncode != 0
        assert "'scale' is not a parameter of" in lower.stderr and "did you mean SCALE?" in lower.stderr
        record = json.loads((target / "claims" / f"{name}.json").read_text())
        assert record["run"]["scale"] == "smoke" and record["run"]["lionlib"]
        assert set(record["run"]["environment"]) >= {"torch", "torch_threads", "blas", "cpu"}
        assert _snapshot(paths.PAPER_FIGURES) == before
    finally:
        (target / "claims" / f"{name}.json").unlink(missing_ok=True)
        (target / "ok_line.png").unlink(missing_ok=True)


def test_every_notebook_parameters_cell_is_read_alike_by_papermill_and_the_driver():
    """`papermill --help-notebook` lists every parameter with its type, and runs print no
    "Unable to parse line" warning: one annotated assignment per line, no second "=" on a line."""
    from lionlib.companion.paths import NOTEBOOKS

    for py in sorted(NOTEBOOKS.glob("*.py")):
        src = parameters_cell(py)
        assert src is not None, f"{py.name} has no parameters cell"
        assert papermill_problems(src) == [], py.name
        assert "SCALE" in notebook_parameters(py), py.name
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists():
            assert parameters_cell(ipynb) == src, f"{ipynb.name}: parameters cell differs from the .py"


def test_papermill_problems_names_what_papermill_misses():
    src = 'A = 1\nB: int = dict(x=1)\nC: int | None = None\nD: int = 2  # lambda >= 0.5\nE, F = 1, 2\n'
    problems = papermill_problems(src)
    assert problems[:2] == ["line 2: a second '=' (papermill skips the line): B: int = dict(x=1)",
                            "line 4: a second '=' (papermill skips the line): D: int = 2  # lambda >= 0.5"]
    assert [p.split(":")[0] for p in problems[2:]] == ["A", "B", "C", "D", "E", "F"]
    assert problems[2].startswith("A: no type") and "does not find" in problems[4]
    assert papermill_problems('from typing import Optional\nA: Optional[int] = None  # help\nB: str = "x"\n') == []


@pytest.mark.parametrize("value,type_,ok", [
    (1, "int", True), (True, "int", False), ("a", "int", False), (1, "float", True), (None, "Optional[int]", True),
    ((1.0, 2.0), "tuple[float, float]", True), ([1.0], "tuple[float, float]", False), ("x", "str", True),
    ([1, 2, 3], "tuple", True), ({"lr": 1}, "dict", True), ("cpu", "Optional[int]", False), (3, None, True),
])
def test_check_value(value, type_, ok):
    assert check_value(value, type_) is ok


def test_compare_claims_exact_and_within_tolerance():
    def record(value, effects, verdict="reproduced"):
        return {"claims": [
            {"element": "Figure 1", "claim": "c", "kind": "check", "value": value, "verdict": True},
            {"element": "Section 5", "claim": "f", "kind": "finding", "effects": effects, "verdict": verdict}]}

    a = record(0.1, [1.0, 2.0])
    assert compare_claims(a, record(0.1, [1.0, 2.0])) == []
    assert compare_claims(a, record(0.1 + 1e-16, [1.0, 2.0])) == ["Figure 1: c: value 0.1000000000000001 != committed 0.1"]
    assert len(compare_claims(a, record(0.1, [1.0, 2.0 + 1e-12]))) == 1
    tol = Tolerance(0.02, 0.0, "float32 training")
    assert compare_claims(a, record(0.101, [1.01, 2.0]), tol) == []
    assert compare_claims(a, record(0.2, [1.0, 2.0], "inconclusive at this scale"), tol) == [
        "Figure 1: c: value 0.2 != committed 0.1", "Section 5: f: verdict 'inconclusive at this scale' != committed 'reproduced'"]


def test_annotate_cell_makes_a_cell_readable_by_papermill_and_lists_the_rest():
    from lionlib.companion.params import annotate_cell

    src = ('import os\n\nSCALE = os.environ.get("LIONLIB_SCALE", "cpu")  # smoke | cpu | paper\nSEED = 0\n'
           'OUT_DIR = None  # where\nSTEPS = None  # None -> 1500 (smoke)\nLR = 1e-3  # lambda >= 0.5\n'
           'LION = dict(lr=9e-4, wd=10.0)\nC = (2.0, -3.0)\nGRID = None\nA, B = 1, 2  # a = b\n')
    new, todo = annotate_cell(src)
    assert new.splitlines()[:3] == ["import os", "from typing import Optional", ""]
    assert "SCALE: str = os.environ" in new and "SEED: int = 0" in new and "OUT_DIR: Optional[str] = None" in new
    assert "STEPS: Optional[int] = None" in new and "LR: float = 1e-3  # lambda ≥ 0.5" in new
    assert 'LION: dict = {"lr": 0.0009, "wd": 10.0}' in new and "C: tuple[float, float] = (2.0, -3.0)" in new
    assert todo[0] == "GRID: annotate by hand (default None)"
    assert any(t.startswith("line") and "A, B" in t for t in todo) and any(t.startswith("A: papermill") for t in todo)
