"""The metadata store after a failed write: nothing acknowledged afterwards may be lost.

LevelDB appends each batch to its log. A write that fails part way (a full disk) can leave a torn record in the
log; LevelDB goes on accepting writes into the same log, and at the next open its recovery drops the torn record
*and the records after it in the same log block* — writes the store had acknowledged. Found on the embedded
chain's database (market/chaindb.py), which has the same pattern. The store reopens its database after a failed
write (recovery then starts a fresh log) before it accepts another one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from codex_node.errors import DiskFullError, KVError
from codex_node.stores.kv import LevelDBStore

KiB = 1024


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at ``tmp_path / "disk"`` (needs root, which CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(path: Path) -> None:
    """Take every free byte of the file system ``path`` is on."""
    with path.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * (64 * KiB))
                f.flush()
        except OSError:
            pass


def test_writes_acknowledged_after_a_failed_write_survive_a_reopen(tmpfs: Path) -> None:
    kv = LevelDBStore(tmpfs / "meta")
    for i in range(20):
        kv.put(f"before/{i:04}", b"x" * 100)
    filler = tmpfs / "filler"
    fill(filler)
    failure = None
    for i in range(10_000):  # until the log cannot grow
        b = kv.batch()
        b.put(f"lost/{i:05}", os.urandom(4 * KiB))
        try:
            kv.write(b)
        except (DiskFullError, KVError) as e:
            failure = e
            break
    assert isinstance(failure, DiskFullError)
    filler.unlink()  # the operator frees space; the node goes on
    acknowledged = []
    for i in range(50):
        b = kv.batch()
        b.put(f"after/{i:04}", b"y" * 100)
        kv.write(b)
        acknowledged.append(f"after/{i:04}")
    kv.close()

    reopened = LevelDBStore(tmpfs / "meta")
    try:
        missing = [k for k in acknowledged if reopened.get(k) != b"y" * 100]
        assert missing == []
        assert all(reopened.get(f"before/{i:04}") == b"x" * 100 for i in range(20))
    finally:
        reopened.close()
