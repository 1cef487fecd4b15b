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
    """A peer's block routes over ``repo`` that lie: ``corrupt`` flips a byte of every block it serves, ``stall``
    sends its answer's headers and then nothing; ``arrived`` is set when a request came in."""

    def __init__(self, repo: RepoStore, *, corrupt: bool = False, stall: bool = False) -> None:
        self.repo = repo
        self.corrupt = corrupt
        self.stall = stall
        self.arrived = asyncio.Event()
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
        if scope["path"].endswith("/blocks"):
            cids = [parse_cid(t) for t in json.loads(body)["cids"]]
            out = bytearray()
            for cid in cids:
                data = await self.repo.get_block(cid) if self.repo.has_block(cid) else None
                out += frame(data) + (self._spoil(data) if data is not None else b"")
        else:
            cid = parse_cid(scope["path"].rsplit("/", 1)[1])
            out = bytearray(self._spoil(await self.repo.get_block(cid)))
        await send({"type": "http.response.body", "body": bytes(out)})

    async def wait_requests(self, n: int) -> None:
        """Return once ``n`` requests came in."""
        async with self._counted:
            await self._counted.wait_for(lambda: self.requests >= n)

    def _spoil(self, data: bytes) -> bytes:
        if not self.corrupt:
            return data
        return bytes([data[0] ^ 1]) + data[1:]
