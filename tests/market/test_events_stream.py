"""The event stream on real chains: exactly-once delivery across restarts, catch-up in pages, confirmations.

The cursor tests run on eth-tester and on Hardhat; the others on eth-tester only (same code, faster chain).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from chainenv import OnChainEnv
from chainfixtures import WAIT, chain_snapshot, eventually, market, new_request
from structlog.testing import capture_logs

from codex_node.market.events import CURSOR_PREFIX, Cursor
from codex_node.market.onchain import MarketOptions
from codex_node.market.types import (
    HistoryMark,
    MarketEvent,
    ProofSubmitted,
    RequestFulfilled,
    RequestId,
    SlotFilled,
    StorageRequested,
    slot_id,
)
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.memorykv import MemoryKV

BOTH_CHAINS = ["eth-tester", pytest.param("hardhat", marks=pytest.mark.hardhat)]


class Recorder:
    def __init__(self) -> None:
        self.events: list[MarketEvent] = []

    async def __call__(self, event: Any) -> None:
        self.events.append(event)

    def requested(self) -> list[RequestId]:
        return [e.request_id for e in self.events if isinstance(e, StorageRequested)]


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_restart_on_the_same_store_delivers_every_event_exactly_once(chain_name: str, tmp_path: Path) -> None:
    """A stopped node misses nothing and repeats nothing: the cursor lives in the (reopened) LevelDB."""
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        client = await poster.get_signer()
        recorder = Recorder()
        posted: list[RequestId] = []

        async def post() -> None:
            request = new_request(client)
            await poster.request_storage(request)
            posted.append(request.id)

        kv = LevelDBStore(tmp_path / "meta")
        first = market(chain, w3, deployment, kv=kv)
        await first.subscribe(StorageRequested, recorder)
        await first.start()
        await post()
        await eventually(lambda: recorder.requested() == posted[:1])
        await first.stop()

        await post()  # mined while the node is down
        await post()
        kv.close()

        kv = LevelDBStore(tmp_path / "meta")
        second = market(chain, w3, deployment, kv=kv)
        await second.subscribe(StorageRequested, recorder)  # before start: the catch-up is for it
        await second.start()
        await eventually(lambda: len(recorder.requested()) >= 3)
        await post()
        await eventually(lambda: len(recorder.requested()) >= 4)
        await second.stop()
        await poster.stop()
        kv.close()

        assert recorder.requested() == posted


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_a_stop_between_two_events_of_one_block_resumes_at_the_second(chain_name: str) -> None:
    """fillSlot emits ProofSubmitted then SlotFilled in one block; stopping in between keeps the log index."""
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        kv = MemoryKV()
        client = market(chain, w3, deployment, kv=kv)
        host = client.for_account(chain.accounts[1])
        env = OnChainEnv("cursor", chain, w3, client, [host], client, deployment.marketplace)
        request = env.new_request(await client.get_signer())
        await client.request_storage(request)
        sid = slot_id(request.id, 0)

        in_handler, release = asyncio.Event(), asyncio.Event()
        recorder = Recorder()

        async def on_proof(event: ProofSubmitted) -> None:
            await recorder(event)
            in_handler.set()
            await release.wait()  # the stop arrives while this handler runs

        await client.subscribe(ProofSubmitted, on_proof)
        await client.subscribe(SlotFilled, recorder)
        await client.start()
        await host.reserve_slot(request.id, 0)
        await host.fill_slot(request.id, 0, await env.valid_proof(request, 0), request.ask.collateral_per_slot)
        fill_block = await w3.eth.block_number
        async with asyncio.timeout(WAIT):
            await in_handler.wait()
        stopping = asyncio.create_task(client.stop())
        await asyncio.sleep(0)
        release.set()  # the stop waits for the running handler, then ends before the next log
        await stopping

        assert recorder.events == [ProofSubmitted(sid)]
        stored = kv.get(CURSOR_PREFIX + deployment.marketplace)
        assert stored is not None
        cursor = Cursor.decode(stored)
        assert cursor.block == fill_block
        assert cursor.log_index > 0  # after the ProofSubmitted log, before SlotFilled

        restarted = market(chain, w3, deployment, kv=kv)
        await restarted.subscribe(ProofSubmitted, recorder)
        await restarted.subscribe(SlotFilled, recorder)
        await restarted.start()
        async with asyncio.timeout(WAIT):
            await restarted.events.wait_delivered(fill_block)
        await restarted.stop()
        await host.stop()
        assert recorder.events == [ProofSubmitted(sid), SlotFilled(request.id, 0)]


async def test_an_abruptly_cancelled_stream_loses_and_repeats_nothing() -> None:
    """A killed node (its stream task cancelled wherever it waits) restarts from the cursor."""
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        client = await poster.get_signer()
        kv = MemoryKV()
        recorder = Recorder()
        posted: list[RequestId] = []
        for round_ in range(3):
            stream_market = market(chain, w3, deployment, kv=kv)
            await stream_market.subscribe(StorageRequested, recorder)
            await stream_market.start()
            for _ in range(2):
                request = new_request(client)
                await poster.request_storage(request)
                posted.append(request.id)
            expected = len(posted)
            await eventually(lambda: len(recorder.requested()) >= expected)  # noqa: B023 - awaited right here
            task = stream_market.events._task
            assert task is not None
            task.cancel()  # no graceful stop: like a kill between two events
            await asyncio.gather(task, return_exceptions=True)
            assert recorder.requested() == posted, f"round {round_}"
        await poster.stop()


async def test_catch_up_reads_in_pages_and_splits_ranges_the_node_refuses() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        client = await poster.get_signer()
        posted = []
        for _ in range(5):
            request = new_request(client)
            await poster.request_storage(request)
            posted.append(request.id)
            chain.control.mine(3)  # spread the events over many blocks

        ranges: list[tuple[int, int]] = []
        get_logs = w3.eth.get_logs

        async def capped_get_logs(params: Any) -> Any:
            ranges.append((params["fromBlock"], params["toBlock"]))
            if params["toBlock"] - params["fromBlock"] > 3:
                raise ValueError("query returned more than 10000 results")  # what a capped node says
            return await get_logs(params)

        w3.eth.get_logs = capped_get_logs  # type: ignore[method-assign]
        recorder = Recorder()
        reader = market(chain, w3, deployment, options=MarketOptions(page_size=10, poll_interval=0.05))
        await reader.subscribe(StorageRequested, recorder)
        await reader.start()
        head = await w3.eth.block_number
        async with asyncio.timeout(WAIT):
            await reader.events.wait_delivered(head)
        await reader.stop()
        await poster.stop()

        assert recorder.requested() == posted
        assert max(last - first for first, last in ranges) <= 9  # pages of at most page_size blocks
        assert any(last - first > 3 for first, last in ranges)  # refused, then split
        assert reader.events.cursor == Cursor(head + 1)


async def test_events_wait_for_the_confirmation_depth() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        recorder = Recorder()
        reader = market(chain, w3, deployment, options=MarketOptions(confirmations=2, poll_interval=0.02))
        await reader.subscribe(StorageRequested, recorder)
        await reader.start()
        request = new_request(await poster.get_signer())
        await poster.request_storage(request)
        mined_in = await w3.eth.block_number

        reader.events.wake()
        await eventually(lambda: (head := reader.events.head) is not None and head.number >= mined_in)
        await asyncio.sleep(0.1)  # a few polls at the head: still not deep enough
        assert recorder.events == []
        assert reader.events.cursor.block <= mined_in

        chain.control.mine(2)
        reader.events.wake()
        async with asyncio.timeout(WAIT):
            await reader.events.wait_delivered(mined_in)
        assert recorder.requested() == [request.id]
        await reader.stop()
        await poster.stop()


async def test_a_failing_handler_is_counted_and_the_others_still_run() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)

        async def broken(event: StorageRequested) -> None:
            raise RuntimeError("handler bug")

        recorder = Recorder()
        await poster.subscribe(StorageRequested, broken)
        await poster.subscribe(StorageRequested, recorder)
        await poster.start()
        first, second = new_request(await poster.get_signer()), new_request(await poster.get_signer())
        await poster.request_storage(first)
        await poster.request_storage(second)
        await eventually(lambda: len(recorder.events) >= 2)
        assert recorder.requested() == [first.id, second.id]
        assert poster.events.handler_failures == 2
        assert poster.events.running
        await poster.stop()


async def test_a_subscriber_added_while_running_gets_only_later_events() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        early = Recorder()
        await poster.subscribe(StorageRequested, early)
        await poster.start()
        before = new_request(await poster.get_signer())
        await poster.request_storage(before)

        late = Recorder()
        await poster.subscribe(StorageRequested, late)
        after = new_request(await poster.get_signer())
        await poster.request_storage(after)
        await eventually(lambda: len(early.events) >= 2)
        await poster.events.wait_delivered(await w3.eth.block_number)
        assert early.requested() == [before.id, after.id]
        assert late.requested() == [after.id]
        await poster.stop()


async def test_the_clock_follows_the_chain_head() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        reader = market(chain, w3, deployment)
        await reader.start()
        latest = await w3.eth.get_block("latest")
        assert reader.clock.now() == latest["timestamp"]

        target = int(latest["timestamp"]) + 100
        waiting = asyncio.create_task(reader.clock.wait_until(target))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        chain.control.mine_at(target)
        async with asyncio.timeout(WAIT):
            await waiting
        assert reader.clock.now() == target
        await reader.stop()


async def test_fill_events_arrive_in_log_order_within_a_block() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        hosts = [client.for_account(a) for a in chain.accounts[1:4]]
        env = OnChainEnv("order", chain, w3, client, hosts, client, deployment.marketplace)
        recorder = Recorder()
        for event_type in (ProofSubmitted, SlotFilled, RequestFulfilled):
            await client.subscribe(event_type, recorder)
        await client.start()
        request = env.new_request(await client.get_signer())
        await client.request_storage(request)
        for i, host in enumerate(hosts):
            await host.reserve_slot(request.id, i)
            await host.fill_slot(request.id, i, await env.valid_proof(request, i), request.ask.collateral_per_slot)
        await eventually(lambda: len(recorder.events) >= 7)
        assert [type(e).__name__ for e in recorder.events] == [
            "ProofSubmitted", "SlotFilled", "ProofSubmitted", "SlotFilled", "ProofSubmitted", "SlotFilled",
            "RequestFulfilled",
        ]  # fmt: skip
        for market_ in (*hosts, client):
            await market_.stop()


async def test_past_events_reads_the_history_in_pages_without_delivering_or_moving_the_cursor() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        client = await poster.get_signer()
        posted = []
        for _ in range(4):
            request = new_request(client)
            await poster.request_storage(request)
            posted.append(request.id)
            chain.control.mine(4)  # spread the events over more blocks than a page holds
        ranges: list[tuple[int, int]] = []
        get_logs = w3.eth.get_logs

        async def recorded_get_logs(params: Any) -> Any:
            ranges.append((params["fromBlock"], params["toBlock"]))
            return await get_logs(params)

        w3.eth.get_logs = recorded_get_logs  # type: ignore[method-assign]
        reader = market(chain, w3, deployment, options=MarketOptions(page_size=5))
        recorder = Recorder()
        await reader.subscribe(StorageRequested, recorder)
        cursor = reader.events.cursor
        history = await reader.past_events()
        await poster.stop()
        await reader.stop()

        assert [e.request_id for e in history if isinstance(e, StorageRequested)] == posted
        assert ranges[0][0] == deployment.block_number
        assert len(ranges) > 1
        assert max(last - first for first, last in ranges) <= 4
        assert recorder.events == []  # a read of the history, not a delivery
        assert reader.events.cursor == cursor


async def test_past_events_from_a_mark_on_and_the_mark_the_validator_saves() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        poster = market(chain, w3, deployment)
        client = await poster.get_signer()
        blocks = []
        for _ in range(3):
            await poster.request_storage(new_request(client))
            blocks.append(int(await w3.eth.block_number))
            chain.control.mine(3)
        reader = market(chain, w3, deployment, options=MarketOptions(page_size=5))
        second = HistoryMark(blocks[1], bytes((await w3.eth.get_block(blocks[1]))["hash"]))
        since_second = await reader.past_events(second)
        unanchored = await reader.past_events(HistoryMark(blocks[1]))
        everything = await reader.past_events()
        with capture_logs() as logs:
            changed = await reader.past_events(HistoryMark(blocks[1], b"\x01" * 32))  # not this chain's block
        mark_before = await reader.history_mark()
        await reader.events.start()
        await reader.events.wait_delivered(int(await w3.eth.block_number))
        mark_after = await reader.history_mark()
        after_hash = bytes((await w3.eth.get_block(mark_after.point))["hash"])
        await poster.stop()
        await reader.stop()

    requested = [e for e in everything if isinstance(e, StorageRequested)]
    assert len(requested) == 3
    assert [e for e in since_second if isinstance(e, StorageRequested)] == requested[1:]
    assert unanchored == since_second
    assert changed == everything  # a mark the chain does not have: the whole history
    assert any(e["event"].startswith("the chain changed since the mark was taken") for e in logs)
    assert mark_before == HistoryMark(deployment.block_number)  # nothing delivered yet: the start, unchecked
    # Delivered up to the head: the oldest block the stream remembers, with the hash the chain has for it.
    assert deployment.block_number <= mark_after.point <= blocks[0]
    assert mark_after.anchor == after_hash
