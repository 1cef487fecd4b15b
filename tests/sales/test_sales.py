"""Sales end to end on MockMarket: queue → agents → fill → prove → payout, routing, timers, restart."""

from __future__ import annotations

import asyncio

import pytest
from salesworld import QUOTA, WORLD_ASK, World, make_world

from codex_node.market.types import RequestState, SlotState, slot_id
from codex_node.sales.states.cancelled import Cancelled


async def test_sells_all_slots_proves_gets_paid_and_the_availability_is_whole_again(world: World) -> None:
    await world.start()
    availability = await world.create_availability()
    balance = await world.host.token_balance(world.host.signer)
    request = await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    assert await world.host.request_state(request.id) == RequestState.STARTED
    assert world.queue is not None
    assert world.queue.busy_workers == 0
    await world.books()

    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    assert await world.book.all_reservations() == []
    paid = WORLD_ASK.price_per_slot_per_second * WORLD_ASK.duration
    assert await world.host.token_balance(world.host.signer) > balance + paid  # ~3 slots, minus the fill lag
    # The slots' blocks may go once the contract is over; maintenance reclaims them and the quota is free again.
    request_end = await world.host.request_end(request.id)
    assert {s.expiry for s in world.data.slots.values()} == {request_end}
    world.data.maintain()
    assert world.ledger.quota.used == 0
    await world.books()
    assert world.registry.get_sample_value("codex_sales_ended_total", {"outcome": "finished"}) == 3
    assert (
        world.registry.get_sample_value(
            "codex_sales_transitions_total", {"from_state": "Payout", "to_state": "Finished"}
        )
        == 3
    )
    assert world.registry.get_sample_value("codex_sales_agents", {"state": "Proving"}) == 0
    await world.stop()


async def test_one_worker_serves_every_slot_because_it_is_released_at_filled() -> None:
    world = await make_world(max_workers=1)
    await world.start()
    await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.stop()


async def test_request_expiring_unfilled_is_cancelled_by_the_timer_and_everything_returns(world: World) -> None:
    await world.start()
    availability = await world.create_availability(size=2 * 65536)  # room for one slot only
    request = await world.post_request()
    await world.until_states(["Proving"], limit=7200)
    assert world.sales is not None
    assert len(world.sales.timers) == 1
    await world.advance(await world.host.request_expires_at(request.id) + 1 - world.clock.now(), 10)
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    slot_states = [await world.host.slot_state(slot_id(request.id, i)) for i in range(3)]
    assert sorted(slot_states) == [SlotState.FREE, SlotState.FREE, SlotState.PAID]  # paid for the time stored
    await world.books()
    await world.stop()


async def test_request_failure_reaches_only_that_requests_agents(world: World) -> None:
    await world.start()
    await world.create_availability(size=12 * 65536)
    first = await world.post_request()
    second = await world.post_request()
    await world.until_states(["Proving"] * 6, limit=7200)
    assert world.sales is not None
    seen: list[bytes] = []
    for agent in world.sales.agents():
        original = agent.on_failed

        def record(agent_request: bytes = agent.data.request_id, original: object = original) -> None:
            seen.append(agent_request)
            original()  # type: ignore[operator]

        agent.on_failed = record  # type: ignore[method-assign]
    # Two slots of the first request lost: it fails, and only its agents hear of it.
    await world.host.free_slot(slot_id(first.id, 0))
    await world.host.free_slot(slot_id(first.id, 1))
    await world.settle()
    assert seen
    assert set(seen) == {first.id}
    await world.advance(60)
    assert world.states() == ["Proving"] * 3
    assert {a.data.request_id for a in world.sales.agents()} == {second.id}
    await world.books()
    await world.stop()


async def test_restart_resumes_hosted_slots_through_unknown_and_they_end_paid(world: World) -> None:
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.stop()
    await world.advance(300)  # the node is down for a few periods

    sales = await world.start()
    await world.settle()
    assert world.states() == ["Proving"] * 3
    assert sales.history is not None
    for agent in sales.agents():
        resumed = [(e.from_state, e.to_state) for e in sales.history.entries(agent.slot_id)][-3:]
        assert resumed == [(None, "SaleUnknown"), ("SaleUnknown", "SaleFilled"), ("SaleFilled", "SaleProving")]
    await world.advance(await world.host.request_end(request.id) + 120 - world.clock.now(), 60)
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()


async def test_slots_ignored_for_want_of_space_are_sold_once_an_availability_appears(world: World) -> None:
    await world.start()
    await world.post_request()
    await world.settle()
    assert world.queue is not None
    assert world.queue.paused  # everything was seen; nothing fits
    assert world.states() == []
    await world.create_availability()
    await world.until_states(["Proving"] * 3, limit=7200)
    await world.stop()


async def test_stop_leaves_no_task_behind(world: World) -> None:
    before = asyncio.all_tasks()
    await world.start()
    await world.create_availability()
    await world.post_request()
    await world.advance(60)
    await world.stop()
    assert asyncio.all_tasks() == before
    assert world.clock.waiters == 0


async def test_quota_is_all_there_is(world: World) -> None:
    await world.start()
    with pytest.raises(Exception, match="quota"):
        await world.create_availability(size=QUOTA + 65536)
    await world.stop()


async def test_cancelled_event_reaches_the_agents_of_that_request(world: World) -> None:
    await world.start()
    await world.create_availability(size=2 * 65536)
    request = await world.post_request()
    await world.until_states(["Proving"], limit=7200)
    assert world.sales is not None
    [agent] = world.sales.agents()
    cancelled = asyncio.ensure_future(agent.wait_for_state(lambda s: isinstance(s, Cancelled)))
    world.clock.set(await world.host.request_expires_at(request.id) + 1)
    await world.settle()
    assert cancelled.done()
    await world.stop()
