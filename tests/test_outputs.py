"""Committed outputs are protected (issue 21): an ipynb rewritten without outputs (what
`jupytext --to notebook X.py` does), or whose outputs are not those of its claims file, fails
`--check-sync` (run by `make test`), and the book refuses to render it as an empty page."""

import json
import shutil

import pytest

from lionlib.companion import reproduce, site
from lionlib.companion.paths import NOTEBOOKS, PAPER_FIGURES
from lionlib.companion.sync import check_outputs, output_problems

NAME = "02_continuous_lyapunov"


@pytest.fixture
def pair(tmp_path):
    """A committed pair and its claims file, copied into tmp/notebooks and tmp/paper_figures/claims."""
    nbs, claims = tmp_path / "notebooks", tmp_path / "paper_figures" / "claims"
    nbs.mkdir()
    claims.mkdir(parents=True)
    for suffix in (".py", ".ipynb"):
        shutil.copy(NOTEBOOKS / f"{NAME}{suffix}", nbs)
    shutil.copy(PAPER_FIGURES / "claims" / f"{NAME}.json", claims)
    return nbs, claims


def test_the_committed_notebooks_have_the_outputs_of_their_claims():
    assert check_outputs() == []


def test_a_notebook_rewritten_from_its_py_fails_check_sync(pair, capsys):
    from jupytext.cli import jupytext

    nbs, claims = pair
    args = ["--check-sync", "--notebooks-dir", str(nbs), "--committed-dir", str(claims.parent)]
    assert reproduce.main(args) == 0
    jupytext(["--to", "notebook", "--quiet", str(nbs / f"{NAME}.py")])  # what a reader may type
    assert reproduce.main(args) == 1
    out = capsys.readouterr().out
    assert f"{NAME}.ipynb: 9 of 9 code cells have no outputs (not executed) (restore it: git checkout" in out


def test_outputs_that_disagree_with_the_claims_file_are_reported(pair):
    nbs, claims = pair
    path = claims / f"{NAME}.json"
    record = json.loads(path.read_text())
    record["claims"][0]["verdict"] = False  # the claims say FAIL, the committed outputs PASS
    path.write_text(json.dumps(record))
    problems = output_problems(nbs / f"{NAME}.ipynb", path)
    assert len(problems) == 1 and "its outputs lack 1 of the 7 checks" in problems[0] and "'FAIL  Theorem 3.1" in problems[0]


def test_the_site_refuses_a_page_without_outputs(pair, monkeypatch, tmp_path):
    from jupytext.cli import jupytext

    nbs, claims = pair
    jupytext(["--to", "notebook", "--quiet", str(nbs / f"{NAME}.py")])
    monkeypatch.setattr(site, "NOTEBOOKS", nbs)
    monkeypatch.setattr(site, "PAPER_FIGURES", PAPER_FIGURES)
    with pytest.raises(SystemExit, match=f"refusing pages without outputs:\n  {NAME}.ipynb: 9 of 9 code cells"):
        site.write_sources(tmp_path / "src")
    assert not (tmp_path / "src").exists()
