"""A RepoStore for tests that need a real block store but not LevelDB: pack files under a folder, metadata in
memory, a fake clock, no metrics registry."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from codex_node.clock import Clock
from codex_node.data.cid import Cid
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV


@contextlib.contextmanager
def memory_repo(
    root: Path, *, quota_max: int = 1 << 30, block_ttl: int = 3600, clock: Clock | None = None
) -> Iterator[RepoStore]:
    """A repo with its blocks under ``root``; closed when the block ends."""
    store = RepoStore(
        MemoryKV(),
        BlockFiles(root, sync="none"),
        clock=clock or FakeClock(),
        quota_max=quota_max,
        block_ttl=block_ttl,
        registry=None,
    )
    try:
        yield store
    finally:
        store.close()


def corrupt_on_disk(repo: RepoStore, cid: Cid, at: int = 100) -> None:
    """Flip one byte of the block's data inside its pack file."""
    meta = repo.block_meta(cid)
    assert meta is not None
    path = repo.files.pack_path(meta.pack)
    with open(path, "r+b") as f:
        f.seek(meta.offset + at)
        byte = f.read(1)
        f.seek(meta.offset + at)
        f.write(bytes([byte[0] ^ 0xFF]))
