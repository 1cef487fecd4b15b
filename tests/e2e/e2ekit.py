"""Helpers shared by the end-to-end sale tests: the ask, bounded polling, REST reads, the chain's own record.

Chain time: the tests move the embedded chain with time travel, period by period; everything they wait for is
polled with a deadline. What the chain recorded (fills, proofs, payouts) is read back from its logs with the
timestamps of their blocks, so the assertions compare against the contract's arithmetic, not the node's word.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from codex_node.market.deployment import DEV_CONFIG, artifact
from codex_node.market.logdecoder import ChainLog, LogDecoder
from codex_node.market.types import (
    Ask,
    MarketEvent,
    Periodicity,
    ProofSubmitted,
    RequestId,
    SlotFilled,
    SlotId,
    slot_id,
)
from tests.harness.nodeprocess import NodeProcess

if TYPE_CHECKING:
    from web3 import AsyncWeb3

    from codex_node.market.deployment import Deployment

T = TypeVar("T")

API = "/api/codex/v1"
BLOCK = 65_536
DATASET_BLOCKS = 6
SLOTS = 3
"""Slots of every request: ``POST /storage/request`` with nodes=3, tolerance=1 (K=2 data slots, 1 parity)."""
TOLERANCE = 1
PERIODS = Periodicity(DEV_CONFIG.proofs.period)
DURATION = 8 * PERIODS.seconds
EXPIRY = 5 * PERIODS.seconds
PRICE = 3
COLLATERAL_PER_BYTE = 2
STEP_TIMEOUT = 20.0
"""Seconds any one step of a sale may take once the chain is where it must be."""

PROVING = "SaleProving"


def dataset() -> bytes:
    """A dataset of :data:`DATASET_BLOCKS` blocks, the last one short (the slots pad it)."""
    return os.urandom((DATASET_BLOCKS - 1) * BLOCK + 1234)


def ask(slot_size: int) -> Ask:
    return Ask(
        proof_probability=1,  # with the dev config's downtime, a proof is due every period after the fill's
        price_per_byte_per_second=PRICE,
        collateral_per_byte=COLLATERAL_PER_BYTE,
        slots=SLOTS,
        slot_size=slot_size,
        duration=DURATION,
        max_slot_loss=1,
    )


def availability_body(slot_size: int) -> dict[str, Any]:
    """Room and collateral for every slot of the request and one more, so the books are not all-or-nothing."""
    return {
        "totalSize": (SLOTS + 1) * slot_size,
        "duration": 2 * DURATION,
        "minPricePerBytePerSecond": "1",
        "totalCollateral": str((SLOTS + 1) * slot_size * COLLATERAL_PER_BYTE),
    }


def request_body() -> dict[str, Any]:
    """A ``POST /storage/request`` body for :data:`SLOTS` slots."""
    return {
        "duration": DURATION,
        "pricePerBytePerSecond": str(PRICE),
        "proofProbability": "1",  # with the dev config's downtime, a proof is due every period after the fill's
        "collateralPerByte": str(COLLATERAL_PER_BYTE),
        "expiry": EXPIRY,
        "nodes": SLOTS,
        "tolerance": TOLERANCE,
    }


def slot_ids(request_id: RequestId) -> list[SlotId]:
    return [slot_id(request_id, i) for i in range(SLOTS)]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = STEP_TIMEOUT, what: str, interval: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something other than ``None``/``False``; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(interval)


# --- REST ---------------------------------------------------------------------------------------------------------


async def slot_sale(api: httpx.AsyncClient, sid: SlotId) -> dict[str, Any] | None:
    """``GET /sales/slots/{slotId}``, or ``None`` while the node does not know the slot."""
    r = await api.get(f"/sales/slots/0x{sid.hex()}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


async def sales_in(api: httpx.AsyncClient, sids: list[SlotId], *states: str) -> list[dict[str, Any]] | None:
    """The sales of ``sids`` if every one is in one of ``states``, else ``None``."""
    sales = [await slot_sale(api, s) for s in sids]
    if all(s is not None and s["state"] in states for s in sales):
        return [s for s in sales if s is not None]
    return None


async def fill_every_slot(
    api: httpx.AsyncClient,
    sids: list[SlotId],
    now: Callable[[], Awaitable[int]],
    travel: Callable[[int], Awaitable[None]],
) -> None:
    """From InitialProving (which waits for a period's end) to Proving: move to the next period until every slot
    is filled. A period whose challenge pointer sits in the downtime window is skipped by InitialProving, so it
    may take more than one; eight periods in a row never all do."""
    await eventually(lambda: sales_in(api, sids, "SaleInitialProving", PROVING), what="every slot in InitialProving")
    for _ in range(8):
        await travel(PERIODS.period_end(PERIODS.period_of(await now())) + 1)
        try:
            await eventually(lambda: sales_in(api, sids, PROVING), within=5.0, what="every slot in Proving")
            return
        except AssertionError:
            continue
    raise AssertionError(f"slots not filled after 8 periods: {[await slot_sale(api, s) for s in sids]}")


def history_states(sale: dict[str, Any]) -> list[str]:
    return [entry["to"] for entry in sale["history"]]


# --- the chain's own record ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Logged:
    event: MarketEvent
    block: int
    timestamp: int


async def marketplace_events(w3: AsyncWeb3[Any], deployment: Deployment) -> list[Logged]:
    """Every marketplace event since the deployment, in chain order, with its block's timestamp."""
    decoder = LogDecoder(artifact("Marketplace")["abi"])
    raw = await w3.eth.get_logs(
        {"address": deployment.marketplace, "fromBlock": deployment.block_number, "toBlock": "latest"}  # type: ignore[typeddict-item]
    )
    out: list[Logged] = []
    stamps: dict[int, int] = {}
    for entry in sorted((_chain_log(r) for r in raw), key=lambda c: c.position):
        event = decoder.decode(entry)
        if event is None:
            continue
        if entry.block_number not in stamps:
            stamps[entry.block_number] = int((await w3.eth.get_block(entry.block_number))["timestamp"])
        out.append(Logged(event, entry.block_number, stamps[entry.block_number]))
    return out


def _chain_log(raw: Any) -> ChainLog:
    return ChainLog(
        block_number=int(raw["blockNumber"]),
        log_index=int(raw["logIndex"]),
        topics=tuple(bytes(t) for t in raw["topics"]),
        data=bytes(raw["data"]),
    )


def fill_times(events: list[Logged], request_id: RequestId) -> dict[int, int]:
    """Slot index → timestamp of its fill."""
    return {
        e.event.slot_index: e.timestamp
        for e in events
        if isinstance(e.event, SlotFilled) and e.event.request_id == request_id
    }


def proven_periods(events: list[Logged], sid: SlotId, after: int) -> set[int]:
    """Periods after ``after`` in which the chain received a proof of ``sid``."""
    periods = {
        PERIODS.period_of(e.timestamp) for e in events if isinstance(e.event, ProofSubmitted) and e.event.slot_id == sid
    }
    return {p for p in periods if p > after}


def expected_payout(request_ask: Ask, request_end: int, filled_at: dict[int, int]) -> int:
    """What the contract pays the host of every slot: ``(end - filledAt) × pricePerSlotPerSecond`` each."""
    return sum((request_end - at) * request_ask.price_per_slot_per_second for at in filled_at.values())


# --- a node run as a subprocess -----------------------------------------------------------------------------------


def proofs_logged(node: NodeProcess, request_id: RequestId, period: int) -> set[int]:
    """Slot indices whose proof for ``period`` the node logged as submitted (after the transaction was mined)."""
    return {
        int(e["slot_index"])
        for e in node.find(lambda e: e.get("event") == "proof submitted" and e.get("period") == period)
        if e.get("request_id") == request_id.hex()
    }


class Driver:
    """The test's hands on a running node: REST and the dev chain routes."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.api = httpx.AsyncClient(base_url=node.api, timeout=30)

    async def now(self) -> int:
        r = await self.api.get("/debug/chain")
        r.raise_for_status()
        return int(r.json()["timestamp"])

    async def travel(self, timestamp: int) -> None:
        r = await self.api.post("/debug/chain/travel", json={"timestamp": timestamp})
        assert r.status_code == 200, r.text
        assert r.json()["timestamp"] >= timestamp

    async def prove_in_next_period(self, request_id: RequestId) -> int:
        period = PERIODS.period_of(await self.now()) + 1
        await self.travel(PERIODS.period_start(period) + 1)

        async def logged() -> bool:
            return proofs_logged(self.node, request_id, period) == set(range(SLOTS))

        await eventually(logged, what=f"proofs of every slot in period {period}")
        return period

    async def request_storage(self, cid: str) -> dict[str, Any]:
        """``POST /storage/request/{cid}`` (the node's own account pays); the purchase's request as it shows it."""
        posted = await self.api.post(f"/storage/request/{cid}", json=request_body())
        assert posted.status_code == 200, posted.text
        purchase = await self.api.get(f"/storage/purchases/{posted.text}")
        purchase.raise_for_status()
        request: dict[str, Any] = purchase.json()["request"]
        assert request["id"] == posted.text
        return request

    async def books(self) -> list[str]:
        """What ``GET /debug/books`` finds wrong with the node's books (``sales.accounting.check_books``)."""
        r = await self.api.get("/debug/books")
        r.raise_for_status()
        problems: list[str] = r.json()["problems"]
        return problems

    async def close(self) -> None:
        await self.api.aclose()
