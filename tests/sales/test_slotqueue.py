"""The slot queue: items, priority, bounds, deletes, seen flags and the worker pool."""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import Awaitable, Callable

import pytest
import structlog
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.errors import (
    ConfigError,
    QueueNotRunningError,
    SlotQueueItemExistsError,
    SlotsOutOfRangeError,
)
from codex_node.logutils import configure_logging
from codex_node.market.types import Ask, RequestId, StorageRequested
from codex_node.sales.slotqueue import SlotQueue, SlotQueueItem, item_for_slot, items_for_request
from codex_node.testing.fakeclock import FakeClock

NOW = 1_700_000_000


def rid(n: int) -> RequestId:
    return RequestId(n.to_bytes(32, "big"))


def item(
    n: int = 1,
    index: int = 0,
    *,
    price: int = 10,
    collateral: int = 1000,
    slot_size: int = 100,
    expires_at: int = NOW + 600,
    seen: bool = False,
) -> SlotQueueItem:
    return SlotQueueItem(
        request_id=rid(n),
        slot_index=index,
        slot_size=slot_size,
        duration=3600,
        price_per_byte_per_second=price,
        collateral=collateral,
        expires_at=expires_at,
        seen=seen,
    )


def ask(slots: int = 4, slot_size: int = 1024) -> Ask:
    return Ask(
        proof_probability=1,
        price_per_byte_per_second=5,
        collateral_per_byte=2,
        slots=slots,
        slot_size=slot_size,
        duration=7200,
        max_slot_loss=1,
    )


def running_queue(max_size: int = 128, clock: FakeClock | None = None) -> SlotQueue:
    """A queue without workers, for the data-structure tests (pushes are accepted before ``start``)."""
    return SlotQueue(max_size=max_size, max_workers=1, clock=clock)


def drain(q: SlotQueue) -> list[SlotQueueItem]:
    out = []
    while (i := q.pop_nowait()) is not None:
        out.append(i)
    return out


async def settle() -> None:
    """Let every ready task run until nothing is left to do (no wall-clock wait)."""
    for _ in range(20):
        await asyncio.sleep(0)


# --- items ------------------------------------------------------------------------------------------------------


def test_items_are_equal_when_they_name_the_same_slot() -> None:
    a = item(1, 0, price=1)
    b = item(1, 0, price=99, seen=True)
    assert a == b
    assert hash(a) == hash(b)
    assert a != item(1, 1)
    assert a != item(2, 0)


def test_items_for_request_builds_every_slot_shuffled_with_absolute_expiry() -> None:
    event = StorageRequested(request_id=rid(7), ask=ask(slots=6), expires_at=NOW + 300)
    items = items_for_request(event, rng=random.Random(1))
    assert sorted(i.slot_index for i in items) == list(range(6))
    assert [i.slot_index for i in items] != list(range(6))  # shuffled (for this seed)
    assert items == items_for_request(event, rng=random.Random(1))  # and the shuffle is injectable
    first = items[0]
    assert first.expires_at == NOW + 300
    assert first.collateral == 2 * 1024  # undiscounted collateral per slot by default
    assert first.slot_size == 1024
    assert first.duration == 7200
    assert first.price_per_byte_per_second == 5
    assert not first.seen


def test_items_for_request_takes_explicit_collateral() -> None:
    event = StorageRequested(request_id=rid(7), ask=ask(slots=2), expires_at=NOW)
    assert {i.collateral for i in items_for_request(event, collateral=77)} == {77}


def test_request_with_too_many_slots_is_refused() -> None:
    event = StorageRequested(request_id=rid(7), ask=ask(slots=65_536), expires_at=NOW)
    with pytest.raises(SlotsOutOfRangeError):
        items_for_request(event)


def test_freed_slot_item_carries_absolute_expiry_defect_2() -> None:
    # nim-codex gave a freed slot the request's relative expiry (a duration), so it ranked as expiring at
    # "1970 + 600 s", behind every new request. Here it carries the absolute timestamp and ranks by it.
    relative_expiry = 600
    freed = item_for_slot(rid(1), 3, ask(), expires_at=NOW + 900, collateral=2048)
    fresh = items_for_request(StorageRequested(rid(2), ask(slots=1), expires_at=NOW + relative_expiry))[0]
    assert freed.expires_at == NOW + 900
    q = running_queue()
    q.push(fresh)
    q.push(freed)
    assert drain(q) == [freed, fresh]  # later expiry first, everything else equal


# --- priority -----------------------------------------------------------------------------------------------------


