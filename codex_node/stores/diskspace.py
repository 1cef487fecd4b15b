"""The data dir's disk: how much room it has, and "no space left" turned into one error that names it.

A full disk is not a bug of the node: an upload that does not fit gets :class:`~codex_node.errors.DiskFullError`
(the API answers 507), after the store has removed whatever the failed write left, exactly as for any other
failed put. Both layers report it this way — the block files (``OSError`` ENOSPC/EDQUOT) and LevelDB (whose
error only says so in its message).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import structlog

from codex_node.errors import DiskFullError
from codex_node.units import format_size

log = structlog.get_logger(__name__)

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_LEVELDB_FULL = "No space left on device"


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged process may still write on ``path``'s file system."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or the user's disk quota) is full."""
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return True
    return _LEVELDB_FULL in str(error)


def disk_full(path: Path, needed: int | None = None) -> DiskFullError:
    """The error for a write that did not fit on ``path``'s disk, saying how much room is left."""
    try:
        free = f"{format_size(free_bytes(path))} free"
    except OSError:
        free = "free space unknown"
    wanted = "" if needed is None else f" for {format_size(needed)}"
    return DiskFullError(f"the disk of the data dir ({path}) has no room{wanted} ({free}); nothing was stored")


def warn_if_quota_exceeds_disk(path: Path, quota_max: int, used: int) -> bool:
    """Warn (once, at start) when the quota promises more room than ``path``'s disk has; return whether it did."""
    try:
        free = free_bytes(path)
    except OSError:
        return False
    if quota_max - used <= free:
        return False
    log.warning(
        "storage quota is larger than the free space of the data dir's disk: uploads and sales may fail with a "
        "full disk before the quota is reached",
        quota_max_bytes=quota_max,
        quota_used_bytes=used,
        disk_free_bytes=free,
        disk=str(path),
    )
    return True
