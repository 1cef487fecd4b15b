"""Over a ``ws://`` provider the event stream is woken by a ``newHeads`` subscription (Hardhat serves websockets on
its HTTP port), and falls back to polling when subscribing fails; delivery is exactly once either way."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
import structlog
from chainenv import TEST_OPTIONS
from chainfixtures import chain_snapshot, eventually, new_request

from codex_node.market.onchain import OnChainMarket
from codex_node.market.provider import connect
from codex_node.market.types import RequestId, StorageRequested
from codex_node.testing.memorykv import MemoryKV

pytestmark = pytest.mark.hardhat


async def _follow_requests(subscribe_fails: bool, poll_interval: float) -> tuple[Counter[RequestId], list[Any], bool]:
    """Post three requests over http while a host follows the chain over ws; each request's count of deliveries."""
    async with chain_snapshot("hardhat") as (chain, w3, deployment):
        client = OnChainMarket(w3, deployment, chain.accounts[0], MemoryKV(), options=TEST_OPTIONS)
        ws_url = chain.control.url.replace("http://", "ws://")  # type: ignore[attr-defined]
        async with connect(ws_url, request_timeout=5.0) as via:
            if subscribe_fails:

                async def refuse(*args: Any, **kwargs: Any) -> Any:
                    raise ValueError("eth_subscribe is not available")

                via.eth.subscribe = refuse  # type: ignore[method-assign]
            options = replace(TEST_OPTIONS, poll_interval=poll_interval)
            host = OnChainMarket(via, deployment, chain.accounts[1], MemoryKV(), options=options)
            seen: Counter[RequestId] = Counter()

            async def on_request(event: StorageRequested) -> None:
                seen[event.request_id] += 1

            await host.subscribe(StorageRequested, on_request)
            with structlog.testing.capture_logs() as logs:
                await host.start()
                requests = [new_request(await client.get_signer()) for _ in range(3)]
                for request in requests:
                    await client.request_storage(request)  # by another connection: nothing wakes the host but ws
                await eventually(lambda: all(seen[r.id] >= 1 for r in requests))
                subscribed = host.events.subscribed
                last = await w3.eth.block_number
                await host.events.wait_delivered(last)
                await host.stop()
        await client.stop()
    return Counter({r.id: seen[r.id] for r in requests}), logs, subscribed


async def test_a_websocket_subscription_wakes_the_event_stream_and_delivers_each_event_once() -> None:
    # A poll interval far beyond the test's patience: only the subscription can bring the events in time.
    seen, logs, subscribed = await _follow_requests(subscribe_fails=False, poll_interval=120.0)
    assert subscribed
    assert set(seen.values()) == {1}
    assert "following new blocks through a websocket subscription" in [entry["event"] for entry in logs]


async def test_the_event_stream_falls_back_to_polling_when_subscribing_fails() -> None:
    seen, logs, subscribed = await _follow_requests(subscribe_fails=True, poll_interval=0.05)
    assert not subscribed
    assert set(seen.values()) == {1}
    failures = [entry for entry in logs if entry["event"] == "websocket subscription failed: the event stream polls"]
    assert failures
    assert "eth_subscribe is not available" in failures[0]["error"]
