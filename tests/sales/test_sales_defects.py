"""One test per sales defect of MARKETPLACE.md §5 that would fail on nim-codex's behaviour.

The slot queue's own defects (#1 eviction, and #11 inside the worker loop) and the reservations book's (#6, #7, #9
inside ``delete_reservation``) have tests beside those modules; here they are checked through Sales where Sales
takes part. #10 (nonces) needs a real chain: ``tests/market/test_txsender_concurrency.py`` (20 concurrent fills
from one account, half the callers cancelled, on eth-tester and Hardhat); #12 (PATCH over quota answers 422) is in
``tests/api/test_sales_routes.py``; #13 (requests posted while the node was down) in
``tests/sales/test_sales_catchup.py`` and, on the real event stream, ``tests/e2e/test_sale_catchup.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from salesfakes import FakeProof
from salesworld import BLOCK, WORLD_ASK, World, make_world

from codex_node.market.types import RequestState, slot_id
from codex_node.sales.availability import AvailabilityPatch
from codex_node.testing.mockmarket import account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof


async def test_defect_2_freed_slot_is_queued_with_an_absolute_deadline(world: World) -> None:
    """nim-codex queued a freed slot with ``request.expiry``, a duration (600 here), beside absolute timestamps."""
    await world.start()
    await world.create_availability(min_price=WORLD_ASK.price_per_byte_per_second + 1)  # matches nothing
    request = await world.post_request()
    rival = world.client.as_account(account(3))
    for i in range(3):
        await rival.reserve_slot(request.id, i)
        proof = cast("StorageProof", FakeProof(b""))
        await rival.fill_slot(request.id, i, proof, await rival.slot_collateral(request.id, i))
    assert await world.host.request_state(request.id) == RequestState.STARTED
    await rival.free_slot(slot_id(request.id, 1))  # slashed out: the slot is up for repair
    await world.settle()
    assert world.queue is not None
    [item] = world.queue.items()
    assert (item.request_id, item.slot_index) == (request.id, 1)
    assert item.expires_at == await world.host.request_end(request.id)
    assert item.expires_at > world.clock.now()  # a duration would already lie in the past
    assert item.collateral < WORLD_ASK.collateral_per_slot  # repair discount applied
    await world.stop()


async def test_defect_3_enabling_an_availability_alone_sells_the_waiting_slots(world: World) -> None:
    """nim-codex only unpaused the queue when sizes, duration, price or collateral grew, not on enabling."""
    await world.start()
    availability = await world.create_availability(enabled=False)
    await world.post_request()
    await world.settle()
    assert world.queue is not None
    assert world.queue.paused
    assert len(world.queue) == 3
    await world.book.update_availability(availability.id, AvailabilityPatch(enabled=True))
    await world.until_states(["Proving"] * 3)
    await world.stop()


async def test_defect_4_errored_sale_returns_its_collateral(world: World) -> None:
    """nim-codex's SaleErrored returned no collateral: the availability's budget shrank for good."""
    world.data.fail_next_fetch = True
    await world.start()
    availability = await world.create_availability(size=2 * BLOCK)
    await world.post_request(replace(WORLD_ASK, slots=1, max_slot_loss=0))
    await world.settle()
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()


async def test_defect_5_reservations_left_by_a_crash_return_bytes_and_collateral_at_start(world: World) -> None:
    """nim-codex's deleteInactiveReservations returned neither the downloaded bytes nor the collateral."""
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.settle()
    assert len(await world.book.all_reservations()) == 3  # downloaded, waiting to prove: nothing filled yet
    assert world.ledger.quota.used == 3 * WORLD_ASK.slot_size
    await world.stop()  # the crash: no clean-up runs
    # Down until the request expired: the sales cannot go on (else they resume, tests/sales/test_sales_resume.py).
    world.clock.set(await world.host.request_expires_at(request.id) + 1)

    await world.start()
    assert await world.book.all_reservations() == []
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()


async def test_defect_8_slot_data_expires_with_its_contract_so_the_quota_comes_back(world: World) -> None:
    """nim-codex only ever raised block expiry: with a long --block-ttl, slot data (and its quota) outlived the
    contract by weeks and reserved + used quota locked the node (#1251)."""
    world.data.block_ttl = 30 * 24 * 3600
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.until_states(["Proving"] * 3)
    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    request_end = await world.host.request_end(request.id)
    assert {s.expiry for s in world.data.slots.values()} == {request_end}
    world.data.maintain()
    assert world.ledger.quota.used == 0
    # The bytes are back in the availability as free space (reclaimed on the next match).
    await world.book.reclaim_returning_bytes()
    after = await world.book.get_availability(availability.id)
    assert after.free_size == availability.total_size
    await world.stop()


async def test_defect_9_a_repeated_clean_up_returns_the_bytes_once(world: World) -> None:
    """nim-codex returned the downloaded bytes twice on clean-up (returnBytes + deleteReservation), #1099."""
    await world.start()
    availability = await world.create_availability()
    await world.post_request()
    await world.until_states(["Proving"] * 3)
    assert world.sales is not None
    agent = world.sales.agents()[0]
    await world.sales.sale_ended(agent, 0, False)
    await world.sales.sale_ended(agent, 0, False)
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size <= availability.total_size
    await world.books()
    await world.stop()


async def test_defect_11_a_slot_nobody_can_take_does_not_starve_the_only_worker() -> None:
    """nim-codex lost a worker each time it met a seen item, until no worker was left (#1072)."""
    world = await make_world(max_workers=1)
    await world.start()
    await world.create_availability(min_price=2)
    await world.post_request(replace(WORLD_ASK, price_per_byte_per_second=1))  # too cheap: seen, paused
    await world.settle()
    assert world.queue is not None
    assert world.queue.busy_workers == 0
    await world.post_request()  # pays enough
    await world.until_states(["Proving"] * 3)
    assert len(world.queue) == 3  # the cheap request's slots wait, seen
    await world.stop()
