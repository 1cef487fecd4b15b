"""One node per data dir: an exclusive lock on ``<data-dir>/codex-node.pid``, a file that holds the owner's pid.

LevelDB locks its own directory too, but its refusal (``IO error: lock …/LOCK: Resource temporarily
unavailable``) says nothing an operator can act on. This lock is taken first, so a second node on the same data
dir is told which process holds it. The lock is ``flock``: the kernel drops it when the holder exits, even on
``kill -9``, so a stale pid file never keeps a node out. The file stays (unlinking a lock file races with a
process that has just opened it); it is emptied on a clean release.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from codex_node.errors import ConfigError

PID_FILE = "codex-node.pid"


class DataDirLock:
    """Holds ``<data_dir>/codex-node.pid`` locked from :meth:`acquire` until :meth:`release` (or the process ends)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / PID_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid; raises :class:`ConfigError` (``--data-dir``) naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"another codex-node (pid {holder})" if holder else "another codex-node"
            raise ConfigError(
                "--data-dir", f"{self.data_dir} is in use by {who}; stop it, or give this node another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Empty the pid file and drop the lock (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
