"""End to end: a node stopped before its slots are filled resumes the sales after a restart (issue 7 item 7).

The node runs as a ``codex-node run`` subprocess. SlotReserving, Downloading and Filling pass in milliseconds on
the embedded chain, so the first run parks both sales in the state under test with the test hold
(``codex_node/sales/testhold.py``: before the state's work, or after it — ``SaleFilling:after`` is a fill mined
just before the kill), then the node is killed (SIGKILL, or SIGTERM) and started again on the same data dir
without the hold. Both sales must go on — filled and proven, then paid at the contract's end — with every byte
and token back in the availability and ``GET /debug/books`` reporting no problem, after the restart and at the end.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable
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
    fill_every_slot,
    history_states,
    sales_in,
    slot_ids,
)

from codex_node.market.types import RequestId
from codex_node.sales.testhold import ENV
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow

# (the API state to park in, before or after its work, the signal that stops the node)
CASES = {
    "SlotReserving": ("SaleSlotReserving", "before", signal.SIGKILL),
    "SlotReserving, mined": ("SaleSlotReserving", "after", signal.SIGKILL),
    "Downloading": ("SaleDownloading", "before", signal.SIGKILL),
    "InitialProving": ("SaleInitialProving", "before", signal.SIGKILL),
    "InitialProving, SIGTERM": ("SaleInitialProving", "before", signal.SIGTERM),
    "Filling, not mined": ("SaleFilling", "before", signal.SIGKILL),
    "Filling, mined": ("SaleFilling", "after", signal.SIGKILL),
}


def parked(node: NodeProcess, state: str, when: str) -> int:
    """How many sales the node logged as parked by the test hold in ``state``."""
    return len(
        node.find(
            lambda e: e.get("event") == "sale parked by the test hold" and e.get("state") == state and e["when"] == when
        )
    )


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_node_stopped_before_the_fill_resumes_the_sales_and_ends_them_paid(
    tmp_path: Path, nodes: list[NodeProcess], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    state, when, sig = CASES[case]
    data_dir = tmp_path / "data"
    monkeypatch.setenv(ENV, f"{state}:{when}")
    first = start_node(data_dir)
    nodes.append(first)
    driver = Driver(first)
    try:
        request, offered = await _sell(driver)
        request_id = RequestId(bytes.fromhex(request["id"][2:]))
        sids = slot_ids(request_id)

        async def both_parked() -> bool:
            return parked(first, state, when) == SLOTS

        if state == "SaleFilling":
            await _to_filling(driver, both_parked)
        await eventually(both_parked, what=f"both sales parked in {state} ({when})")
        assert await sales_in(driver.api, sids, state) is not None
        assert await driver.books() == []
    finally:
        await driver.close()

    assert first.stop(sig) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    monkeypatch.delenv(ENV)

    second = start_node(data_dir)
    nodes.append(second)
    driver = Driver(second)
    try:
        started = second.find(lambda e: e.get("event") == "sales started")
        assert [e["resumed"] for e in started] == [SLOTS]  # none lost (it was 0)
        assert await driver.books() == []
        await fill_every_slot(driver.api, sids, driver.now, driver.travel)
        for sid in sids:
            sale = await _sale(driver, sid)
            restart = max(i for i, h in enumerate(sale["history"]) if h["from"] is None)
            assert restart > 0, "the history before the stop is kept"
            resumed_through = sale["history"][restart]["to"]
            assert resumed_through == ("SaleUnknown" if case == "Filling, mined" else "SaleResuming")
        assert await driver.books() == []

        end = int((await _sale(driver, sids[0]))["reservation"]["validUntil"])
        await driver.travel(end + 1)
        finished = await eventually(lambda: sales_in(driver.api, sids, "SaleFinished"), what="both sales Finished")
        for sale in finished:
            states = history_states(sale)
            assert states[-3:] == [PROVING, "SalePayout", "SaleFinished"]
            assert "SaleErrored" not in states
        whole = [(offered["freeSize"], offered["totalRemainingCollateral"])]

        async def availability_whole() -> bool:
            # SaleFinished is reported on entering the state; its clean-up follows.
            back = (await driver.api.get("/sales/availability")).json()
            return [(a["freeSize"], a["totalRemainingCollateral"]) for a in back] == whole

        await eventually(availability_whole, what="every byte and token back in the availability")
        assert (await driver.api.get(f"/sales/availability/{offered['id']}/reservations")).json() == []
        assert await driver.books() == []
    finally:
        await driver.close()
    assert second.stop() == 0


async def _sell(driver: Driver) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upload a dataset, request storage for it (the node buys from itself) and offer an availability that fits."""
    cid = (await driver.api.post("/data", content=dataset())).text
    request = await driver.request_storage(cid)
    created = await driver.api.post("/sales/availability", json=availability_body(request["ask"]["slotSize"]))
    assert created.status_code == 201, created.text
    offered: dict[str, Any] = created.json()
    return request, offered


async def _to_filling(driver: Driver, done: Callable[[], Awaitable[bool]]) -> None:
    """InitialProving waits for a period's end with a stable challenge: move the chain period by period."""
    for _ in range(8):
        await driver.travel(PERIODS.period_end(PERIODS.period_of(await driver.now())) + 1)
        try:
            await eventually(done, within=5.0, what="both sales parked in Filling")
            return
        except AssertionError:
            continue


async def _sale(driver: Driver, sid: bytes) -> dict[str, Any]:
    r = await driver.api.get(f"/sales/slots/0x{sid.hex()}")
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body