def test_unseen_items_come_before_seen_ones() -> None:
    q = running_queue()
    q.push(item(1, price=1000, seen=True))
    q.push(item(2, price=1))
    assert [i.request_id for i in drain(q)] == [rid(2), rid(1)]


def test_higher_price_per_byte_comes_first() -> None:
    q = running_queue()
    for n, price in ((1, 5), (2, 50), (3, 20)):
        q.push(item(n, price=price))
    assert [i.price_per_byte_per_second for i in drain(q)] == [50, 20, 5]


def test_lower_collateral_per_byte_comes_first_across_slot_sizes() -> None:
    q = running_queue()
    q.push(item(1, collateral=300, slot_size=100))  # 3 per byte
    q.push(item(2, collateral=1000, slot_size=1000))  # 1 per byte, although more in total
    q.push(item(3, collateral=201, slot_size=100))  # 2.01 per byte: exact, not rounded down to 2
    q.push(item(4, collateral=200, slot_size=100))  # 2 per byte
    assert [i.request_id for i in drain(q)] == [rid(2), rid(4), rid(3), rid(1)]


def test_later_expiry_comes_first() -> None:
    q = running_queue()
    q.push(item(1, expires_at=NOW + 10))
    q.push(item(2, expires_at=NOW + 1000))
    assert [i.request_id for i in drain(q)] == [rid(2), rid(1)]


def test_smaller_slot_comes_first_when_all_else_is_equal() -> None:
    q = running_queue()
    q.push(item(1, slot_size=200, collateral=2000))
    q.push(item(2, slot_size=100, collateral=1000))
    assert [i.request_id for i in drain(q)] == [rid(2), rid(1)]


def test_equal_items_are_served_in_push_order_so_shuffled_slots_stay_shuffled() -> None:
    event = StorageRequested(request_id=rid(7), ask=ask(slots=16), expires_at=NOW)
    items = items_for_request(event, rng=random.Random(3))
    q = running_queue()
    q.push_all(items)
    assert [i.slot_index for i in drain(q)] == [i.slot_index for i in items]


# --- bounds -------------------------------------------------------------------------------------------------------


def test_full_queue_evicts_the_lowest_priority_item_defect_1() -> None:
    # Pushed in this order, a binary heap holds [p9, p7, p8, p1]; nim-codex then dropped whatever sat last in the
    # heap array after the fifth push (here the newcomer p6), keeping the worst item p1.
    q = running_queue(max_size=4)
    for n, price in ((1, 9), (2, 1), (3, 8), (4, 7)):
        assert q.push(item(n, price=price))
    assert q.push(item(5, price=6))
    assert len(q) == 4
    assert (rid(2), 0) not in q
    assert [i.price_per_byte_per_second for i in drain(q)] == [9, 8, 7, 6]


def test_item_worse_than_everything_in_a_full_queue_is_not_added() -> None:
    q = running_queue(max_size=2)
    q.push(item(1, price=5))
    q.push(item(2, price=6))
    assert q.push(item(3, price=1)) is False
    assert (rid(3), 0) not in q
    assert len(q) == 2


def test_newcomer_equal_to_the_worst_item_of_a_full_queue_is_not_added() -> None:
    q = running_queue(max_size=1)
    q.push(item(1))
    assert q.push(item(2)) is False
    assert [i.request_id for i in drain(q)] == [rid(1)]


def test_eviction_keeps_working_after_the_queue_drains_and_refills() -> None:
    q = running_queue(max_size=3)
    for round_ in range(4):
        base = round_ * 10
        for n, price in ((1, 5), (2, 9), (3, 7), (4, 1), (5, 8)):
            q.push(item(base + n, price=price))
        assert [i.price_per_byte_per_second for i in drain(q)] == [9, 8, 7]


def test_duplicate_push_is_refused() -> None:
    q = running_queue()
    q.push(item(1, 0))
    with pytest.raises(SlotQueueItemExistsError):
        q.push(item(1, 0, price=99))
    assert len(q) == 1


async def test_push_after_stop_is_refused() -> None:
    q = SlotQueue()
    q.start(lambda _i: asyncio.sleep(0))
    await q.stop()
    with pytest.raises(QueueNotRunningError):
        q.push(item())


@pytest.mark.parametrize(("size", "workers"), [(0, 1), (3, 4), (3, 0)])
def test_worker_count_must_fit_the_queue_size(size: int, workers: int) -> None:
    with pytest.raises(ConfigError):
        SlotQueue(max_size=size, max_workers=workers)


# --- deletes and seen flags -----------------------------------------------------------------------------------------


