"""lionlib.companion.reproduce: the papermill driver, on throwaway notebooks written into tmp_path.

Each test that executes notebooks starts real kernels (a few seconds each), so they are few and share
one small notebook pair: one that passes (with a claim and a figure) and one that fails in its third cell.
"""

import json
import textwrap

import nbformat
import pytest

from lionlib.companion import reproduce
from lionlib.companion.report import Report

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
    SCALE = os.environ.get("LIONLIB_SCALE", "cpu")
    SEED = 0  # the seed
    OUT_DIR = None
    LOW, HIGH = 1, 2  # a pair; papermill's own parser skips lines like this (and with a second = sign)
    OPT = dict(lr=0.1)

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
    return ["--notebooks-dir", str(nbdir), "--build-dir", str(tmp_path / "build"), "--out-dir", str(tmp_path / "out")]


def test_parameters_are_injected_and_claims_collected(tmp_path, nbdir):
    out = tmp_path / "out"
    r = reproduce.run_notebook(nbdir / "01_ok.py", {"SEED": 11, "SCALE": "smoke", "OUT_DIR": str(out)},
                               tmp_path / "build", out_dir=out)
    assert r.error is None and r.failed_claims == ["Figure 1: the seed is small"]
    executed = nbformat.read(tmp_path / "build" / "01_ok.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert ["injected-parameters"] in tags
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "scale=smoke seed=11" in text
    assert "FAIL  Figure 1: the seed is small  [11 <= 10]" in text
    assert (out / "ok_line.png").is_file()
    assert not (nbdir / "01_ok.ipynb").exists()  # without update, the committed notebook is untouched


def test_failure_is_reported_with_cell_index_and_others_still_run(tmp_path, nbdir, capsys):
    (nbdir / "00_fails.py").write_text(textwrap.dedent(FAILING))
    code = reproduce.main(_args(tmp_path, nbdir) + ["--update-notebooks", "--scale", "smoke"])
    out = capsys.readouterr().out
    assert code == 1
    # .py cells: 0 parameters, 1 `x = 1`, 2 markdown, 3 the raise (0-based, markdown counted)
    assert "FAILED 00_fails: cell 3 " in out and "ValueError: boom at scale smoke" in out
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
    assert [c["verdict"] for c in fig1["claims"]] == ["PASS"]
    assert manifest["notebooks"] == {"01_ok": {"claims": 1, "passed": 1, "findings": 0}}


def test_check_sync_detects_missing_pair_and_modified_py(tmp_path, nbdir):
    import jupytext

    py = nbdir / "01_ok.py"
    assert any("has no paired 01_ok.ipynb" in p for p in reproduce.check_sync(nbdir))
    nb = jupytext.read(py)
    reproduce.clean_executed(nb)
    nbformat.write(nb, py.with_suffix(".ipynb"))
    assert reproduce.check_sync(nbdir) == []

    py.write_text(py.read_text().replace("SEED = 0  # the seed", "SEED = 1  # the seed"))
    problems = reproduce.check_sync(nbdir)
    assert len(problems) == 1 and "cell 1 source differs" in problems[0] and "SEED = 1" in problems[0]

    py.write_text(py.read_text() + "\n# %%\nprint('new cell')\n")
    assert any("cells committed" in p for p in reproduce.check_sync(nbdir))

    (nbdir / "99_orphan.ipynb").write_text((nbdir / "01_ok.ipynb").read_text())
    assert any("99_orphan.ipynb has no paired 99_orphan.py" in p for p in reproduce.check_sync(nbdir))


def test_check_sync_flags_uncleaned_run_metadata(tmp_path, nbdir):
    import jupytext

    nb = jupytext.read(nbdir / "01_ok.py")
    nb.cells[1].metadata["papermill"] = {"duration": 0.1}
    nbformat.write(nb, nbdir / "01_ok.ipynb")
    assert any("run metadata ['papermill']" in p for p in reproduce.check_sync(nbdir))


def test_manifest_merges_registry_and_claims_deterministically(tmp_path):
    r = Report("04_family", out_dir=tmp_path)
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
    assert m["notebooks"]["04_family"] == {"claims": 2, "passed": 1, "findings": 0}
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
    assert "01_ok  [not in the registry]" in listed and "SEED = 0  # the seed" in listed
    params = reproduce.notebook_parameters(nbdir / "01_ok.py")
    assert list(params) == ["SCALE", "SEED", "OUT_DIR", "LOW", "HIGH", "OPT"]
    assert params["HIGH"]["default"] == "2" and params["OPT"] == {"default": "dict(lr=0.1)", "help": ""}
    assert params["LOW"]["help"].startswith("a pair")
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
