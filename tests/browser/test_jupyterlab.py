"""JupyterLab, as a reader meets it: the paired `notebooks/01_box_constraint.py` opens as a notebook
(jupytext), runs all cells in the browser, shows its figure, and is still in sync once saved.

The server runs headless on 127.0.0.1 with a token, on a copy of the pair (so the committed files
and figures are never touched: LIONLIB_OUT_DIR points into the copy too), at the smoke scale.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lionlib.companion.paths import NOTEBOOKS, REPO
from lionlib.companion.reproduce import check_sync

NAME = "01_box_constraint"
RUN_TIMEOUT_S = 240  # the smoke scale runs in well under a minute through papermill


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server on a copy of the pair; yields (url with token, the copy's folder)."""
    work = tmp_path / "notebooks"
    work.mkdir()
    for f in (f"{NAME}.py", f"{NAME}.ipynb"):
        shutil.copy2(NOTEBOOKS / f, work / f)
    shutil.copy2(REPO / "jupytext.toml", work / "jupytext.toml")
    # Every cell in the DOM (no virtual scrolling), so the figure can be looked at where it is.
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIONLIB_SCALE": "smoke", "LIONLIB_OUT_DIR": str(tmp_path / "out"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "IPYTHONDIR": str(tmp_path / "ipython"), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    env.pop("JUPYTER_CONFIG_DIR", None)
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
           f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}", "--ServerApp.allow_root=True"]
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start:\n{(tmp_path / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield f"{base}/lab?token={token}", work
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const cells = panel.content.model.cells;
    const out = {code: 0, done: 0, images: 0, errors: []};
    for (let i = 0; i < cells.length; i++) {
        const c = cells.get(i);
        if (c.type !== 'code') continue;
        out.code += 1;
        if (c.executionCount !== null && c.executionState !== 'running') out.done += 1;
        for (let j = 0; j < c.outputs.length; j++) {
            const o = c.outputs.get(j);
            if (o.type === 'error') out.errors.push(o.toJSON().ename + ': ' + o.toJSON().evalue);
            if (o.data && o.data['image/png']) out.images += 1;
        }
    }
    out.busy = panel.sessionContext.session?.kernel?.status !== 'idle';
    out.dirty = panel.context.model.dirty;
    return out;
}"""


def test_jupyterlab_runs_the_paired_notebook(browser, lab):
    url, work = lab
    original = (work / f"{NAME}.py").read_text()
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    other_hosts = []
    page.on("request", lambda r: r.url.startswith("http") and "//127.0.0.1:" not in r.url and other_hosts.append(r.url))
    try:
        page.goto(url, wait_until="load")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=60_000)
        page.evaluate("() => window.jupyterapp.restored")
        # Open the .py with the notebook factory: jupytext's contents manager serves it as a notebook.
        page.evaluate(f"() => window.jupyterapp.commands.execute('docmanager:open', "
                      f"{{path: '{NAME}.py', factory: 'Notebook'}})")
        page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                               " return w && w.sessionContext && w.sessionContext.session"
                               " && w.sessionContext.session.kernel && w.content.model"
                               " && w.content.model.cells.length > 0; }", timeout=60_000)
        assert page.evaluate(STATE)["code"] > 5, "the .py did not open as a notebook"
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        deadline, state = time.monotonic() + RUN_TIMEOUT_S, None
        while time.monotonic() < deadline:
            state = page.evaluate(STATE)
            if state["errors"] or (state["done"] == state["code"] and not state["busy"]):
                break
            page.wait_for_timeout(1000)
        assert not state["errors"], f"cells raised: {state['errors']}"
        assert state["done"] == state["code"], f"not all cells ran within {RUN_TIMEOUT_S} s: {state}"
        assert state["images"] > 0, "no figure in the outputs"
        # The figure is on the page and decoded, as the reader sees it.
        img = page.locator(".jp-OutputArea-output img").first
        img.scroll_into_view_if_needed()
        assert img.evaluate("i => i.naturalWidth") > 0
        (REPO / "build" / "site-shots").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(REPO / "build" / "site-shots" / "jupyterlab.png"))
        saved_before = (work / f"{NAME}.ipynb").stat().st_mtime_ns
        # Save (jupytext writes both files of the pair), then the pair must still be in sync.
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)
        for _ in range(20):  # the .ipynb is written right after the .py
            if not check_sync(work):
                break
            time.sleep(0.5)
        assert check_sync(work) == [], check_sync(work)
        assert (work / f"{NAME}.ipynb").stat().st_mtime_ns > saved_before, "the .ipynb of the pair was not saved"
        assert (work / f"{NAME}.py").read_text() == original, "saving from JupyterLab changed the .py"
        assert other_hosts == [], f"JupyterLab requested other hosts: {other_hosts[:5]}"
    finally:
        ctx.close()