def test_delete_one_slot() -> None:
    q = running_queue()
    q.push(item(1, 0))
    q.push(item(1, 1))
    assert q.delete(rid(1), 0) is True
    assert q.delete(rid(1), 0) is False
    assert len(q) == 1
    assert [(i.request_id, i.slot_index) for i in drain(q)] == [(rid(1), 1)]


def test_delete_every_slot_of_a_request() -> None:
    q = running_queue()
    for index in range(3):
        q.push(item(1, index))
    q.push(item(2, 0))
    assert q.delete_request(rid(1)) == 3
    assert q.delete_request(rid(1)) == 0
    assert [i.request_id for i in drain(q)] == [rid(2)]


def test_deleted_slot_can_be_pushed_again_and_is_served_once() -> None:
    q = running_queue()
    q.push(item(1, 0, price=5))
    q.delete(rid(1), 0)
    q.push(item(1, 0, price=7))
    assert [i.price_per_byte_per_second for i in drain(q)] == [7]


def test_clear_seen_flags_makes_every_item_unseen_and_reorders() -> None:
    q = running_queue()
    q.push(item(1, price=9, seen=True))
    q.push(item(2, price=1))
    q.clear_seen_flags()
    popped = drain(q)
    assert [i.request_id for i in popped] == [rid(1), rid(2)]
    assert not any(i.seen for i in popped)


def test_items_lists_the_queue_best_first_without_changing_it() -> None:
    q = running_queue()
    q.push(item(1, price=1))
    q.push(item(2, price=2))
    assert [i.request_id for i in q.items()] == [rid(2), rid(1)]
    assert len(q) == 2


def test_expired_items_are_dropped_on_pop_when_a_clock_is_given() -> None:
    clock = FakeClock(NOW)
    q = running_queue(clock=clock)
    q.push(item(1, price=9, expires_at=NOW))
    q.push(item(2, price=1, expires_at=NOW + 1))
    assert [i.request_id for i in drain(q)] == [rid(2)]


async def test_pop_waits_for_a_push() -> None:
    q = running_queue()
    waiter = asyncio.create_task(q.pop())
    await settle()
    assert not waiter.done()
    q.push(item(3))
    assert (await asyncio.wait_for(waiter, 5)).request_id == rid(3)


# --- workers ------------------------------------------------------------------------------------------------------


class Processor:
    """An ``on_process_slot`` callback that holds each slot until the test releases it."""

    def __init__(self) -> None:
        self.started: list[SlotQueueItem] = []
        self.finished: list[SlotQueueItem] = []
        self.cancelled: list[SlotQueueItem] = []
        self.release: dict[tuple[bytes, int], asyncio.Event] = {}
        self.progress = asyncio.Event()
        self.fail: Callable[[SlotQueueItem], Awaitable[None]] | None = None

    async def __call__(self, it: SlotQueueItem) -> None:
        self.started.append(it)
        self.progress.set()
        gate = self.release.setdefault(it.ident, asyncio.Event())
        try:
            if self.fail is not None:
                await self.fail(it)
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(it)
            raise
        self.finished.append(it)
        self.progress.set()

    def done(self, it: SlotQueueItem) -> None:
        self.release.setdefault(it.ident, asyncio.Event()).set()

    async def wait_started(self, n: int) -> None:
        async def until() -> None:
            while len(self.started) < n:
                self.progress.clear()
                await self.progress.wait()

        await asyncio.wait_for(until(), 5)


async def test_queue_starts_paused_and_leaves_seen_items_alone() -> None:
    q = SlotQueue(max_workers=2)
    p = Processor()
    q.start(p)
    assert q.paused
    q.push(item(1, seen=True))  # a seen item does not unpause
    await settle()
    assert q.paused
    assert p.started == []
    assert len(q) == 1
    await q.stop()


async def test_pushing_an_unseen_item_unpauses_and_it_is_processed() -> None:
    q = SlotQueue(max_workers=2)
    p = Processor()
    q.start(p)
    q.push(item(1))
    await p.wait_started(1)
    assert not q.paused
    assert q.busy_workers == 1
    await q.stop()


async def test_at_most_max_workers_slots_are_processed_at_once_and_a_finished_one_frees_its_worker() -> None:
    q = SlotQueue(max_workers=3)
    p = Processor()
    q.start(p)
    for n, price in enumerate((5, 4, 3, 2, 1), start=1):
        q.push(item(n, price=price))
    await p.wait_started(3)
    await settle()
    assert [i.price_per_byte_per_second for i in p.started] == [5, 4, 3]
    assert q.busy_workers == 3
    assert len(q) == 2
    p.done(p.started[0])  # e.g. the slot was filled: the worker goes back to the queue
    await p.wait_started(4)
    assert p.started[3].price_per_byte_per_second == 2
    assert q.busy_workers == 3
    await q.stop()


