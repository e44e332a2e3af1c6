"""Progress where it is long (issue 21): the driver shows each notebook's cells done / total, the
elapsed time and the registry's estimate; a training loop's bar (`lionlib.experiments.progress`)
shows in the notebook and on the driver's console."""

import io
import sys
import textwrap

import nbformat

from lionlib.companion import reproduce
from lionlib.experiments.progress import progress

NB = '''\
    # %% tags=["parameters"]
    SCALE: str = "cpu"

    # %%
    from lionlib.experiments.progress import progress
    for step in progress(range(3), desc="training", mininterval=0):
        pass

    # %%
    from lionlib.companion.report import Report
    report = Report("01_prog")
    report.check("Figure 1", "three steps", step + 1, "==", 3)
    report.summary()
'''


def test_the_driver_shows_cells_and_the_trainers_bar_reaches_notebook_and_console(tmp_path, capfd):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_prog.py").write_text(textwrap.dedent(NB))
    args = ["--notebooks-dir", str(nbs), "--build-dir", str(tmp_path / "build"), "--committed-dir", str(tmp_path / "out")]
    assert reproduce.main(args) == 0
    err = capfd.readouterr().err
    assert "01_prog (no estimate recorded): " in err and " cells, " in err and " elapsed" in err
    assert "training: 100%" in err and "3/3" in err  # the kernel's bar, on the driver's console
    executed = nbformat.read(tmp_path / "build" / "01_prog.ipynb", as_version=4)
    shown = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "training: 100%" in shown and "3/3" in shown  # and in the notebook


def test_cell_bar_states_the_estimate():
    assert reproduce._cell_bar("01_x", 0.5)["desc"] == "01_x (~30 s expected)"


def test_progress_outside_a_kernel_draws_one_bar(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    monkeypatch.setattr(sys, "__stderr__", out)
    assert list(progress(range(4), desc="steps", mininterval=0)) == [0, 1, 2, 3]
    assert out.getvalue().count("steps:   0%") == 1 and "4/4" in out.getvalue()  # one bar, not two
    console, cell = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", cell)
    monkeypatch.setattr(sys, "__stderr__", console)
    with progress(total=2, desc="epochs", mininterval=0) as bar:
        bar.update(2)
        bar.set_postfix(loss="0.5")
    assert "epochs: 100%" in cell.getvalue() and "epochs: 100%" in console.getvalue()
