"""A market event handler of Sales that fails on a domain error logs one warning naming the event and goes on."""

from __future__ import annotations

import os
from dataclasses import replace

from salesworld import EXPIRY, WORLD_ASK, World
from structlog.testing import capture_logs

from codex_node.market.types import RequestId, StorageRequested
from codex_node.sales.slotqueue import MAX_SLOTS_PER_REQUEST


async def test_a_handler_error_is_the_intended_warning_not_a_handler_traceback(world: World) -> None:
    await world.start()
    absurd = StorageRequested(
        RequestId(os.urandom(32)),
        replace(WORLD_ASK, slots=MAX_SLOTS_PER_REQUEST + 1),
        world.clock.now() + EXPIRY,
    )
    with capture_logs() as logs:
        await world.host.emit(absurd)
    assert world.host.handler_errors == []
    [warning] = [e for e in logs if e["event"] == "sales event handler failed"]
    assert warning["log_level"] == "warning"
    assert warning["market_event"] == "StorageRequested"
    assert "SlotsOutOfRangeError" in warning["error"]
    # The stream goes on: a sane request after it is still sold.
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3)
    await world.stop()
