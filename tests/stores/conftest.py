from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.kv import KVStore
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

MakeRepo = Callable[..., RepoStore]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kv() -> MemoryKV:
    return MemoryKV()


@pytest.fixture
def make_repo(tmp_path: Path, clock: FakeClock, kv: MemoryKV) -> Iterator[MakeRepo]:
    """Open a RepoStore (MemoryKV, files under tmp_path, no flushes); reopening with the same kv is a restart."""
    opened: list[RepoStore] = []

    def make(
        store: KVStore | None = None,
        *,
        files: BlockFiles | None = None,
        quota_max: int = 1 << 30,
        ttl: int = 3600,
    ) -> RepoStore:
        repo = RepoStore(
            kv if store is None else store,
            files or BlockFiles(tmp_path / "repo", sync="none"),
            clock=clock,
            quota_max=quota_max,
            block_ttl=ttl,
            registry=None,
        )
        opened.append(repo)
        return repo

    yield make
    for repo in opened:
        repo.close()
