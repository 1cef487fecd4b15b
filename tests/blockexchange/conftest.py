"""Peers on 127.0.0.1 for the block exchange's tests: honest nodes' apps over their own repos, and hostile ones."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from starlette.types import ASGIApp

from codex_node.api.app import API_PREFIX
from codex_node.api.server import HttpServer
from codex_node.peers.port import PeerInfo
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

TTL = 3600
Serve = Callable[[ASGIApp, str], Awaitable[PeerInfo]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_repo(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., RepoStore]]:
    made: list[RepoStore] = []

    def make(name: str, quota_max: int = 1 << 30) -> RepoStore:
        repo = RepoStore(
            MemoryKV(),
            BlockFiles(tmp_path / name, sync="none"),
            clock=clock,
            quota_max=quota_max,
            block_ttl=TTL,
            registry=None,
        )
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[HttpServer] = []

    async def start(app: ASGIApp, name: str) -> PeerInfo:
        server = HttpServer(app, "127.0.0.1", 0, flag="--api-port", name=name, graceful_timeout=1)
        await server.start()
        servers.append(server)
        return PeerInfo(peer_id=name, urls=(f"{server.url}{API_PREFIX}",))

    yield start
    for server in reversed(servers):
        await server.stop()