async def test_seen_item_pauses_the_queue_and_the_worker_is_not_lost_defect_11() -> None:
    q = SlotQueue(max_workers=3)
    p = Processor()
    q.start(p)
    q.push(item(1, seen=True))
    q.unpause()  # e.g. an availability changed, but nothing matched the seen item
    await settle()
    assert q.paused  # the worker that popped the seen item paused the queue and put the item back
    assert len(q) == 1
    assert p.started == []
    # All three workers are still there: three new slots are processed at once.
    for n in (2, 3, 4):
        q.push(item(n))
    await p.wait_started(3)
    await settle()
    assert q.busy_workers == 3
    assert {i.request_id for i in p.started} == {rid(2), rid(3), rid(4)}
    assert q.worker_count == 3
    await q.stop()


async def test_clearing_seen_flags_and_unpausing_processes_seen_items_again() -> None:
    q = SlotQueue(max_workers=1)
    p = Processor()
    q.start(p)
    q.push(item(1, seen=True))
    q.unpause()
    await settle()
    assert q.paused
    q.clear_seen_flags()  # what Sales does when an enabled availability is saved
    q.unpause()
    await p.wait_started(1)
    assert p.started[0].request_id == rid(1)
    assert not p.started[0].seen
    await q.stop()


async def test_a_failing_callback_is_logged_and_the_worker_carries_on() -> None:
    q = SlotQueue(max_workers=1)
    p = Processor()

    async def boom(it: SlotQueueItem) -> None:
        if it.request_id == rid(1):
            raise RuntimeError("agent crashed")

    p.fail = boom
    with capture_logs() as logs:
        q.start(p)
        q.push(item(1, price=9))
        q.push(item(2, price=1))
        await p.wait_started(2)
    assert any(e["event"] == "slot processing failed" and e["log_level"] == "error" for e in logs)
    assert q.worker_count == 1
    assert q.busy_workers == 1
    await q.stop()


async def test_a_cancellation_from_inside_the_callback_does_not_kill_the_worker() -> None:
    q = SlotQueue(max_workers=1)
    p = Processor()

    async def awaits_a_cancelled_task(it: SlotQueueItem) -> None:
        if it.request_id == rid(1):
            inner = asyncio.ensure_future(asyncio.Event().wait())
            inner.cancel()
            await inner  # raises CancelledError although nobody cancelled the worker

    p.fail = awaits_a_cancelled_task
    q.start(p)
    q.push(item(1, price=9))
    q.push(item(2, price=1))
    await p.wait_started(2)
    assert q.worker_count == 1
    await q.stop()


async def test_stop_cancels_the_workers_and_the_slots_they_process() -> None:
    q = SlotQueue(max_workers=2)
    p = Processor()
    q.start(p)
    q.push(item(1))
    q.push(item(2))
    await p.wait_started(2)
    await q.stop()
    assert q.worker_count == 0
    assert q.busy_workers == 0
    assert {i.request_id for i in p.cancelled} == {rid(1), rid(2)}
    assert not q.running


async def test_queue_can_be_started_again_after_stop() -> None:
    q = SlotQueue(max_workers=1)
    p = Processor()
    q.start(p)
    await q.stop()
    q.start(p)
    q.push(item(1))
    await p.wait_started(1)
    await q.stop()


async def test_gauges_report_length_and_busy_workers() -> None:
    registry = CollectorRegistry()
    q = SlotQueue(max_workers=1, registry=registry)
    p = Processor()
    q.start(p)
    q.push(item(1, price=2))
    q.push(item(2, price=1))
    await p.wait_started(1)
    assert registry.get_sample_value("codex_slotqueue_length") == 1
    assert registry.get_sample_value("codex_slotqueue_busy_workers") == 1
    await q.stop()
    assert registry.get_sample_value("codex_slotqueue_busy_workers") == 0


async def test_the_start_line_gives_the_capacity_as_a_count_not_bytes() -> None:
    out = io.StringIO()
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("info", "text", stream=out, cache=False)
    try:
        q = SlotQueue(max_size=128, max_workers=1)
        q.start(Processor())
        await q.stop()
    finally:
        structlog.configure(**saved)
        root.handlers, root.level = handlers, level
    line = next(x for x in out.getvalue().splitlines() if "slot queue started" in x)
    assert "capacity=128 " in line + " "
    assert "128B" not in line
