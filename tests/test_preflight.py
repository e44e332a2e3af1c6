"""The driver checks every argument, parameter and environment variable before any notebook runs
(issue 21): a bad `--out-dir`, an out-of-range parameter, `--threads 0`, a missing device or an empty
data variable is one line naming the fix, and no notebook starts."""

import json
import textwrap
from pathlib import Path

import papermill
import pytest

from lionlib.companion import reproduce
from lionlib.companion.params import NUMERIC, RANGES, check_range, in_range, notebook_parameters, parse_value
from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES, unwritable

NB = '''\
    # %% tags=["parameters"]
    SCALE: str = "cpu"
    SEED: int = 0  # the seed
    N_SEEDS: int = 2  # seeds
    STEPS: int = 10  # steps
    DEVICE: str = "auto"  # device
    DATA_DIR: str = "."  # data

    # %%
    print(SEED)
'''


@pytest.fixture
def driver(tmp_path, monkeypatch):
    """The driver on a one-notebook folder; running a notebook fails the test."""
    d = tmp_path / "notebooks"
    d.mkdir()
    (d / "01_nb.py").write_text(textwrap.dedent(NB))
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    return ["--notebooks-dir", str(d), "--build-dir", str(tmp_path / "build"), "--committed-dir", str(tmp_path / "out")]


def _error(driver, capsys, *argv) -> str:
    with pytest.raises(SystemExit) as e:
        reproduce.main(driver + list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[-1]


def test_bad_folders_are_refused_before_any_notebook(driver, tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    line = _error(driver, capsys, "--out-dir", str(a_file))
    assert line.endswith(f"--out-dir {a_file}: {a_file} is a file, not a folder; choose a folder you can write (see --help)"), line
    assert "is a file, not a folder, so" in _error(driver, capsys, "--out-dir", str(a_file / "sub"))
    assert "cannot write in /proc/nope" in _error(driver, capsys, "--out-dir", "/proc/nope")
    assert "--build-dir" in _error(driver, capsys, "--build-dir", str(a_file))
    assert "choose a folder you can write" in _error(driver, capsys, "-p", "OUT_DIR", str(a_file))
    assert not (tmp_path / "build").exists()  # nothing was created for a refused run


def test_out_of_range_parameters_and_arguments_are_refused(driver, capsys):
    assert "-p N_SEEDS 0 is out of range: N_SEEDS takes values in [2, inf)" in _error(driver, capsys, "-p", "N_SEEDS", "0")
    assert "N_SEEDS takes values in [2, inf)" in _error(driver, capsys, "-p", "N_SEEDS", "1")
    assert "-p STEPS -5 is out of range" in _error(driver, capsys, "-p", "STEPS", "-5")
    assert "0 is not positive" in _error(driver, capsys, "--threads", "0")
    assert "-3 is not positive" in _error(driver, capsys, "--threads", "-3")
    assert "is not positive" in _error(driver, capsys, "--cell-timeout", "0")


def test_devices_data_folders_and_variables_are_checked(driver, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "this torch has no cuda device" in _error(driver, capsys, "-p", "DEVICE", "cuda")
    assert "unknown device" in _error(driver, capsys, "-p", "DEVICE", "tpu")
    (tmp_path / "empty").mkdir()
    assert "not a folder holding data" in _error(driver, capsys, "-p", "DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("LIONLIB_DATA_DIR", "")
    assert "LIONLIB_DATA_DIR is set but empty" in _error(driver, capsys)
    monkeypatch.setenv("LIONLIB_DATA_DIR", str(tmp_path / "nope"))
    assert "is not a folder" in _error(driver, capsys)
    monkeypatch.delenv("LIONLIB_DATA_DIR")
    monkeypatch.setenv("LIONLIB_HOME", " ")
    assert "LIONLIB_HOME is set but empty" in _error(driver, capsys)


def test_unwritable_tries_and_leaves_nothing(tmp_path):
    assert unwritable(tmp_path / "new" / "deep") is None
    assert not (tmp_path / "new").exists()
    assert unwritable(tmp_path) is None


def test_every_numeric_parameter_of_every_notebook_has_a_range_its_default_is_in():
    used = set()
    for py in sorted(NOTEBOOKS.glob("*.py")):
        for name, p in notebook_parameters(py).items():
            if p["type"] in NUMERIC:
                used.add(name)
                assert name in RANGES, f"{py.name}: {name} ({p['type']}) has no range in params.RANGES"
                default = parse_value(p["default"])
                assert check_range(name, default) is None, f"{py.name}: default {name} = {default} is out of range"
    assert not set(RANGES) - used, f"ranges of no notebook's numeric parameter (a typo?): {sorted(set(RANGES) - used)}"


@pytest.mark.parametrize("value,interval,ok", [(2, "[2, inf)", True), (1, "[2, inf)", False), (0, "(0, inf)", False),
                                               (0.99, "[0, 1)", True), (1, "[0, 1)", False), (1, "(0, 1]", True)])
def test_in_range(value, interval, ok):
    assert in_range(value, interval) is ok
    with pytest.raises(ValueError, match="bad interval"):
        in_range(1, "0..1")


def test_results_from_a_tree_with_local_changes_are_not_promoted_into_paper_figures(driver, tmp_path, capsys,
                                                                                      monkeypatch):
    from lionlib.companion.preflight import dirty_promotion

    dirty = {"commit": "0123456789abcdef", "dirty": True}
    monkeypatch.setattr(reproduce, "git_commit", lambda: dirty)
    line = _error(driver, capsys, "--out-dir", str(PAPER_FIGURES))
    assert "the tree has local changes (git status)" in line and "commit 0123456789" in line and "--out-dir" in line
    committed, nbs = tmp_path / "pf", tmp_path / "nbs"
    assert "commit or stash them before writing" in dirty_promotion(committed, False, nbs, dirty, committed, nbs)
    assert "the committed" in dirty_promotion(tmp_path / "build", True, nbs, dirty, committed, nbs)
    assert dirty_promotion(tmp_path / "build", False, nbs, dirty, committed, nbs) is None  # smoke, -p: build/ is fine
    assert dirty_promotion(committed, True, nbs, {"commit": "0123", "dirty": False}, committed, nbs) is None


def test_the_manifest_records_the_commit_of_each_notebooks_results(tmp_path):
    from lionlib.companion.manifest import git_commit, write_manifest
    from lionlib.companion.report import Report

    for nb in ("01_a", "02_b"):
        r = Report(nb, out_dir=tmp_path, scale="cpu", parameters={})
        r.check("Figure 1", "c", 1, "<=", 2)
        r.summary()
    record = json.loads((tmp_path / "claims" / "02_b.json").read_text())
    record["run"] |= {"commit": "f" * 40, "dirty": True}  # made elsewhere, from a tree with local changes
    (tmp_path / "claims" / "02_b.json").write_text(json.dumps(record))
    manifest = json.loads(write_manifest(tmp_path, []).read_text())
    assert manifest["commits"] == {git_commit()["commit"]: ["01_a"], "f" * 40: ["02_b"]}
    assert manifest["dirty"] == sorted(["02_b"] + (["01_a"] if git_commit()["dirty"] else []))
