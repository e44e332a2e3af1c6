"""The driver owns its children (issue 21): SIGTERM or SIGHUP mid-notebook ends the kernel and the
processes it started, as Ctrl-C does, and leaves the results folder as it was."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SLOW = '''\
    # %% tags=["parameters"]
    PIDS: str = ""  # where the kernel writes its pid and its child's

    # %%
    import os, subprocess, time
    child = subprocess.Popen(["sleep", "300"])
    open(PIDS + ".tmp", "w").write(f"{os.getpid()} {child.pid}")
    os.replace(PIDS + ".tmp", PIDS)
    time.sleep(300)
'''


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody has reaped yet (a container's PID 1 may never reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_mid_notebook_leaves_no_survivor(tmp_path, sig):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    (nbs / "01_slow.py").write_text(textwrap.dedent(SLOW))
    pids = tmp_path / "pids"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    driver = subprocess.Popen([sys.executable, "-m", "lionlib.companion.reproduce", "--notebooks-dir", str(nbs),
                               "--build-dir", str(tmp_path / "build"), "--committed-dir", str(tmp_path / "out"),
                               "-p", "PIDS", str(pids)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 240
        while not pids.exists():
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the notebook never started"
            time.sleep(0.2)
        kernel, child = map(int, pids.read_text().split())
        driver.send_signal(sig)
        out, err = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 128 + sig, (out, err)
    assert f"interrupted ({signal.Signals(sig).name})" in err
    deadline = time.monotonic() + 10
    while not (_dead(kernel) and _dead(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in (kernel, child) if not _dead(p)]
    for p in survivors:
        os.kill(p, signal.SIGKILL)
    assert not survivors, f"processes left running: {survivors} (kernel {kernel}, its child {child})"
    assert not (tmp_path / "out" / "claims").exists()
