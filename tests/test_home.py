"""lionlib.experiments.home: an installed lionlib (a copy of the package with no pyproject.toml beside
it, as `pip install .` leaves it in site-packages) never writes inside its installation; its
companion commands say that the notebooks are not there."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import lionlib
from lionlib.experiments import common, home

PROBE = textwrap.dedent("""
    import json
    from lionlib.experiments import cifar_data, common, home
    from lionlib.companion import paths
    print(json.dumps({"checkout": str(home.checkout()), "home": str(home.home()), "runs": str(common.run_folders_dir()),
                      "data": str(common.data_dir()), "cache": str(cifar_data.CACHE),
                      "records": str(common.runs_dir("cpu")), "bench": str(common.bench_results_dir()),
                      "build": str(paths.BUILD)}))
""")


@pytest.fixture
def installed(tmp_path):
    """lionlib copied into tmp/site-packages (no pyproject.toml beside it), and a working folder."""
    site = tmp_path / "site-packages"
    shutil.copytree(Path(lionlib.__file__).parent, site / "lionlib", ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LIONLIB_DATA_DIR", "LIONLIB_HOME")}
    env |= {"PYTHONPATH": str(site), "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    return site, work, env


def _run(args, work, env):
    return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)


def test_an_installed_lionlib_writes_under_the_cache_and_the_current_folder(installed, tmp_path):
    site, work, env = installed
    r = _run(["-c", PROBE], work, env)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["checkout"] == "None"
    assert got["home"] == str(tmp_path / "cache" / "lionlib")
    assert got["data"] == got["cache"] == str(tmp_path / "cache" / "lionlib" / "data")
    assert got["records"] == str(tmp_path / "cache" / "lionlib" / "runs" / "records" / "cpu")
    assert got["bench"] == str(tmp_path / "cache" / "lionlib" / "benchmarks" / "results")
    assert Path(got["runs"]) == work / "runs"
    assert got["build"] == str(work / "build")
    for key, value in got.items():
        assert not Path(value).is_relative_to(site), f"{key} is inside the installation: {value}"

    r = _run(["-c", PROBE], work, env | {"LIONLIB_HOME": str(tmp_path / "lh")})
    got = json.loads(r.stdout)
    assert got["home"] == str(tmp_path / "lh") and Path(got["runs"]) == tmp_path / "lh" / "runs"
    r = _run(["-c", PROBE], work, env | {"LIONLIB_HOME": ""})
    assert r.returncode != 0 and "LIONLIB_HOME is set but empty" in r.stderr


def test_companion_commands_outside_a_clone_say_the_notebooks_are_not_there(installed):
    site, work, env = installed
    for args in (["--list"], ["--check-sync"], ["--only", "01_box_constraint", "--scale", "smoke"]):
        r = _run(["-m", "lionlib.companion.reproduce", *args], work, env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "no notebooks in" in lines[0] and "installed, not a clone" in lines[0], r.stderr
    assert sorted(p.name for p in work.iterdir()) == []  # nothing written, not even build/
    assert not list(site.rglob("*.pyc")) and not (site / "runs").exists() and not (site / "data").exists()


def test_in_a_checkout_the_defaults_stay_in_the_clone(monkeypatch):
    monkeypatch.delenv("LIONLIB_HOME", raising=False)
    monkeypatch.delenv("LIONLIB_DATA_DIR", raising=False)
    root = Path(lionlib.__file__).resolve().parents[1]
    assert home.checkout() == root and home.runs_dir() == root / "runs" and common.data_dir() == root / "data"


def test_an_empty_data_dir_variable_is_an_error_naming_the_fix(monkeypatch):
    monkeypatch.setenv("LIONLIB_DATA_DIR", "")
    with pytest.raises(common.DataError, match="LIONLIB_DATA_DIR is set but empty: .*unset it"):
        common.data_dir()
