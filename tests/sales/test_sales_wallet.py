"""A wallet that cannot cover a slot's collateral: the sale stops before it reserves anything, and the slot waits."""

from __future__ import annotations

from salesworld import WORLD_ASK, World

from codex_node.sales.availability import AvailabilityPatch
from codex_node.testing.mockmarket import account


async def test_a_sale_the_wallet_cannot_pay_for_is_ignored_before_reserving_and_returns_everything(
    world: World,
) -> None:
    world.host = world.client.as_account(account(9))  # the node's account holds no tokens
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.settle()
    assert world.states() == []
    assert world.host.calls("reserve_slot") == []
    assert world.host.calls("fill_slot") == []
    after = await world.book.get_availability(availability.id)
    assert (after.free_size, after.total_remaining_collateral) == (
        availability.free_size,
        availability.total_collateral,
    )
    assert await world.book.all_reservations() == []
    assert world.queue is not None
    assert sorted(i.slot_index for i in world.queue.items()) == list(range(WORLD_ASK.slots))  # queued again, seen
    await world.books()

    # Funded, and the availability touched: the slots are tried again and sold.
    world.client.mint(account(9), 10**18)
    await world.book.update_availability(availability.id, AvailabilityPatch(duration=availability.duration + 1))
    await world.until_states(["Proving"] * WORLD_ASK.slots)
    assert len(await world.host.my_slots()) == WORLD_ASK.slots
    assert world.sales is not None
    assert {a.data.request_id for a in world.sales.agents()} == {request.id}
    await world.books()
    await world.stop()
