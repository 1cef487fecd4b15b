"""Repairing a slot: the host posts the discounted repair collateral, and the availability's books follow that.

The reservation sets aside the full ``collateralPerSlot``; ``fillSlot`` of a slot in Repair takes only
``collateralPerSlot × (100 − repairRewardPercentage) / 100``. The part never posted must come back to the
availability however the sale ends — also when the contract keeps what was posted (request failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from salesfakes import FakeProof
from salesworld import BLOCK, WORLD_ASK, World

from codex_node.market.types import Request, RequestState, SlotState, slot_id
from codex_node.testing.mockmarket import MockMarket, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof


async def repairing(world: World) -> tuple[Request, MockMarket, int]:
    """A started request filled by a rival, whose slot 1 our node then repairs. Returns the request, the rival and
    the collateral our node posted."""
    await world.start()
    request = await world.post_request()
    rival = world.client.as_account(account(3))
    for i in range(WORLD_ASK.slots):
        await rival.reserve_slot(request.id, i)
        await rival.fill_slot(
            request.id, i, cast("StorageProof", FakeProof(b"")), await rival.slot_collateral(request.id, i)
        )
    assert await world.host.request_state(request.id) == RequestState.STARTED
    await world.create_availability(size=2 * BLOCK)  # room for the one slot to repair
    await rival.free_slot(slot_id(request.id, 1))
    await world.settle()
    posted = await world.host.slot_collateral(request.id, 1)
    assert posted < WORLD_ASK.collateral_per_slot
    await world.until_states(["Proving"])
    assert await world.host.get_host(slot_id(request.id, 1)) == world.host.signer
    return request, rival, posted


async def test_a_failed_repair_sale_loses_only_the_collateral_it_posted(world: World) -> None:
    request, rival, posted = await repairing(world)
    [availability] = await world.book.availabilities()
    balance = await world.host.token_balance(world.host.signer)
    await rival.free_slot(slot_id(request.id, 0))
    await rival.free_slot(slot_id(request.id, 2))  # two slots lost, one allowed: the request fails
    await world.settle()
    await world.advance(60)
    assert await world.host.request_state(request.id) == RequestState.FAILED
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral - posted
    # The availability now claims exactly the tokens the wallet still has for it.
    assert await world.host.token_balance(world.host.signer) == balance
    await world.books()
    await world.stop()


async def test_a_paid_repair_sale_returns_the_whole_collateral(world: World) -> None:
    request, _, _ = await repairing(world)
    [availability] = await world.book.availabilities()
    await world.advance(await world.host.request_end(request.id) + 120 - world.clock.now())
    assert world.states() == []
    assert await world.host.slot_state(slot_id(request.id, 1)) == SlotState.PAID
    after = await world.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()


async def test_a_repair_whose_fill_fails_returns_the_whole_collateral(world: World) -> None:
    await world.start()
    request = await world.post_request()
    rival = world.client.as_account(account(3))
    for i in range(WORLD_ASK.slots):
        await rival.reserve_slot(request.id, i)
        await rival.fill_slot(
            request.id, i, cast("StorageProof", FakeProof(b"")), await rival.slot_collateral(request.id, i)
        )
    availability = await world.create_availability(size=2 * BLOCK)
    world.host.fail_next("fill_slot", RuntimeError("node went away"))
    await rival.free_slot(slot_id(request.id, 1))
    await world.settle()
    waited = 0
    while not world.host.calls("fill_slot") or world.states():  # the proof waits for a period with a stable challenge
        assert waited < 3600, world.states()
        await world.advance(30)
        waited += 30
    assert await world.host.get_host(slot_id(request.id, 1)) is None
    after = await world.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral
    assert await world.book.all_reservations() == []
    await world.books()
    await world.stop()
