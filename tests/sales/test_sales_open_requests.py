"""Open requests seen before a stop are queued again after the restart (ARCHITECTURE.md rule 5).

The event stream's cursor has moved past their ``StorageRequested``: no catch-up replays them. Sales remembers
them in the metadata store (``sales/openrequests.py``) and, on start, queues the free slots of those the chain still
lists as open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

import pytest
import structlog
from salesfakes import BLOCK, FakeProof
from salesworld import WORLD_ASK, World, make_world

from codex_node.errors import ChainError, KVError
from codex_node.market.types import RequestCancelled, RequestFailed, RequestId, RequestState
from codex_node.sales.openrequests import PREFIX, OpenRequests
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof


def sold(world: World) -> dict[bytes, list[str]]:
    assert world.sales is not None
    out: dict[bytes, list[str]] = {}
    for agent in world.sales.agents():
        out.setdefault(agent.data.request_id, []).append(type(agent.state).__name__)
    return {k: sorted(v) for k, v in out.items()}


def remembered(world: World) -> set[bytes]:
    return {bytes.fromhex(k[len(PREFIX) :]) for k, _ in world.kv.iterate(PREFIX)}


def queued(world: World) -> list[tuple[bytes, int]]:
    assert world.queue is not None
    return sorted((i.request_id, i.slot_index) for i in world.queue.items())


async def until_sold(world: World, expected: dict[bytes, list[str]], limit: int = 3600) -> None:
    waited = 0
    while sold(world) != expected:
        assert waited < limit, sold(world)
        await world.advance(30)
        waited += 30


async def test_a_request_seen_before_any_availability_is_sold_after_a_restart(world: World) -> None:
    await world.start()
    request = await world.post_request()
    await world.settle()
    assert sold(world) == {}
    await world.stop()

    await world.start()
    await world.settle()  # tried at once, ignored again (no availability yet), back in the queue
    assert queued(world) == [(request.id, i) for i in range(WORLD_ASK.slots)]
    await world.create_availability(size=12 * BLOCK)
    await until_sold(world, {request.id: ["Proving"] * 3})
    assert world.host.handler_errors == []
    await world.books()
    await world.stop()


async def test_a_restart_queues_only_the_free_slots_we_do_not_host(world: World) -> None:
    await world.start()
    await world.create_availability(size=WORLD_ASK.slot_size)  # room for one slot only
    request = await world.post_request()
    await until_sold(world, {request.id: ["Proving"]})
    assert world.sales is not None
    [ours] = [a.data.slot_index for a in world.sales.agents()]
    await world.stop()

    await world.start()
    await world.settle()
    assert sold(world) == {request.id: ["Proving"]}
    assert queued(world) == [(request.id, i) for i in range(WORLD_ASK.slots) if i != ours]
    await world.stop()


async def test_a_request_filled_or_expired_while_down_is_forgotten_not_queued(world: World) -> None:
    await world.start()
    taken = await world.post_request()
    expiring = await world.post_request(expiry=60)
    still_open = await world.post_request(expiry=1200)
    await world.settle()
    assert remembered(world) == {taken.id, expiring.id, still_open.id}
    await world.stop()

    rival = world.client.as_account(account(3))
    for i in range(WORLD_ASK.slots):
        await rival.reserve_slot(taken.id, i)
        await rival.fill_slot(taken.id, i, cast("StorageProof", FakeProof(b"")), WORLD_ASK.collateral_per_slot)
    assert await world.host.request_state(taken.id) == RequestState.STARTED
    world.clock.set(world.clock.now() + 120)

    await world.start()
    await world.settle()
    assert {r for r, _ in queued(world)} == {still_open.id}
    assert remembered(world) == {still_open.id}
    await world.stop()


async def test_the_end_events_forget_a_remembered_request(world: World) -> None:
    await world.start()
    filled = await world.post_request()
    failed = await world.post_request()
    cancelled = await world.post_request()
    await world.settle()
    assert remembered(world) == {filled.id, failed.id, cancelled.id}
    await world.host.emit(RequestFailed(failed.id))
    await world.host.emit(RequestCancelled(cancelled.id))
    await world.settle()
    assert remembered(world) == {filled.id}
    await world.create_availability(size=12 * BLOCK)
    await until_sold(world, {filled.id: ["Proving"] * 3})
    assert remembered(world) == set()
    await world.stop()


async def test_a_request_the_chain_cannot_be_asked_about_stays_remembered(world: World) -> None:
    await world.start()
    request = await world.post_request()
    await world.settle()
    await world.stop()

    world.host.fail_next("request_state", ChainError("node unreachable"))
    await world.start()
    assert queued(world) == []
    assert remembered(world) == {request.id}
    await world.stop()
    await world.start()
    await world.settle()
    assert {r for r, _ in queued(world)} == {request.id}
    await world.stop()


async def test_past_the_cap_the_request_expiring_first_is_dropped_and_logged() -> None:
    world = await make_world(max_open_requests=2)
    await world.start()
    late = await world.post_request(expiry=900)
    early = await world.post_request(expiry=300)
    with structlog.testing.capture_logs() as logs:
        middle = await world.post_request(expiry=600)
        await world.settle()
    assert remembered(world) == {late.id, middle.id}
    dropped = [e for e in logs if e["event"].startswith("too many open requests")]
    assert [e["request_id"] for e in dropped] == [early.id.hex()]
    await world.stop()


def test_the_records_survive_a_reopen_and_expired_ones_go_when_one_is_added() -> None:
    kv, clock = MemoryKV(), FakeClock(now=1000)
    first = OpenRequests(kv, clock)
    first.remember(_rid(1), WORLD_ASK, 1100)
    first.remember(_rid(2), replace(WORLD_ASK, slots=5), 2000)
    first.remember(_rid(3), WORLD_ASK, 999)  # already past its expiry: not kept
    again = OpenRequests(kv, clock)
    assert [(r.request_id, r.expires_at, r.ask) for r in again.all()] == [
        (_rid(1), 1100, WORLD_ASK),
        (_rid(2), 2000, replace(WORLD_ASK, slots=5)),
    ]
    clock.set(1200)
    again.remember(_rid(4), WORLD_ASK, 1300)
    assert {k for k, _ in kv.iterate(PREFIX)} == {f"{PREFIX}{_rid(n).hex()}" for n in (2, 4)}
    again.forget(_rid(2))
    assert [r.request_id for r in OpenRequests(kv, clock).all()] == [_rid(4)]


def test_a_corrupt_record_is_skipped_and_logged() -> None:
    kv, clock = MemoryKV(), FakeClock()
    kv.put(f"{PREFIX}{_rid(1).hex()}", b"{not json")
    kv.put(f"{PREFIX}zz", b"{}")
    with structlog.testing.capture_logs() as logs:
        assert OpenRequests(kv, clock).all() == []
    assert len([e for e in logs if e["event"] == "corrupt open request record skipped"]) == 2


def _rid(n: int) -> RequestId:
    return RequestId(bytes([n]) * 32)


def test_a_failed_write_remembers_nothing_and_the_next_sighting_writes_it() -> None:
    kv, clock = MemoryKV(), FakeClock(now=1000)
    requests = OpenRequests(kv, clock)
    kv.fail_next_write()
    with pytest.raises(KVError):
        requests.remember(_rid(1), WORLD_ASK, 2000)
    assert _rid(1) not in requests
    requests.remember(_rid(1), WORLD_ASK, 2000)  # the catch-up's or a replayed event
    assert [r.request_id for r in OpenRequests(kv, clock).all()] == [_rid(1)]
