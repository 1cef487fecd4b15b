"""An availability saved while a sale is deciding there is none must still get that sale's slot sold.

Found end to end (tests/e2e): the operator created the availability just after a request was posted; one slot's
Preparing had already looked and found nothing, the save cleared the queue's seen flags (the slot was not in the
queue but with its agent), and the slot went back as *seen*: the queue paused on it for good and the slot was
never sold.
"""

from __future__ import annotations

from salesworld import World, make_world

from codex_node.sales.availability import Availability
from codex_node.sales.states.proving import Proving


async def test_an_availability_saved_while_preparing_looked_is_not_lost() -> None:
    world: World = await make_world()
    await world.start()
    book = world.book
    original = book.find_availability
    created: list[Availability] = []

    async def find_then_the_operator_saves(*args: int) -> Availability | None:
        found = await original(*args)  # nothing yet
        if not created:
            created.append(await world.create_availability())  # the save lands before the sale gives up
        return found

    book.find_availability = find_then_the_operator_saves  # type: ignore[method-assign, assignment]
    request = await world.post_request()
    await world.settle()
    assert created, "the race was not staged"
    book.find_availability = original  # type: ignore[method-assign]

    await world.advance(300)
    assert world.sales is not None
    proving = [a for a in world.sales.agents() if isinstance(a.state, Proving)]
    assert sorted(a.data.slot_index for a in proving) == list(range(request.ask.slots))
    await world.books()
    await world.stop()
