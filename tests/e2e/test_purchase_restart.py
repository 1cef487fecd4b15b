"""End to end with a crash of the buyer: a ``codex-node run`` subprocess is SIGKILLed while its purchase is
submitted, started again on the same data dir, and the purchase resumes and ends as it would have.

The node buys from itself (``POST /storage/request/{cid}``, nodes=3, tolerance=1). Its sales reserve and download
the three slots and wait in InitialProving for a period's end that only time travel brings, so the request is
surely still unfilled (submitted) when the process is killed. After the restart the purchase continues from the
chain's view of its request (unknown → submitted), the resumed sales fill the three slots (started), the chain
travels to the request's end (finished), the leftover is withdrawn, and the dataset downloads byte-identical.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    SLOTS,
    TOLERANCE,
    Driver,
    availability_body,
    dataset,
    eventually,
    fill_every_slot,
    sales_in,
    slot_ids,
)

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.types import RequestId
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow


async def _purchase(driver: Driver, pid: str, *states: str) -> dict[str, Any] | None:
    r = await driver.api.get(f"/storage/purchases/{pid}")
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body if body["state"] in states else None


async def test_a_purchase_submitted_when_the_node_is_killed_resumes_and_finishes(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    data_dir = tmp_path / "data"
    first = start_node(data_dir)
    nodes.append(first)
    driver = Driver(first)
    data = dataset()
    try:
        cid = (await driver.api.post("/data", content=data)).text
        slot_size = ErasureLayout(ErasureParams.from_request(SLOTS, TOLERANCE), len(data)).slot_size
        created = await driver.api.post("/sales/availability", json=availability_body(slot_size))
        assert created.status_code == 201, created.text
        request = await driver.request_storage(cid)
        pid = request["id"]
        sids = slot_ids(RequestId(bytes.fromhex(pid[2:])))
        await eventually(lambda: sales_in(driver.api, sids, "SaleInitialProving"), what="every sale waiting to fill")
        assert await _purchase(driver, pid, "submitted") is not None
    finally:
        await driver.close()
    assert first.kill() == -signal.SIGKILL

    second = start_node(data_dir)
    nodes.append(second)
    driver = Driver(second)
    try:
        resumed = await eventually(lambda: _purchase(driver, pid, "submitted"), what="the purchase resumed")
        states = [h["to"] for h in resumed["history"]]
        assert states[:2] == ["pending", "submitted"], "the history before the crash is kept"
        assert states[2:] == ["unknown", "submitted"]

        await fill_every_slot(driver.api, sids, driver.now, driver.travel)
        await eventually(lambda: _purchase(driver, pid, "started"), what="the purchase started")

        sale = (await driver.api.get(f"/sales/slots/0x{sids[0].hex()}")).json()
        await driver.travel(int(sale["reservation"]["validUntil"]) + 1)
        finished = await eventually(lambda: _purchase(driver, pid, "finished"), what="the purchase finished")
        assert [h["to"] for h in finished["history"]][-2:] == ["started", "finished"]

        async def withdrawn() -> bool:
            return bool(second.find(lambda e: e.get("event") == "purchase funds withdrawn"))

        await eventually(withdrawn, what="the purchase's leftover withdrawn")
        downloaded = await driver.api.get(f"/data/{cid}")
        assert downloaded.status_code == 200
        assert downloaded.content == data
    finally:
        await driver.close()
    assert second.stop() == 0
