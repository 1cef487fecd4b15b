"""The node's HTTP provider: web3's session cache without the process-wide lock a cancelled request can leave taken
(web3.py issue #3867; ``market/rpcsession.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from eth_typing import URI
from web3 import AsyncWeb3
from web3._utils.http_session_manager import HTTPSessionManager

from codex_node.market.rpcsession import LoopSessionManager, http_provider
from tests.harness.loopback import serve


@pytest.fixture
async def rpc_url() -> AsyncIterator[str]:
    """A JSON-RPC endpoint on 127.0.0.1 answering ``eth_chainId`` with 1337 (after yielding to the loop once)."""

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        await asyncio.sleep(0)  # an answer that takes a loop turn, so requests overlap
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": hex(1337)})

    app = web.Application()
    app.router.add_post("/", handle)
    runner, port = await serve(app)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_one_session_per_endpoint_is_made_once_and_replaced_when_closed() -> None:
    manager = LoopSessionManager()
    uri = URI("http://127.0.0.1:1")
    first = await manager.async_cache_and_return_session(uri)
    assert await manager.async_cache_and_return_session(uri) is first
    await first.close()
    second = await manager.async_cache_and_return_session(uri)
    assert second is not first
    assert not second.closed
    assert [s for _, s in manager.session_cache.items()] == [second]  # what the provider's disconnect closes
    await second.close()


async def test_cancelled_requests_never_leave_a_lock_taken_and_later_requests_are_answered(rpc_url: str) -> None:
    provider = http_provider(rpc_url)
    assert isinstance(provider._request_session_manager, LoopSessionManager)  # web3 still reads it from there
    w3: AsyncWeb3[Any] = AsyncWeb3(provider)
    try:
        for _ in range(20):
            tasks = [asyncio.ensure_future(w3.eth.chain_id) for _ in range(8)]
            await asyncio.sleep(0)  # every request under way, none answered
            for t in tasks[::2]:
                t.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert list(done[1::2]) == [1337] * 4
        # A deadline, not a pause: the stock provider's lock, once leaked, makes this wait forever.
        assert await asyncio.wait_for(w3.eth.chain_id, timeout=30) == 1337
        # No request went through web3's thread-pool lock: no pool thread was ever started, the lock is free.
        assert not provider._request_session_manager.session_pool._threads
        assert not HTTPSessionManager._lock.locked()
    finally:
        await provider.disconnect()
    assert len(provider._request_session_manager.session_cache) == 0  # disconnect closed and dropped ours
