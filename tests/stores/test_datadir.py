"""One node per data dir: the pid-file lock (stores/datadir.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codex_node.errors import ConfigError
from codex_node.stores.datadir import PID_FILE, DataDirLock


def test_a_second_lock_on_the_same_dir_is_refused_naming_the_holders_pid(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire()
    assert (tmp_path / PID_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(ConfigError, match=rf"--data-dir: .* in use by another codex-node \(pid {os.getpid()}\)"):
        DataDirLock(tmp_path).acquire()
    first.release()
    first.release()  # idempotent
    second = DataDirLock(tmp_path)
    second.acquire()  # free again once released
    second.release()


def test_a_pid_file_left_by_a_dead_node_does_not_keep_the_next_one_out(tmp_path: Path) -> None:
    (tmp_path / PID_FILE).write_text("999999\n")  # a node killed with -9: its file stays, its flock went with it
    lock = DataDirLock(tmp_path)
    lock.acquire()
    assert (tmp_path / PID_FILE).read_text() == f"{os.getpid()}\n"
    lock.release()
