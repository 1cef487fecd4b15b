"""End to end: a storage request posted while the node is down is sold after it starts (MARKETPLACE.md §5 #13).

The node runs once (availability, dataset) and stops. With the node down, the embedded chain in its data dir is
opened on its own and the dev client posts a request for the dataset; the chain is closed again. When the node
starts, its event stream catches up from the persisted cursor, delivers the StorageRequested it missed to Sales
(subscribed before the catch-up), and the node fills every slot. nim-codex only subscribes to new events, so the
request would never be seen there.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
from e2ekit import API, EXPIRY, SLOTS, ask, availability_body, dataset, fill_every_slot, slot_ids

from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.onchain import OnChainMarket
from codex_node.market.types import Request, RequestState
from codex_node.node import Node
from codex_node.proofs.slotdata import dataset_commitment
from codex_node.testing.memorykv import MemoryKV

pytestmark = pytest.mark.slow


async def test_a_request_posted_while_the_node_was_down_is_sold_after_it_starts(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path / "data", api_port=0)
    node = Node(config)
    await node.start()
    try:
        assert node.repo is not None
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            cid = (await api.post("/data", content=dataset())).text
            commitment = await dataset_commitment(node.repo, parse_cid(cid), SLOTS)
            created = await api.post("/sales/availability", json=availability_body(commitment.slot_size))
            assert created.status_code == 201, created.text
    finally:
        await node.stop()

    # The node is down: the client posts its request on the same chain.
    chain = EmbeddedChain(config.data_dir / "chain", block_time=0, registry=None)
    await chain.start()
    try:
        client = OnChainMarket(chain.w3, chain.deployment, chain.client_account, MemoryKV())
        request = Request(
            client=await client.get_signer(),
            ask=ask(commitment.slot_size),
            content=commitment.content,
            expiry=EXPIRY,
            nonce=secrets.token_bytes(32),
        )
        await client.request_storage(request)
        await client.stop()
    finally:
        await chain.stop()

    node = Node(config)
    await node.start()
    try:
        mp = node.marketplace
        assert mp is not None
        assert mp.chain is not None
        chain = mp.chain
        market = mp.market

        async def travel(timestamp: int) -> None:
            await chain.travel_to(timestamp)
            market.events.wake()

        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
            await fill_every_slot(api, slot_ids(request.id), chain.latest_timestamp, travel)
        assert await market.request_state(request.id) == RequestState.STARTED
        assert sorted(await market.my_slots()) == sorted(slot_ids(request.id))
    finally:
        await node.stop()
