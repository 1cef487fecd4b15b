"""End to end with a crash: the node runs as a ``codex-node run`` subprocess and is SIGKILLed while proving.

The test drives the node only from outside, as an operator or a client would: the REST API (availability,
upload, ``POST /storage/request/{cid}`` — the node buys from itself —, the sale's state and history), the embedded
chain's time travel (``POST /debug/chain/travel``), and the node's JSON log (a proof
submitted in a period). After the first proof the process is killed with SIGKILL and started again on the same
data dir: it must resume both sales through Unknown, prove in the following periods, and end paid with balanced
books. Once the node has stopped, the test opens the chain it left in the data dir and checks the contract's
record (fills, proofs by period, the payout) against the contract's arithmetic.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    PERIODS,
    PROVING,
    SLOTS,
    Driver,
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

from codex_node.market.deployment import artifact
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.types import Ask, RequestId, SlotId
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow

WALL_LIMIT = 60.0


async def test_a_node_killed_while_proving_resumes_and_is_paid(
    tmp_path: Path, nodes: list[NodeProcess], chain_after: list[EmbeddedChain]
) -> None:
    began = time.monotonic()
    data_dir = tmp_path / "data"
    first = start_node(data_dir)
    nodes.append(first)
    driver = Driver(first)
    try:
        cid = (await driver.api.post("/data", content=dataset())).text
        info = (await driver.api.get("/debug/info")).json()
        host = info["chain"]["nodeAddress"]
        request = await driver.request_storage(cid)
        slot_size = request["ask"]["slotSize"]
        # The availability comes after the request: the queue holds the request's slots until one fits.
        created = await driver.api.post("/sales/availability", json=availability_body(slot_size))
        assert created.status_code == 201, created.text
        offered = created.json()
        request_id = RequestId(bytes.fromhex(request["id"][2:]))
        sids = slot_ids(request_id)

        await fill_every_slot(driver.api, sids, driver.now, driver.travel)
        before_kill = await driver.prove_in_next_period(request_id)
    finally:
        await driver.close()

    assert first.kill() == -signal.SIGKILL

    second = start_node(data_dir)
    nodes.append(second)
    driver = Driver(second)
    try:
        # Resumed from the chain's mySlots through Unknown, straight back to proving.
        resumed = await eventually(lambda: sales_in(driver.api, sids, PROVING), what="both sales resumed")
        for sale in resumed:
            history = sale["history"]
            restart = max(i for i, h in enumerate(history) if h["from"] is None)
            assert restart > 0, "the history before the crash is kept"
            assert [h["to"] for h in history[restart:]] == ["SaleUnknown", "SaleFilled", PROVING]
        after_restart = [await driver.prove_in_next_period(request_id) for _ in range(2)]

        end = await _request_end(driver, sids)
        await driver.travel(end + 1)
        finished = await eventually(lambda: sales_in(driver.api, sids, "SaleFinished"), what="both sales Finished")
        for sale in finished:
            states = history_states(sale)
            assert states[-3:] == [PROVING, "SalePayout", "SaleFinished"]
            assert "SaleErrored" not in states
        whole = [(offered["freeSize"], offered["totalRemainingCollateral"])]

        async def availability_whole() -> bool:
            # SaleFinished is reported on entering the state; its clean-up (a few chain reads) follows.
            back = (await driver.api.get("/sales/availability")).json()
            return [(a["freeSize"], a["totalRemainingCollateral"]) for a in back] == whole

        await eventually(availability_whole, what="every byte and token back in the availability")
        assert (await driver.api.get(f"/sales/availability/{offered['id']}/reservations")).json() == []
        assert await driver.books() == []

        async def withdrawn() -> bool:  # the node is also the client: its purchase withdraws the leftover
            return bool(second.find(lambda e: e.get("event") == "purchase funds withdrawn"))

        await eventually(withdrawn, what="the purchase's leftover withdrawn")
    finally:
        await driver.close()
    assert second.stop() == 0

    # The chain the node left behind says the same: proofs in every period we visited, and the payout.
    chain = EmbeddedChain(data_dir / "chain", block_time=0, registry=None)
    await chain.start()
    chain_after.append(chain)
    events = await marketplace_events(chain.w3, chain.deployment)
    filled = fill_times(events, request_id)
    assert sorted(filled) == list(range(SLOTS))
    for index, sid in enumerate(sids):
        proven = proven_periods(events, sid, after=PERIODS.period_of(filled[index]))
        assert {before_kill, *after_restart} <= proven
    ask = _ask(request)
    first_fill_block = min(e.block for e in events if e.timestamp == min(filled.values()))
    balance = await _token_balance(chain, host, "latest")
    balance_before = await _token_balance(chain, host, first_fill_block - 1)
    payout = expected_payout(ask, end, filled)
    # Host and client are one account: the payouts, plus what the client withdrew (the price not paid out).
    assert balance - balance_before == payout + (ask.max_price - payout)
    assert 0 < payout < ask.max_price
    assert time.monotonic() - began < WALL_LIMIT


async def _request_end(driver: Driver, sids: list[SlotId]) -> int:
    """The request's end as the node shows it (the reservation's validUntil is the contract end)."""
    sale = await driver.api.get(f"/sales/slots/0x{sids[0].hex()}")
    reservation = sale.json()["reservation"]
    assert reservation is not None
    return int(reservation["validUntil"])


def _ask(request: dict[str, Any]) -> Ask:
    a = request["ask"]
    return Ask(
        proof_probability=int(a["proofProbability"]),
        price_per_byte_per_second=int(a["pricePerBytePerSecond"]),
        collateral_per_byte=int(a["collateralPerByte"]),
        slots=a["slots"],
        slot_size=a["slotSize"],
        duration=a["duration"],
        max_slot_loss=a["maxSlotLoss"],
    )


async def _token_balance(chain: EmbeddedChain, address: str, block: int | str) -> int:
    token = chain.w3.eth.contract(address=chain.deployment.token, abi=artifact("TestToken")["abi"])  # type: ignore[call-overload]
    return int(await token.functions.balanceOf(address).call({}, block))
