"""Random sequences of chain events, failures and restarts driven through Sales: the books always balance.

After every step: ARCHITECTURE.md rule 1 on what is persisted (``World.books``), every live agent is in a state
a sale can rest in (endings clean up and disappear), and slot-queue workers are held exactly by the agents still
working towards a fill. At the end, once every contract is over, every sale has ended, every reservation is gone,
and ``stop()`` leaves no task and no clock waiter behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from typing import cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from salesfakes import BLOCK, FakeProof
from salesworld import WORLD_ASK, World, make_world

from codex_node.errors import ChainError, CodexError
from codex_node.market.types import SlotState
from codex_node.sales.availability import AvailabilityPatch, AvailabilityTerms
from codex_node.testing.mockmarket import account

RESTING_STATES = {
    "Preparing",
    "SlotReserving",
    "Downloading",
    "InitialProving",
    "Filling",
    "Filled",
    "Proving",
    "ProvingSimulated",
    "Payout",
    "Unknown",
}
WORKER_STATES = {"Preparing", "SlotReserving", "Downloading", "InitialProving", "Filling"}
FAILABLE = [
    "get_request",
    "slot_state",
    "reserve_slot",
    "fill_slot",
    "free_slot",
    "submit_proof",
    "get_challenge",
    "request_end",
    "current_collateral",
    "get_host",
]


@dataclass(frozen=True)
class PostRequest:
    slots: int
    blocks: int
    price: int
    collateral_per_byte: int
    expiry: int
    duration: int


@dataclass(frozen=True)
class CreateAvailability:
    blocks: int
    collateral_per_byte: int


@dataclass(frozen=True)
class ToggleAvailability:
    pick: int


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class RivalFills:
    pick: int


@dataclass(frozen=True)
class HostLosesSlot:
    """Our own account frees a slot it hosts behind the agent's back: as if slashed out of it."""

    pick: int


@dataclass(frozen=True)
class ClientWithdraws:
    pick: int


@dataclass(frozen=True)
class ChainFails:
    method: str


@dataclass(frozen=True)
class FetchFails:
    pass


@dataclass(frozen=True)
class Restart:
    pass


@dataclass(frozen=True)
class Maintain:
    pass


Action = (
    PostRequest
    | CreateAvailability
    | ToggleAvailability
    | Advance
    | RivalFills
    | HostLosesSlot
    | ClientWithdraws
    | ChainFails
    | FetchFails
    | Restart
    | Maintain
)

requests = st.builds(
    PostRequest,
    slots=st.integers(1, 3),
    blocks=st.integers(1, 2),
    price=st.integers(1, 3),
    collateral_per_byte=st.integers(1, 3),
    expiry=st.integers(90, 300),
    duration=st.integers(400, 1500),
)
advances = st.builds(Advance, seconds=st.integers(1, 400))
# Time passing and new requests are what most steps are; the rest are disturbances.
actions = st.one_of(
    requests,
    requests,
    advances,
    advances,
    st.builds(CreateAvailability, blocks=st.integers(1, 8), collateral_per_byte=st.integers(1, 4)),
    st.builds(ToggleAvailability, pick=st.integers(0, 10)),
    st.builds(RivalFills, pick=st.integers(0, 100)),
    st.builds(HostLosesSlot, pick=st.integers(0, 100)),
    st.builds(ClientWithdraws, pick=st.integers(0, 10)),
    st.builds(ChainFails, method=st.sampled_from(FAILABLE)),
    st.just(FetchFails()),
    st.just(Restart()),
    st.just(Restart()),
    st.just(Maintain()),
)


async def apply(world: World, action: Action) -> None:
    rival = world.client.as_account(account(3))
    match action:
        case PostRequest():
            ask = replace(
                WORLD_ASK,
                slots=action.slots,
                max_slot_loss=min(1, action.slots - 1),
                slot_size=action.blocks * BLOCK,
                price_per_byte_per_second=action.price,
                collateral_per_byte=action.collateral_per_byte,
                duration=action.duration,
            )
            await world.post_request(ask, action.expiry)
        case CreateAvailability():
            blocks = min(action.blocks, world.ledger.quota.available // BLOCK)
            if blocks > 0:
                await world.book.create_availability(
                    AvailabilityTerms(
                        total_size=blocks * BLOCK,
                        duration=24 * 3600,
                        min_price_per_byte_per_second=1,
                        total_collateral=blocks * BLOCK * action.collateral_per_byte,
                    )
                )
        case ToggleAvailability():
            availabilities = await world.book.availabilities()
            if availabilities:
                a = availabilities[action.pick % len(availabilities)]
                await world.book.update_availability(a.id, AvailabilityPatch(enabled=not a.enabled))
        case Advance():
            await world.advance(action.seconds)
        case RivalFills():
            slots = [(r, i) for r in world.requests for i in range(r.ask.slots)]
            if slots:
                request, index = slots[action.pick % len(slots)]
                try:
                    await rival.reserve_slot(request.id, index)
                    collateral = await rival.slot_collateral(request.id, index)
                    await rival.fill_slot(request.id, index, cast("object", FakeProof(b"")), collateral)  # type: ignore[arg-type]
                except CodexError:
                    pass  # not free, not reservable: the rival simply loses
        case HostLosesSlot():
            # Our account, but not the view Sales uses (whose calls may have failures injected).
            host = world.client.as_account(world.host.signer)
            hosted = await host.my_slots()
            filled = [s for s in hosted if await host.slot_state(s) == SlotState.FILLED]
            if filled:
                await host.free_slot(filled[action.pick % len(filled)])
        case ClientWithdraws():
            if world.requests:
                request = world.requests[action.pick % len(world.requests)]
                with contextlib.suppress(CodexError):  # still running, or nothing to withdraw
                    await world.client.withdraw_funds(request.id)
        case ChainFails():
            world.host.fail_next(action.method, ChainError(f"injected {action.method} failure"))
        case FetchFails():
            world.data.fail_next_fetch = True
        case Restart():
            await world.stop()
            await world.start()
        case Maintain():
            world.data.maintain()
    await world.settle()


async def check(world: World) -> None:
    await world.books()
    sales = world.sales
    assert sales is not None
    agents = sales.agents()
    for agent in agents:
        assert type(agent.state).__name__ in RESTING_STATES, agent.state
    holding = [a for a in agents if a.data.slot_queue_item is not None and type(a.state).__name__ in WORKER_STATES]
    assert world.queue is not None
    assert world.queue.busy_workers == len(holding)


async def scenario(steps: list[Action]) -> None:
    before = asyncio.all_tasks()
    world = await make_world(max_workers=2)
    await world.start()
    await world.create_availability(size=6 * BLOCK, collateral=100 * BLOCK)
    await world.post_request()
    for action in steps:
        await apply(world, action)
        await check(world)

    # Every contract ends; then every sale must have ended and given everything back.
    world.host.clear_failures()
    world.data.fail_next_fetch = False
    ends = [await world.host.request_end(r.id) for r in world.requests]
    await world.advance(max([*ends, world.clock.now()]) - world.clock.now() + 200, 60)
    await check(world)
    assert world.sales is not None
    assert world.sales.agents() == []
    assert await world.book.all_reservations() == []
    world.data.maintain()
    await world.books()
    await world.stop()
    assert asyncio.all_tasks() == before
    assert world.clock.waiters == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, min_size=5, max_size=30))
def test_random_chain_events_failures_and_restarts_keep_the_books_balanced(steps: list[Action]) -> None:
    asyncio.run(scenario(steps))
