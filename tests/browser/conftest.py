"""Browser tests: Debian's Chromium driven by Playwright for Python (never `playwright install`:
the system browser is used, so nothing is downloaded).

They skip, with one line saying why, when Chromium or Playwright is missing; `make browser` (part of
`make test`) says so before running pytest, and `.ci/run` installs Chromium with apt-get.
Set LIONLIB_CHROMIUM to use another Chromium binary.
"""

import os
import shutil

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    """The Chromium binary to drive: $LIONLIB_CHROMIUM, else the first of CANDIDATES on PATH."""
    if os.environ.get("LIONLIB_CHROMIUM"):
        return os.environ["LIONLIB_CHROMIUM"]
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@pytest.fixture(scope="session")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.skip("browser tests skipped: no Chromium on PATH (apt-get install chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests skipped: Playwright is not installed (pip install -e '.[browser]')")
    with sync_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium refuses its sandbox.
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
