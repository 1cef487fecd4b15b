"""A stop before the slot is filled does not lose the sale (issue 7 item 7).

The node is stopped (``World.stop``: every agent cancelled, no clean-up runs, exactly what a kill leaves on disk)
while the sales are in SlotReserving, Downloading, InitialProving or Filling, then started again on the same
books and the same chain. Each sale must go on with its reservation and end correctly: filled and proven, then
paid, with every byte and token back and the books balanced at every step. A fill mined just before the stop
resumes through Unknown instead (the chain lists the slot in mySlots).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from salesfakes import FakeProof
from salesworld import WORLD_ASK, World

from codex_node.market.types import Request, RequestState, slot_id
from codex_node.testing.mockmarket import account

Hang = Callable[[World], None]


def _forever() -> Awaitable[None]:
    return asyncio.Event().wait()  # cancelled by the stop


def hang_before(method: str) -> Hang:
    """Every call of ``method`` blocks before it reaches the chain."""

    def install(world: World) -> None:
        async def hook() -> None:
            await _forever()

        world.host.on_call(method, hook)

    return install


def hang_after(method: str) -> Hang:
    """Every call of ``method`` is mined, then blocks before it returns (the stop comes before the answer)."""

    def install(world: World) -> None:
        original = getattr(world.host, method)

        async def mined_then_hang(*args: Any) -> None:
            await original(*args)
            await _forever()

        setattr(world.host, method, mined_then_hang)

    return install


def hang_downloading(world: World) -> None:
    """The data source secures one block of each slot, then blocks."""
    original = world.data.fetch

    async def one_block_then_hang(request: Request, slot_index: int, expiry: int, on_blocks: Any, **kw: Any) -> None:
        async def first_only(nbytes: int) -> None:
            await on_blocks(nbytes)
            await _forever()

        await original(request, slot_index, expiry, first_only, **kw)

    world.data.fetch = one_block_then_hang  # type: ignore[method-assign]


def no_hang(_world: World) -> None:
    return None


def undo(world: World) -> None:
    for method in ("reserve_slot", "fill_slot"):
        world.host.on_call(method, None)
        world.host.__dict__.pop(method, None)
    world.data.__dict__.pop("fetch", None)


CASES = {
    "SlotReserving, not sent": (hang_before("reserve_slot"), "SlotReserving"),
    "SlotReserving, mined": (hang_after("reserve_slot"), "SlotReserving"),
    "Downloading": (hang_downloading, "Downloading"),
    "InitialProving": (no_hang, "InitialProving"),
    "Filling, not mined": (hang_before("fill_slot"), "Filling"),
    "Filling, mined": (hang_after("fill_slot"), "Filling"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_sale_stopped_before_its_fill_goes_on_after_the_restart_and_ends_paid(world: World, case: str) -> None:
    hang, state = CASES[case]
    await world.start()
    availability = await world.create_availability()
    balance = await world.host.token_balance(world.host.signer)
    hang(world)
    request = await world.post_request()
    await world.settle()
    await world.until_states([state] * 3)
    await world.books()
    await world.stop()
    undo(world)
    assert len(await world.book.all_reservations()) == 3

    sales = await world.start()
    assert len(sales.agents()) == 3  # none lost
    await world.books()
    await world.until_states(["Proving"] * 3, limit=7200)
    assert await world.host.request_state(request.id) == RequestState.STARTED
    assert sorted(await world.host.my_slots()) == sorted(slot_id(request.id, i) for i in range(3))
    await world.books()

    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    assert await world.book.all_reservations() == []
    assert await world.host.token_balance(world.host.signer) > balance
    world.data.maintain()
    await world.books()
    await world.stop()


async def test_a_stopped_sale_whose_slot_another_host_filled_meanwhile_returns_everything(world: World) -> None:
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.until_states(["InitialProving"] * 3)
    await world.stop()

    rival = world.client.as_account(account(3))
    await rival.reserve_slot(request.id, 1)
    await rival.fill_slot(request.id, 1, FakeProof(b""), WORLD_ASK.collateral_per_slot)  # type: ignore[arg-type]

    await world.start()
    await world.until_states(["Proving"] * 2, limit=7200)
    assert await world.host.get_host(slot_id(request.id, 1)) == rival.signer
    await world.books()
    await world.advance(WORLD_ASK.duration + 120)
    assert world.states() == []
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()


async def test_a_stopped_sale_whose_request_expired_meanwhile_ends_at_start_with_everything_back(world: World) -> None:
    await world.start()
    availability = await world.create_availability()
    request = await world.post_request()
    await world.until_states(["InitialProving"] * 3)
    await world.stop()
    world.clock.set(await world.host.request_expires_at(request.id) + 1)

    sales = await world.start()
    assert sales.agents() == []
    assert await world.host.request_state(request.id) == RequestState.CANCELLED
    after = await world.book.get_availability(availability.id)
    assert after.free_size + after.returning_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    await world.books()
    await world.stop()
