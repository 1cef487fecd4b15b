"""End to end in one process: a real node (LevelDB, HTTP on loopback, the embedded chain) sells two slots.

The node offers an availability through the REST API and stores a dataset uploaded through ``POST /data``; the
chain's dev client account posts a storage request for it; the node reserves and fills both slots, proves in
three periods (the test moves the chain's time), reaches the request's end and is paid what the contract owes,
and its availability's free size and collateral are back where they were.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
from e2ekit import (
    API,
    EXPIRY,
    PERIODS,
    PROVING,
    SLOTS,
    ask,
    availability_body,
    dataset,
    eventually,
    expected_payout,
    fill_every_slot,
    fill_times,
    history_states,
    marketplace_events,
    proven_periods,
    sales_in,
    slot_ids,
)

from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.market.types import Request, RequestState, SlotState
from codex_node.node import Node
from codex_node.proofs.slotdata import dataset_commitment

pytestmark = pytest.mark.slow

WALL_LIMIT = 60.0


async def test_a_node_sells_proves_and_is_paid_on_the_embedded_chain(tmp_path: Path) -> None:
    began = time.monotonic()
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0))
    await node.start()
    try:
        await _sell_two_slots(node)
    finally:
        await node.stop()
    assert time.monotonic() - began < WALL_LIMIT


async def _sell_two_slots(node: Node) -> None:
    mp = node.marketplace
    assert mp is not None
    assert mp.chain is not None
    assert node.repo is not None
    chain, market = mp.chain, mp.market
    client = market.for_account(chain.client_account)
    host = await market.get_signer()

    async def travel(timestamp: int) -> None:
        await chain.travel_to(timestamp)
        market.events.wake()  # the node's clock follows now, not at the stream's next poll

    async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=30) as api:
        cid = (await api.post("/data", content=dataset())).text
        commitment = await dataset_commitment(node.repo, parse_cid(cid), SLOTS)
        created = await api.post("/sales/availability", json=availability_body(commitment.slot_size))
        assert created.status_code == 201, created.text
        offered = created.json()
        balance_before = await market.token_balance(host)

        request = Request(
            client=await client.get_signer(),
            ask=ask(commitment.slot_size),
            content=commitment.content,
            expiry=EXPIRY,
            nonce=secrets.token_bytes(32),
        )
        await client.request_storage(request)
        sids = slot_ids(request.id)

        # Preparing → SlotReserving → Downloading → InitialProving → Filling → Filled → Proving.
        await fill_every_slot(api, sids, chain.latest_timestamp, travel)
        assert await market.request_state(request.id) == RequestState.STARTED
        reserved = (await api.get("/sales/availability")).json()[0]
        assert reserved["freeSize"] == offered["freeSize"] - SLOTS * commitment.slot_size
        assert int(reserved["totalRemainingCollateral"]) == int(offered["totalRemainingCollateral"]) - (
            SLOTS * request.ask.collateral_per_slot
        )

        # Three periods, each entered by time travel; the proofs must reach the chain within the period.
        proving_from = PERIODS.period_of(await chain.latest_timestamp())
        for _ in range(3):
            period = PERIODS.period_of(await chain.latest_timestamp()) + 1
            await travel(PERIODS.period_start(period) + 1)

            async def proven(p: int = period) -> bool:
                events = await marketplace_events(chain.w3, chain.deployment)
                return all(p in proven_periods(events, s, after=p - 1) for s in sids)

            await eventually(proven, what=f"proofs of both slots in period {period}")
        for s in sids:
            assert await market.missing_proofs(s) == 0
            assert (await api.get(f"/sales/slots/0x{s.hex()}")).json()["state"] == PROVING

        # The end: Proving sees the slot Finished, Payout frees it, the contract pays.
        end = await market.request_end(request.id)
        await travel(end + 1)
        sales = await eventually(lambda: sales_in(api, sids, "SaleFinished"), what="both sales Finished")
        for sale in sales:
            states = history_states(sale)
            assert states[0] == "SalePreparing"
            assert states[-3:] == [PROVING, "SalePayout", "SaleFinished"]
            assert "SaleErrored" not in states
        for s in sids:
            assert await market.slot_state(s) == SlotState.PAID

        events = await marketplace_events(chain.w3, chain.deployment)
        filled = fill_times(events, request.id)
        assert sorted(filled) == list(range(SLOTS))
        for index, s in enumerate(sids):
            assert len(proven_periods(events, s, after=PERIODS.period_of(filled[index]))) >= 3
            assert proven_periods(events, s, after=proving_from) >= set(range(proving_from + 1, proving_from + 4))
        payout = expected_payout(request.ask, end, filled)
        assert payout > 0
        assert await market.token_balance(host) - balance_before == payout

        whole = [(offered["freeSize"], offered["totalRemainingCollateral"])]

        async def availability_whole() -> bool:
            # SaleFinished is reported on entering the state; its clean-up (a few chain reads) follows.
            back = (await api.get("/sales/availability")).json()
            return [(a["freeSize"], a["totalRemainingCollateral"]) for a in back] == whole

        await eventually(availability_whole, what="every byte and token back in the availability")
        assert (await api.get(f"/sales/availability/{offered['id']}/reservations")).json() == []
        assert (await api.get("/debug/books")).json() == {"balanced": True, "problems": []}
