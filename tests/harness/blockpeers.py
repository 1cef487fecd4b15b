"""Peers for the block exchange's tests: honest nodes' block routes over their own repos, and hostile ones."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

from starlette.types import ASGIApp, Receive, Scope, Send

from codex_node.api.app import create_app
from codex_node.blockexchange.wire import frame
from codex_node.data.cid import Cid, parse_cid
from codex_node.data.manifest import Manifest
from codex_node.data.slots import BLOCK_SIZE
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(repo: RepoStore, nblocks: int) -> tuple[Cid, Manifest]:
    cid = await store_dataset(repo, _chunks(os.urandom(nblocks * BLOCK_SIZE)))
    return cid, await repo.get_manifest(cid)


def honest_app(repo: RepoStore) -> ASGIApp:
    return create_app(repo=repo)


class HostilePeer:
    """A peer's block routes over ``repo`` that lie: ``corrupt`` flips a byte of every block it serves (or only of
    the block at position ``corrupt_at`` of a batch answer), ``stall`` sends its answer's headers and then nothing,
    ``pause_after`` sends the first that many frames of a batch answer and the rest once ``resume`` is set;
    ``arrived`` is set when a request came in, ``paused`` once an answer is waiting for ``resume``."""

    def __init__(
        self,
        repo: RepoStore,
        *,
        corrupt: bool = False,
        corrupt_at: int | None = None,
        stall: bool = False,
        pause_after: int | None = None,
    ) -> None:
        self.repo = repo
        self.corrupt = corrupt
        self.corrupt_at = corrupt_at
        self.stall = stall
        self.pause_after = pause_after
        self.arrived = asyncio.Event()
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.requests = 0
        self._counted = asyncio.Condition()
        self._forever = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        async with self._counted:
            self.requests += 1
            self._counted.notify_all()
        self.arrived.set()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"x")]})
        if self.stall:
            await self._forever.wait()
        if not scope["path"].endswith("/blocks"):
            cid = parse_cid(scope["path"].rsplit("/", 1)[1])
            await send({"type": "http.response.body", "body": self._spoil(await self.repo.get_block(cid))})
            return
        out = bytearray()
        for at, cid in enumerate(parse_cid(t) for t in json.loads(body)["cids"]):
            if at == self.pause_after:
                await send({"type": "http.response.body", "body": bytes(out), "more_body": True})
                out.clear()
                self.paused.set()
                await self.resume.wait()
            data = await self.repo.get_block(cid) if self.repo.has_block(cid) else None
            spoil = self.corrupt if self.corrupt_at is None else at == self.corrupt_at
            out += frame(data) + (self._spoil(data) if data is not None and spoil else data or b"")
        await send({"type": "http.response.body", "body": bytes(out)})

    async def wait_requests(self, n: int) -> None:
        """Return once ``n`` requests came in."""
        async with self._counted:
            await self._counted.wait_for(lambda: self.requests >= n)

    def _spoil(self, data: bytes) -> bytes:
        if not self.corrupt and self.corrupt_at is None:
            return data
        return bytes([data[0] ^ 1]) + data[1:]
