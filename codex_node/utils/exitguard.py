"""A bound on the wait between "node stopped" and the process's exit.

Once the node has stopped, every store is closed and flushed; what is left is the interpreter's own shutdown, which
joins the event loop's worker threads and every other non-daemon thread. A thread stuck in a blocking call (a
socket read without a deadline in some library) would hold the process for as long as that call lasts, and an
operator's ``systemctl stop`` or ``docker stop`` would end in a SIGKILL. :func:`arm` starts a daemon thread that,
if the process is still there ``grace`` seconds later, logs the threads it is waiting for and where each one is (so
the stuck call can be found) and exits with the node's exit code.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Final

import structlog

log = structlog.get_logger(__name__)

EXIT_GRACE: Final = 10.0
"""Seconds the interpreter's shutdown may take after the node stopped."""


def lingering_threads() -> list[str]:
    """Names of the live non-daemon threads other than the caller's (what the interpreter's exit waits for)."""
    return sorted(t.name for t in _lingering())


def lingering_stacks(limit: int = 12) -> dict[str, list[str]]:
    """Where each lingering thread is: its innermost ``limit`` frames as ``file:line function``, innermost last."""
    frames = sys._current_frames()
    out: dict[str, list[str]] = {}
    for thread in _lingering():
        frame = frames.get(thread.ident) if thread.ident is not None else None
        summary = traceback.extract_stack(frame)[-limit:] if frame is not None else []
        out[thread.name] = [f"{f.filename}:{f.lineno} {f.name}" for f in summary]
    return out


def _lingering() -> list[threading.Thread]:
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and t.is_alive() and not t.daemon]


def arm(
    code: int,
    grace: float = EXIT_GRACE,
    *,
    wait: Callable[[float], object] = time.sleep,
    exit_now: Callable[[int], object] = os._exit,
) -> threading.Thread:
    """Exit with ``code`` if the process is still alive ``grace`` seconds from now (module docstring)."""

    def watch() -> None:
        wait(grace)
        log.warning(
            "process still running after the node stopped: exiting without waiting for its threads",
            seconds=grace,
            threads=lingering_threads(),
            stacks=lingering_stacks(),
        )
        sys.stdout.flush()
        sys.stderr.flush()
        exit_now(code)

    guard = threading.Thread(target=watch, name="exit-guard", daemon=True)
    guard.start()
    return guard
