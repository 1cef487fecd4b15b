"""End to end: a request the node saw but could not sell before a restart is sold after it (ARCHITECTURE.md rule 5).

The node (a ``codex-node run`` subprocess, its own client) posts a request with ``POST /storage/request/{cid}``
while it offers no availability: Sales sees the ``StorageRequested`` and ignores its slots. The node is stopped
with SIGTERM — its event stream persists a cursor past that event, so no catch-up will deliver it again — and
started on the same data dir. Only then is an availability created: the node must still sell every slot, because
Sales remembered the open request and queued its free slots again on start.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2ekit import PROVING, Driver, availability_body, dataset, eventually, fill_every_slot, sales_in, slot_ids

from codex_node.market.types import RequestId
from tests.harness.nodeprocess import NodeProcess, start_node

pytestmark = pytest.mark.slow


async def test_a_request_seen_before_a_restart_is_sold_once_an_availability_exists(
    tmp_path: Path, nodes: list[NodeProcess]
) -> None:
    data_dir = tmp_path / "data"
    first = start_node(data_dir)
    nodes.append(first)
    driver = Driver(first)
    try:
        cid = (await driver.api.post("/data", content=dataset())).text
        request = await driver.request_storage(cid)
        request_id = RequestId(bytes.fromhex(request["id"][2:]))

        async def seen() -> bool:
            return bool(
                first.find(lambda e: e.get("event") == "slot ignored" and e.get("request_id") == request_id.hex())
            )

        await eventually(seen, what="the request seen and its slots ignored (no availability)")
    finally:
        await driver.close()
    assert first.stop() == 0

    second = start_node(data_dir)
    nodes.append(second)
    driver = Driver(second)
    try:
        created = await driver.api.post("/sales/availability", json=availability_body(request["ask"]["slotSize"]))
        assert created.status_code == 201, created.text
        sids = slot_ids(request_id)
        await fill_every_slot(driver.api, sids, driver.now, driver.travel)
        assert await sales_in(driver.api, sids, PROVING) is not None
        assert await driver.books() == []
    finally:
        await driver.close()
    assert second.stop() == 0
