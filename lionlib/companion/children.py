"""The driver owns its children: every kernel it starts, and whatever that kernel starts, ends with it.

jupyter_client starts each kernel in a new session (its own process group), so a signal sent to
the driver alone (`timeout` sends SIGTERM, a closed terminal SIGHUP) never reaches the kernel; and
the driver's default action on those signals is to die on the spot, leaving the kernel and its
workers running with parent PID 1 (issue 21: two 550 MB CIFAR kernels). So:

- `signals_as_interrupt()`: SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt), so they take
  Ctrl-C's path: nbclient shuts the kernel down, the results folder stays as it was, the run exits
  128 + the signal's number. A second signal during that cleanup is ignored, so the cleanup finishes.
- `record_group` / `end_groups`: the process group of each kernel, recorded at launch (the
  driver's kernel manager calls it); `end_groups` kills what is left of each group (SIGTERM, then
  SIGKILL), after every notebook and on the way out, so a worker that outlived its kernel dies too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["Terminated", "signals_as_interrupt", "record_group", "end_groups", "GROUPS"]

GROUPS: set[int] = set()  # process groups of the kernels started and not yet ended
_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s))


class Terminated(KeyboardInterrupt):
    """The driver received SIGTERM or SIGHUP; handled as Ctrl-C is."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def signals_as_interrupt():
    """Within the block, SIGTERM and SIGHUP raise `Terminated` once (later ones are ignored)."""
    received = []

    def handler(signum, frame):
        if not received:
            received.append(signum)
            raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in _SIGNALS}
    try:
        yield
    finally:
        end_groups()
        for s, h in previous.items():
            signal.signal(s, h)


def record_group(pgid: int | None) -> None:
    """Remember a kernel's process group (None: the platform has none; nothing to do)."""
    if pgid:
        GROUPS.add(pgid)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def end_groups(grace: float = 2.0) -> None:
    """Kill every recorded process group that still has members: SIGTERM, `grace` seconds, SIGKILL."""
    if not hasattr(os, "killpg"):
        GROUPS.clear()
        return
    alive = [g for g in GROUPS if _alive(g) and g != os.getpgrp()]
    for g in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [g for g in alive if _alive(g)]
    for g in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(g, signal.SIGKILL)
    GROUPS.clear()
