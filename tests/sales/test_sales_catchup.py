"""Requests posted while the node was down reach the slot queue through the event stream's catch-up.

The node's market event stream (``market/events.py``) delivers, on start, every event since its persisted cursor
to the handlers subscribed before it started; ``marketplace.py`` starts Sales (which subscribes in ``start``)
before the stream. MockMarket has no cursor, so these tests replay the events emitted while the node was down,
in order, right after ``Sales.start`` — which is what the stream's catch-up does — and check that Sales sells
exactly the requests that are still open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from salesfakes import FakeProof
from salesworld import WORLD_ASK, World

from codex_node.market.types import RequestState, StorageRequested
from codex_node.testing.mockmarket import account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof


def sold(world: World) -> dict[bytes, list[str]]:
    assert world.sales is not None
    out: dict[bytes, list[str]] = {}
    for agent in world.sales.agents():
        out.setdefault(agent.data.request_id, []).append(type(agent.state).__name__)
    return {k: sorted(v) for k, v in out.items()}


async def test_open_requests_posted_while_down_are_sold_after_the_catch_up(world: World) -> None:
    await world.start()
    await world.create_availability(size=12 * 65536)
    await world.stop()

    # While the node is down: one request stays open, one is filled by a rival, one expires unfilled.
    seen = len(world.client.emitted)
    expired = await world.post_request(replace(WORLD_ASK, slots=1, max_slot_loss=0), expiry=60)
    world.clock.set(world.clock.now() + 120)
    still_open = await world.post_request()
    taken = await world.post_request()
    rival = world.client.as_account(account(3))
    for i in range(WORLD_ASK.slots):
        await rival.reserve_slot(taken.id, i)
        await rival.fill_slot(taken.id, i, cast("StorageProof", FakeProof(b"")), WORLD_ASK.collateral_per_slot)
    assert await world.host.request_state(taken.id) == RequestState.STARTED
    missed = world.client.emitted[seen:]
    assert sum(isinstance(e, StorageRequested) for e in missed) == 3

    await world.start()
    for event in missed:  # the stream's catch-up, after Sales subscribed
        await world.host.emit(event)
    waited = 0
    while sold(world) != {still_open.id: ["Proving"] * 3}:
        assert waited < 3600, sold(world)
        await world.advance(30)
        waited += 30
    assert world.host.handler_errors == []
    assert await world.host.request_state(expired.id) != RequestState.STARTED
    assert world.queue is not None
    assert world.queue.items() == []
    await world.books()
    await world.stop()


async def test_without_the_catch_up_a_request_posted_while_down_is_never_seen(world: World) -> None:
    """The other half of the contract: Sales.start itself does not scan the chain for open requests."""
    await world.start()
    await world.create_availability()
    await world.stop()
    await world.post_request()
    await world.start()
    await world.advance(300)
    assert sold(world) == {}
    await world.stop()
