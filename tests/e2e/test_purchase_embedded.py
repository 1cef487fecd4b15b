"""End to end in one process: a node buys storage from itself through ``POST /storage/request/{cid}``.

The node uploads a dataset, offers an availability, and requests storage with nodes=3, tolerance=1: the dataset is
erasure-coded into three slots (two data, one parity), the node's own sales fill all three, the purchase goes
pending → submitted → started, the chain travels to the request's end, the purchase is finished and its leftover
funds are withdrawn. Client and host are the same account, so once the sales are paid and the purchase withdrawn
the account holds exactly what it held before the request. The dataset downloads byte-identical.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2ekit import API, COLLATERAL_PER_BYTE, DURATION, EXPIRY, PRICE, dataset, eventually, fill_every_slot

from codex_node.config import NodeConfig
from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.types import RequestId, RequestState, slot_id
from codex_node.node import Node

pytestmark = pytest.mark.slow

WALL_LIMIT = 90.0
NODES, TOLERANCE = 3, 1


def request_body() -> dict[str, Any]:
    return {
        "duration": DURATION,
        "pricePerBytePerSecond": str(PRICE),
        "proofProbability": "1",
        "collateralPerByte": str(COLLATERAL_PER_BYTE),
        "expiry": EXPIRY,
        "nodes": NODES,
        "tolerance": TOLERANCE,
    }


def slot_size_of(size: int) -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), size).slot_size


def availability_for(slot_size: int) -> dict[str, Any]:
    return {
        "totalSize": (NODES + 1) * slot_size,
        "duration": 2 * DURATION,
        "minPricePerBytePerSecond": "1",
        "totalCollateral": str((NODES + 1) * slot_size * COLLATERAL_PER_BYTE),
    }


async def purchase_state(api: httpx.AsyncClient, pid: str, *states: str) -> dict[str, Any] | None:
    r = await api.get(f"/storage/purchases/{pid}")
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body if body["state"] in states else None


async def test_a_node_buys_storage_from_itself_and_gets_its_money_back(tmp_path: Path) -> None:
    began = time.monotonic()
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0))
    await node.start()
    try:
        await _buy_from_self(node)
    finally:
        await node.stop()
    assert time.monotonic() - began < WALL_LIMIT


async def _buy_from_self(node: Node) -> None:
    mp = node.marketplace
    assert mp is not None
    assert mp.chain is not None
    chain, market = mp.chain, mp.market
    me = await market.get_signer()

    async def travel(timestamp: int) -> None:
        await chain.travel_to(timestamp)
        market.events.wake()

    data = dataset()
    async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=60) as api:
        cid = (await api.post("/data", content=data)).text
        created = await api.post("/sales/availability", json=availability_for(slot_size_of(len(data))))
        assert created.status_code == 201, created.text
        before = await market.token_balance(me)

        posted = await api.post(f"/storage/request/{cid}", json=request_body())
        assert posted.status_code == 200, posted.text
        pid = posted.text
        assert (await api.get("/storage/purchases")).json() == [pid]
        purchase = (await api.get(f"/storage/purchases/{pid}")).json()
        assert purchase["requestId"] == pid
        assert purchase["state"] in ("submitted", "started")
        ask = purchase["request"]["ask"]
        assert (ask["slots"], ask["slotSize"], ask["maxSlotLoss"]) == (NODES, slot_size_of(len(data)), TOLERANCE)
        assert purchase["request"]["content"]["cid"].startswith("b")

        request_id = RequestId(bytes.fromhex(pid[2:]))
        sids = [slot_id(request_id, i) for i in range(NODES)]
        await fill_every_slot(api, sids, chain.latest_timestamp, travel)
        await eventually(lambda: purchase_state(api, pid, "started"), what="the purchase started")
        assert await market.request_state(request_id) == RequestState.STARTED

        await travel(await market.request_end(request_id) + 1)
        finished = await eventually(lambda: purchase_state(api, pid, "finished"), what="the purchase finished")
        assert [t["to"] for t in finished["history"]] == ["pending", "submitted", "started", "finished"]

        async def all_back() -> bool:
            return await market.token_balance(me) == before

        await eventually(all_back, what="every token back: the sales paid and the purchase's leftover withdrawn")
        downloaded = await api.get(f"/data/{cid}")
        assert downloaded.status_code == 200
        assert downloaded.content == data
        registry = node.registry
        spent = registry.get_sample_value("codex_purchase_tokens_spent_total")
        assert spent == NODES * DURATION * PRICE * slot_size_of(len(data))

        async def returned() -> float | None:  # counted once the withdrawal's transaction is mined and read back
            return registry.get_sample_value("codex_purchase_tokens_returned_total") or None

        await eventually(returned, what="the withdrawn tokens counted")
        assert registry.get_sample_value("codex_purchases", {"state": "finished"}) == 1
        # The ledger holds both sides of it (the price paid and the leftover back; collateral and payouts) and,
        # like the balance, adds up to nothing.
        ledger = (await api.get("/account/ledger", params={"limit": 100})).json()["entries"]
        kinds = {e["kind"] for e in ledger}
        assert {"purchasePayment", "purchaseRefund", "collateralPosted", "payout", "collateralReturned"} <= kinds
        assert sum(int(e["flow"]) for e in ledger) == 0
        assert registry.get_sample_value("codex_purchases", {"state": "started"}) == 0
