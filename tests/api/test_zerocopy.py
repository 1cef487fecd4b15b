"""Downloads sent with ASGI's zero-copy send when the server offers it (``api/zerocopy.py``), driven as raw ASGI."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from codex_node.api.errors import install_error_handlers
from codex_node.api.routes.data import router
from codex_node.api.services import Services, provide
from codex_node.api.zerocopy import ZEROCOPY
from codex_node.data.cid import Cid, block_cid
from codex_node.data.manifest import BLOCK_SIZE
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

API = "/api/codex/v1"


def _repo(tmp_path: Path, *, verify_reads: bool = False) -> RepoStore:
    files = BlockFiles(tmp_path / "repo", sync="none")
    kv = MemoryKV()
    return RepoStore(kv, files, clock=FakeClock(), quota_max=1 << 30, block_ttl=3600, verify_reads=verify_reads)


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    store = _repo(tmp_path)
    yield store
    store.close()


def _app(repo: RepoStore) -> FastAPI:
    app = FastAPI()
    app.include_router(router, prefix=API)
    install_error_handlers(app)
    provide(app, Services(repo=repo))
    return app


class _Server:
    """Plays an ASGI server that offers (or not) zero-copy sends; reads each region while its file is open."""

    def __init__(self, *, zerocopy: bool) -> None:
        self.zerocopy = zerocopy
        self.messages: list[dict[str, Any]] = []
        self.body = bytearray()
        self.files: list[Any] = []

    async def get(self, app: FastAPI, path: str) -> int:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1")],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 8080),
            "extensions": {ZEROCOPY: {}} if self.zerocopy else {},
        }

        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client stays: no disconnect
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            self.messages.append(message)
            if message["type"] == ZEROCOPY:
                self.files.append(message["file"])
                self.body += os.pread(message["file"].fileno(), message["count"], message["offset"])
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")

        await app(scope, receive, send)
        return int(self.messages[0]["status"])

    def header(self, name: bytes) -> bytes | None:
        return dict(self.messages[0]["headers"]).get(name)

    def count(self, kind: str) -> int:
        return sum(1 for m in self.messages if m["type"] == kind)


def _data(blocks: int, tail: int = 1000) -> bytes:
    return b"".join(i.to_bytes(4, "big") * (BLOCK_SIZE // 4) for i in range(blocks)) + os.urandom(tail)


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 100_000):
        yield data[i : i + 100_000]


async def _upload(repo: RepoStore, data: bytes) -> Cid:
    return await store_dataset(repo, _stream(data))


async def test_a_dataset_is_sent_as_one_zero_copy_region_per_block_when_the_server_offers_it(repo: RepoStore) -> None:
    data = _data(20)
    cid = await _upload(repo, data)
    server = _Server(zerocopy=True)
    assert await server.get(_app(repo), f"{API}/data/{cid}") == 200
    assert bytes(server.body) == data
    assert server.count(ZEROCOPY) == 21  # 20 whole blocks and the short last one, no byte through the process
    assert server.header(b"content-length") == str(len(data)).encode()
    assert all(f.closed for f in server.files)  # every pack file closed once its regions were sent


async def test_without_the_extension_a_dataset_is_read_and_sent_as_body_chunks(repo: RepoStore) -> None:
    data = _data(10)
    cid = await _upload(repo, data)
    server = _Server(zerocopy=False)
    assert await server.get(_app(repo), f"{API}/data/{cid}") == 200
    assert bytes(server.body) == data
    assert server.count(ZEROCOPY) == 0


async def test_a_single_block_is_sent_with_zero_copy(repo: RepoStore) -> None:
    block = os.urandom(5000)
    cid = block_cid(block)
    await repo.put_block(cid, block)
    server = _Server(zerocopy=True)
    assert await server.get(_app(repo), f"{API}/data/{cid}") == 200
    assert bytes(server.body) == block
    assert server.count(ZEROCOPY) == 1
    assert server.header(b"content-length") == b"5000"


async def test_a_missing_block_is_a_404_before_anything_is_sent(repo: RepoStore) -> None:
    server = _Server(zerocopy=True)
    assert await server.get(_app(repo), f"{API}/data/{block_cid(b'absent')}") == 404
    assert server.count(ZEROCOPY) == 0


async def test_verify_reads_prefers_hashed_positioned_reads_over_zero_copy(tmp_path: Path) -> None:
    repo = _repo(tmp_path, verify_reads=True)
    try:
        data = _data(4)
        cid = await _upload(repo, data)
        server = _Server(zerocopy=True)
        assert await server.get(_app(repo), f"{API}/data/{cid}") == 200
        assert bytes(server.body) == data
        assert server.count(ZEROCOPY) == 0
    finally:
        repo.close()
