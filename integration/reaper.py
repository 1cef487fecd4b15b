"""The reaper: ends every process the integration harness started once the test process is gone, however it went.

The harness starts it as a subprocess (:class:`Reaper`) and tells it, one line each on its stdin, the processes
it started (``<pid> <start time>``; a process that leads its own group is ended with its whole group). When its
stdin reaches end of file (the harness closed it, or the test process died: even SIGKILLed, the kernel closes
the pipe) it sends SIGTERM to each process still alive, SIGKILL to any still alive after :data:`GRACE` seconds,
and exits. A pid is signalled only while its start time (``/proc/<pid>/stat``) is still the one registered, so
a pid the system reused for another process is never touched.

Run as a script (``python reaper.py``): stdlib only, nothing imported from the project. It ignores SIGINT and has
its own session, so a Ctrl-C that stops pytest does not stop it before it did its job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Final

GRACE: Final = 5.0
"""Seconds between SIGTERM and SIGKILL."""


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of ``/proc/<pid>/stat``); ``None``: gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name (field 2) may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie has ended; only its parent's wait is missing
        return None
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    return start_time(pid) == started


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def reap(registered: dict[int, int], grace: float = GRACE) -> None:
    """SIGTERM every registered process still alive, then SIGKILL what is left after ``grace`` seconds."""
    for pid, started in registered.items():
        if alive(pid, started):
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p, s) for p, s in registered.items()):
        time.sleep(0.05)
    for pid, started in registered.items():
        if alive(pid, started):
            _signal(pid, signal.SIGKILL)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    registered: dict[int, int] = {}
    for line in sys.stdin:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            registered[int(parts[0])] = int(parts[1])
    reap(registered)
    return 0


class Reaper:
    """The harness's side: start the reaper, register processes, close it (which ends what is still running)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        self._stdin: IO[str] = self._proc.stdin

    @property
    def pid(self) -> int:
        return self._proc.pid

    def register(self, pid: int) -> None:
        """From now on, ``pid`` (and its group, if it leads one) ends when the test process ends."""
        started = start_time(pid)
        if started is None:
            return  # already gone
        self._stdin.write(f"{pid} {started}\n")
        self._stdin.flush()

    def close(self, timeout: float = GRACE + 5) -> None:
        """End every registered process still running and wait for the reaper to exit. Idempotent."""
        if not self._stdin.closed:
            self._stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


if __name__ == "__main__":
    sys.exit(main())
