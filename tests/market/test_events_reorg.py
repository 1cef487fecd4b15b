"""The event stream when the chain changes under its cursor: blocks it delivered are replaced (a reorganisation,
Hardhat's ``evm_revert``, an embedded chain that came back shorter). It rewinds to the last block both share and
delivers the new blocks' events, while running and at start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chainenv import SharedChain
from chainfixtures import chain_snapshot, eventually, market, new_request

from codex_node.market.deployment import Deployment
from codex_node.market.events import CURSOR_PREFIX, RECENT_BLOCKS, Cursor, _decode_stored, _encode_stored
from codex_node.market.types import ChainReorganised, MarketEvent, RequestId, StorageRequested
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


async def post(chain: SharedChain, w3: Any, deployment: Deployment) -> RequestId:
    """Post a request from a fresh market (its nonce read from the chain as it is now)."""
    poster = market(chain, w3, deployment)
    try:
        request = new_request(await poster.get_signer())
        await poster.request_storage(request)
        return request.id
    finally:
        await poster.stop()


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_a_running_stream_delivers_the_events_of_blocks_that_replaced_delivered_ones(chain_name: str) -> None:
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        recorder = Recorder()
        reader = market(chain, w3, deployment)
        await reader.subscribe(StorageRequested, recorder)
        await reader.subscribe(ChainReorganised, recorder)
        await reader.start()
        before = chain.control.snapshot()
        lost = await post(chain, w3, deployment)
        lost_block = (await w3.eth.get_block("latest"))["number"]
        await eventually(lambda: recorder.requested() == [lost])
        assert not any(isinstance(e, ChainReorganised) for e in recorder.events)
        chain.control.revert(before)  # the blocks of `lost` leave the chain
        replacing = await post(chain, w3, deployment)  # blocks of the same numbers, other hashes
        await eventually(lambda: replacing in recorder.requested())
        await reader.stop()
        assert recorder.requested() == [lost, replacing]  # handlers are idempotent: `lost` is not taken back
        # The subscribers heard of the rewind once, before the new blocks' events, from a block at or before the
        # lost one's.
        kinds = [type(e) for e in recorder.events]
        assert kinds == [StorageRequested, ChainReorganised, StorageRequested]
        rewound = recorder.events[1]
        assert isinstance(rewound, ChainReorganised)
        assert rewound.first_block <= lost_block


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_the_clock_follows_a_shorter_chain_whose_blocks_are_later(chain_name: str) -> None:
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        reader = market(chain, w3, deployment)
        await reader.start()
        start = await w3.eth.block_number
        before = chain.control.snapshot()
        chain.control.mine(5)
        await eventually(lambda: reader.clock.block_number == start + 5)
        seen = reader.clock.now()
        chain.control.revert(before)  # the five blocks leave the chain
        chain.control.mine_at(seen + 100)  # one block, numbered below the ones seen, but later
        await eventually(lambda: reader.clock.now() == seen + 100)
        await reader.stop()


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_a_restarted_stream_rewinds_to_the_last_common_block(chain_name: str, tmp_path: Path) -> None:
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        recorder = Recorder()
        kv = LevelDBStore(tmp_path / "meta")
        first = market(chain, w3, deployment, kv=kv)
        await first.subscribe(StorageRequested, recorder)
        await first.start()
        common = await w3.eth.get_block("latest")
        before = chain.control.snapshot()
        lost = await post(chain, w3, deployment)
        await eventually(lambda: recorder.requested() == [lost])
        await first.stop()
        assert first.events.cursor.block > common["number"] + 1

        chain.control.revert(before)  # while the node is down: the cursor is past blocks that are gone
        replacing = await post(chain, w3, deployment)
        second = market(chain, w3, deployment, kv=kv)
        await second.subscribe(StorageRequested, recorder)
        await second.start()
        await eventually(lambda: replacing in recorder.requested())
        await second.stop()
        kv.close()
        assert recorder.requested() == [lost, replacing]


async def test_a_stream_on_an_unchanged_chain_does_not_rewind() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        recorder = Recorder()
        kv = MemoryKV()
        reader = market(chain, w3, deployment, kv=kv)
        await reader.subscribe(StorageRequested, recorder)
        await reader.subscribe(ChainReorganised, recorder)
        await reader.start()
        posted = [await post(chain, w3, deployment) for _ in range(3)]
        chain.control.mine(5)
        await eventually(lambda: recorder.requested() == posted)
        await reader.stop()
        restarted = market(chain, w3, deployment, kv=kv)
        await restarted.subscribe(StorageRequested, recorder)
        await restarted.start()
        head = await w3.eth.block_number
        await restarted.events.wait_delivered(head)
        await restarted.stop()
        assert recorder.requested() == posted  # nothing delivered twice
        assert not any(isinstance(e, ChainReorganised) for e in recorder.events)
        assert restarted.events._metrics.rewinds._value.get() == 0


def test_the_stored_cursor_keeps_the_anchor_and_reads_the_old_format() -> None:
    assert Cursor.decode(b"268:3") == Cursor(268, 3)
    assert Cursor.decode(b"268").anchor_hash is None
    recent = [(n, n.to_bytes(32, "big")) for n in range(RECENT_BLOCKS)]
    cursor = Cursor(70, 2, b"\x07" * 32)
    assert cursor.anchor == 70
    assert Cursor(70).anchor == 69
    decoded, anchors = _decode_stored(_encode_stored(cursor, recent))
    assert (decoded, decoded.anchor_hash, anchors) == (cursor, cursor.anchor_hash, recent)


async def test_the_cursor_is_stored_with_the_hash_of_its_anchor_block() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        kv = MemoryKV()
        reader = market(chain, w3, deployment, kv=kv)
        await reader.start()
        await post(chain, w3, deployment)
        head = await w3.eth.get_block("latest")
        await reader.events.wait_delivered(head["number"])
        await reader.stop()
        stored = kv.get(CURSOR_PREFIX + deployment.marketplace)
        assert stored is not None
        cursor, recent = _decode_stored(stored)
        assert cursor == Cursor(head["number"] + 1)
        assert cursor.anchor_hash == bytes(head["hash"])
        assert recent[-1] == (head["number"], bytes(head["hash"]))
