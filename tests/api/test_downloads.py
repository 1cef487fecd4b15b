"""At most --api-max-downloads downloads at once; over the cap, 503 with Retry-After; a slot frees when one ends."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Message

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.downloads import RETRY_AFTER_SECONDS
from codex_node.api.routes.data import DOWNLOAD_READ_BLOCKS
from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.data.manifest import BLOCK_SIZE
from codex_node.stores.repostore import RepoStore
from tests.harness.repo import memory_repo


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "repo") as store:
        yield store


class StalledReader:
    """A client that opened a download and reads nothing after the first body chunk (its send never returns)."""

    def __init__(self, app: object, path: str) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8080),
        }
        self.status: int | None = None
        self.requested = False
        self.chunks: list[bytes] = []
        self.stalled = asyncio.Event()
        self.release = asyncio.Event()
        self.task = asyncio.create_task(app(self.scope, self.receive, self.send))  # type: ignore[operator]

    async def receive(self) -> Message:
        if not self.requested:
            self.requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.release.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message.get("body"):
            self.chunks.append(bytes(message["body"]))
            self.stalled.set()
            await self.release.wait()


async def test_over_the_cap_a_download_gets_503_with_retry_after_until_one_ends(
    tmp_path: Path, repo: RepoStore
) -> None:
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False, api_max_downloads=2), repo=repo)
    data = os.urandom(20 * BLOCK_SIZE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}") as c:
        cid = (await c.post("/data", content=data)).text
        readers = [StalledReader(app, f"{API_PREFIX}/data/{cid}") for _ in range(2)]
        await asyncio.wait_for(asyncio.gather(*(r.stalled.wait() for r in readers)), 10)
        refused = await c.get(f"/data/{cid}")
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
        assert "retry later" in refused.json()["error"]
        assert (await c.get("/space")).status_code == 200  # only downloads are capped
        # A stalled reader holds one chunk of DOWNLOAD_READ_BLOCKS blocks, not the dataset.
        assert [len(chunk) for chunk in readers[0].chunks] == [DOWNLOAD_READ_BLOCKS * BLOCK_SIZE]
        readers[0].release.set()
        await asyncio.wait_for(readers[0].task, 10)
        assert (await c.get(f"/data/{cid}")).content == data
        readers[1].release.set()
        await asyncio.wait_for(readers[1].task, 10)


async def test_blocks_served_to_peers_count_against_the_download_cap(tmp_path: Path, repo: RepoStore) -> None:
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False, api_max_downloads=1), repo=repo)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}") as c:
        cid = (await c.post("/data", content=os.urandom(40 * BLOCK_SIZE))).text
        block = (await repo.get_manifest(parse_cid(cid))).block_cid(0)
        reader = StalledReader(app, f"{API_PREFIX}/data/{cid}")
        await asyncio.wait_for(reader.stalled.wait(), 10)
        assert (await c.get(f"/blocks/{block}")).status_code == 503
        assert (await c.post("/blocks", json={"cids": [block.text]})).status_code == 503
        reader.release.set()
        await asyncio.wait_for(reader.task, 10)
        assert (await c.get(f"/blocks/{block}")).content == await repo.get_block(block)
