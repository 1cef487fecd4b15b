"""The slot queue: storage-request slots this node might sell, best first, and the workers that take them.

Every slot announced on chain (``StorageRequested``, ``SlotFreed``) becomes a :class:`SlotQueueItem`. A small pool
of workers pops the best item and hands it to ``on_process_slot`` (Sales starts a sales agent and waits until the
slot is Filled or the sale is cleaned up), so at most ``max_workers`` slots are being prepared at once.

Decisions (MARKETPLACE.md §3 and §5; each differs from nim-codex on purpose):

- **Priority** is a pure sort key (:func:`priority_key`): unseen first; higher price per byte per second; lower
  collateral per byte; later absolute expiry; smaller slot. Equal keys are served in push order, so the shuffled
  slots of one request stay shuffled (every host does not race for slot 0).
- **Collateral per byte** is ``collateral / slot_size`` as an exact fraction, where ``collateral`` is what the host
  would post (repair discount included). A repair slot therefore ranks as cheaper than the same slot new, which is
  what it is.
- **Bounded**: when full, the *lowest-priority* item is dropped; a new item worse than everything queued is not
  added and :meth:`SlotQueue.push` returns ``False`` (anchor defect #1 evicted an arbitrary heap leaf).
- **Expiry is absolute** on every item, also those from ``SlotFreed`` (anchor defect #2 mixed in a duration).
- **Workers are plain loops**: a ``seen`` item pauses the queue and goes back, and the worker carries on (defect
  #11 lost a worker each time). A failing callback is logged; a worker only ends when the queue is stopped.

Structure: two :class:`~codex_node.utils.lazyheap.LazyHeap` over the same items, keyed by slot — one on
``(key, seq)`` for popping the best and one on the negated ``(key, seq)`` for evicting the worst — so push, pop and
eviction are O(log n) amortized and deletes are O(1) (by request: O(slots of that request)). The worst-heap only
exists while the queue is at least half full: it is built (O(n)) the first time an eviction is needed and dropped
when the queue has drained below half, so a queue that never fills pays for one heap only, and the build cost is
amortized over the ≥ n/2 pushes needed to fill it again. This class keeps the policy: order, bounds, ``seen``,
pausing and the workers.

This module must never touch the chain or the reservations: deciding whether a slot can be sold is the caller's job.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import random
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Gauge

from codex_node.clock import Clock
from codex_node.errors import ConfigError, QueueNotRunningError, SlotQueueItemExistsError, SlotsOutOfRangeError
from codex_node.market.types import Ask, RequestId, StorageRequested
from codex_node.utils.lazyheap import LazyHeap
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

DEFAULT_MAX_SIZE = 128
DEFAULT_MAX_WORKERS = 3
MAX_SLOTS_PER_REQUEST = 65_535
"""More slots than this in one request is refused: building that many items is a memory hazard, not a sale."""

PriorityKey = tuple[int, int, int, int | Fraction, int, int]
"""``(seen, -price_per_byte_per_second, collateral_per_byte as whole part and fractional part, -expires_at,
slot_size)``; smaller is better."""

ProcessSlot = Callable[["SlotQueueItem"], Awaitable[None]]
"""Returns once the slot is Filled or its sale cleaned up; only then is the worker free again."""


def priority_key(
    *, seen: bool, price_per_byte_per_second: int, collateral: int, slot_size: int, expires_at: int
) -> PriorityKey:
    """The queue order as a sort key: a smaller key is served first. Pure; see the module docstring.

    ``collateral / slot_size`` is compared exactly, split into its whole part and its fractional part so that the
    common case (a whole number of tokens per byte; the fractional part is ``0``) compares as plain integers.
    """
    whole, rest = divmod(collateral, slot_size)
    return (
        int(seen),
        -price_per_byte_per_second,
        whole,
        Fraction(rest, slot_size) if rest else 0,
        -expires_at,
        slot_size,
    )


def _negate(key: PriorityKey) -> PriorityKey:
    """The key whose ascending order is the descending order of ``key`` (every component is a number)."""
    return (-key[0], -key[1], -key[2], -key[3], -key[4], -key[5])


@dataclass(frozen=True, slots=True, eq=False)
class SlotQueueItem:
    """One slot the node might sell. Immutable: an item never changes while it sits in a heap.

    Two items are equal when they name the same slot, ``(request_id, slot_index)``, whatever their other fields.
    """

    request_id: RequestId
    slot_index: int
    slot_size: int
    duration: int
    price_per_byte_per_second: int
    collateral: int
    """What the host would post to fill this slot, repair discount already applied."""
    expires_at: int
    """Absolute timestamp after which the request can no longer be filled (never a duration)."""
    seen: bool = False
    """Already processed without a matching availability; served only when nothing unseen is left."""

    key: PriorityKey = field(init=False, repr=False)
    worst_key: PriorityKey = field(init=False, repr=False)
    ident: tuple[RequestId, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.slot_size <= 0:
            raise ValueError("slot_size must be positive")
        if self.slot_index < 0:
            raise ValueError("slot_index must not be negative")
        # Computed once: the heaps compare keys many times per push and pop.
        object.__setattr__(
            self,
            "key",
            priority_key(
                seen=self.seen,
                price_per_byte_per_second=self.price_per_byte_per_second,
                collateral=self.collateral,
                slot_size=self.slot_size,
                expires_at=self.expires_at,
            ),
        )
        object.__setattr__(self, "worst_key", _negate(self.key))
        object.__setattr__(self, "ident", (self.request_id, self.slot_index))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SlotQueueItem):
            return NotImplemented
        return self.ident == other.ident

    def __hash__(self) -> int:
        return hash(self.ident)

    def with_seen(self, seen: bool = True) -> SlotQueueItem:
        return replace(self, seen=seen)


def items_for_request(
    event: StorageRequested, *, collateral: int | None = None, rng: random.Random | None = None
) -> list[SlotQueueItem]:
    """All slots of a newly requested storage request, in a random order.

    The order is shuffled so that hosts seeing the same request start on different slots; the queue keeps push
    order among equal items. ``collateral`` defaults to the ask's undiscounted collateral per slot.
    """
    ask = event.ask
    if ask.slots > MAX_SLOTS_PER_REQUEST:
        raise SlotsOutOfRangeError(f"request has {ask.slots} slots, more than {MAX_SLOTS_PER_REQUEST}")
    indices = list(range(ask.slots))
    (rng or random.Random()).shuffle(indices)
    per_slot = ask.collateral_per_slot if collateral is None else collateral
    return [item_for_slot(event.request_id, i, ask, expires_at=event.expires_at, collateral=per_slot) for i in indices]


def item_for_slot(
    request_id: RequestId, slot_index: int, ask: Ask, *, expires_at: int, collateral: int, seen: bool = False
) -> SlotQueueItem:
    """One slot, e.g. from ``SlotFreed``. ``expires_at`` must be the request's absolute expiry
    (``Market.request_expires_at``), not ``Request.expiry``, which is a duration."""
    return SlotQueueItem(
        request_id=request_id,
        slot_index=slot_index,
        slot_size=ask.slot_size,
        duration=ask.duration,
        price_per_byte_per_second=ask.price_per_byte_per_second,
        collateral=collateral,
        expires_at=expires_at,
        seen=seen,
    )


# An entry is (*key, seq, ident, item) in the best-heap and (*worst_key, -seq, ident, item) in the worst-heap: flat
# tuples, because heapq compares nested tuples about twice as slowly. ``seq`` is unique per push, so comparisons never
# reach the ident or the item; the ident is in the tuple so that the heaps find it with a C-level itemgetter.
_Entry = tuple[int, int, int, "int | Fraction", int, int, int, tuple[RequestId, int], SlotQueueItem]
_SEQ: Final = 6
_IDENT: Final = 7
_ITEM: Final = 8
_ident = operator.itemgetter(_IDENT)


class SlotQueue:
    """Bounded priority queue of slots plus the worker pool that processes them.

    Starts paused: workers wait until :meth:`unpause` (Sales calls it when an enabled availability is saved) or until
    an unseen item is pushed. ``len(queue)``, :attr:`busy_workers` and :attr:`paused` are exposed for metrics.
    """

    def __init__(
        self,
        max_size: int = DEFAULT_MAX_SIZE,
        max_workers: int = DEFAULT_MAX_WORKERS,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``clock``: when given, items whose ``expires_at`` has passed are dropped instead of being served.
        ``registry``: where to register the gauges; ``None`` registers none (tests build many queues)."""
        if max_size < 1:
            raise ConfigError("--max-slot-queue-size", f"must be at least 1, got {max_size}")
        if not 1 <= max_workers <= max_size:
            raise ConfigError(
                "--max-slot-workers", f"must be between 1 and --max-slot-queue-size ({max_size}), got {max_workers}"
            )
        self.max_size = max_size
        self.max_workers = max_workers
        self._clock = clock
        self._best: LazyHeap[tuple[RequestId, int], _Entry] = LazyHeap(_ident)
        self._worst: LazyHeap[tuple[RequestId, int], _Entry] | None = None  # only while at least half full
        self._by_request: dict[RequestId, set[int]] = {}
        self._seq = itertools.count()
        self._unpaused = asyncio.Event()
        self._not_empty = asyncio.Event()
        self._running = False
        self._stopped = False
        self._busy = 0
        self._tasks = TrackedTasks("slotqueue")
        if registry is not None:
            Gauge("codex_slotqueue_length", "Slots waiting in the slot queue", registry=registry).set_function(
                lambda: len(self)
            )
            Gauge(
                "codex_slotqueue_busy_workers", "Slot-queue workers processing a slot", registry=registry
            ).set_function(lambda: self._busy)

    # --- state for metrics and the API ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._best)

    def __contains__(self, ident: object) -> bool:
        """``(request_id, slot_index) in queue``."""
        return ident in self._best

    @property
    def busy_workers(self) -> int:
        return self._busy

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    @property
    def running(self) -> bool:
        return self._running

    def items(self) -> list[SlotQueueItem]:
        """A snapshot of the queued items, best first."""
        return [e[_ITEM] for e in sorted(self._best.entries())]

    def __iter__(self) -> Iterator[SlotQueueItem]:
        return iter(self.items())

    # --- queue operations (synchronous: nothing here awaits, so no interleaving inside one operation) ----------

    def push(self, item: SlotQueueItem) -> bool:
        """Queue ``item``. Returns ``False`` when the queue is full and ``item`` ranks below every queued item
        (it is dropped); otherwise the lowest-priority item makes room if needed.

        Raises :class:`SlotQueueItemExistsError` for a slot already queued and :class:`QueueNotRunningError`
        after :meth:`stop` (pushing before :meth:`start` is fine: items wait for the workers). Pushing an unseen
        item unpauses the queue: it may match an availability even if everything else did not.
        """
        if self._stopped:
            raise QueueNotRunningError("slot queue is stopped")
        live = self._best.live
        if item.ident in live:
            raise SlotQueueItemExistsError(f"slot {item.request_id.hex()}/{item.slot_index} is already queued")
        if len(live) >= self.max_size:
            evicted = self._peek_worst()
            # (key, seq) of the new item would be larger than any queued one's, so on equal keys the newcomer loses.
            if item.key >= evicted.key:
                log.debug("slot queue full, item dropped", request_id=item.request_id.hex(), slot_index=item.slot_index)
                return False
            self._remove(evicted.ident)
            log.debug(
                "slot queue full, lowest-priority item evicted",
                request_id=evicted.request_id.hex(),
                slot_index=evicted.slot_index,
            )
        self._insert(item, next(self._seq))
        if not item.seen:
            self._unpaused.set()
        return True

    def push_all(self, items: Iterable[SlotQueueItem]) -> int:
        """Push each item (duplicates raise as in :meth:`push`); returns how many were queued."""
        return sum(1 for item in items if self.push(item))

    def pop_nowait(self) -> SlotQueueItem | None:
        """Remove and return the best item, or ``None`` when the queue is empty. Ignores pausing."""
        best = self._best
        while (entry := best.pop()) is not None:
            item = entry[_ITEM]
            self._forget(item)
            if self._clock is not None and item.expires_at <= self._clock.now():
                log.debug("expired slot dropped", request_id=item.request_id.hex(), slot_index=item.slot_index)
                continue
            return item
        return None

    async def pop(self) -> SlotQueueItem:
        """The best item, waiting while the queue is empty. Ignores pausing."""
        while (item := self.pop_nowait()) is None:
            self._not_empty.clear()
            await self._not_empty.wait()
        return item

    def delete(self, request_id: RequestId, slot_index: int) -> bool:
        """Remove one slot; ``False`` if it was not queued (events often name slots we never queued)."""
        return self._remove((request_id, slot_index))

    def delete_request(self, request_id: RequestId) -> int:
        """Remove every slot of a request; returns how many were queued."""
        indices = self._by_request.get(request_id)
        if not indices:
            return 0
        removed = 0
        for index in list(indices):
            removed += self._remove((request_id, index))
        return removed

    def clear_seen_flags(self) -> None:
        """Mark every item unseen (an availability changed, so all of them deserve another look)."""
        if not any(e[_ITEM].seen for e in self._best.entries()):
            return
        # Same slots, same push order (seq), new keys: rebuild both heaps at once (O(n)); the index by request holds.
        self._best = LazyHeap(
            _ident, (_entry(e[_ITEM].with_seen(False), e[_SEQ]) if e[_ITEM].seen else e for e in self._best.entries())
        )
        self._worst = None

    def pause(self) -> None:
        self._unpaused.clear()

    def unpause(self) -> None:
        self._unpaused.set()

    # --- workers ------------------------------------------------------------------------------------------------

    def start(self, on_process_slot: ProcessSlot) -> None:
        """Start ``max_workers`` workers. The queue stays paused until :meth:`unpause` or an unseen push."""
        if self._running:
            raise RuntimeError("slot queue already started")
        self._running = True
        self._stopped = False
        self._tasks.reopen()
        for n in range(self.max_workers):
            self._tasks.spawn(self._worker(n, on_process_slot), name=f"slotqueue-worker-{n}")
        # Not "max_size": the log renders keys ending in "size" as bytes, and this is a number of slots.
        log.info("slot queue started", capacity=self.max_size, max_workers=self.max_workers)

    async def stop(self) -> None:
        """Cancel every worker (and the slot processing it awaits) and wait until all have ended."""
        self._running = False
        self._stopped = True
        await self._tasks.cancel_all()
        self._busy = 0
        log.info("slot queue stopped", queued=len(self))

    @property
    def worker_count(self) -> int:
        """Workers alive (``max_workers`` while running, 0 after :meth:`stop`)."""
        return len(self._tasks)

    async def _worker(self, n: int, on_process_slot: ProcessSlot) -> None:
        while True:
            await self._unpaused.wait()
            item = self.pop_nowait()
            if item is None:
                self._not_empty.clear()
                await self._not_empty.wait()
                continue
            if item.seen:
                # Everything left has been tried without a matching availability: wait for one to change. The item
                # goes back (there is room: it was just taken) and this worker loops on; it is never lost (#11).
                self.pause()
                self._insert(item, next(self._seq))
                continue
            self._busy += 1
            try:
                await on_process_slot(item)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # Not this worker being cancelled: something the callback awaited was. Treat it as a failed slot
                # rather than losing the worker.
                log.exception(
                    "slot processing was cancelled from inside",
                    worker=n,
                    request_id=item.request_id.hex(),
                    slot_index=item.slot_index,
                )
            except Exception:
                log.exception(
                    "slot processing failed", worker=n, request_id=item.request_id.hex(), slot_index=item.slot_index
                )
            finally:
                self._busy -= 1

    # --- heap internals -------------------------------------------------------------------------------------------

    def _insert(self, item: SlotQueueItem, seq: int) -> None:
        self._best.push(item.key + (seq, item.ident, item))  # noqa: RUF005 - _entry, inlined: the hot path
        indices = self._by_request.get(item.request_id)
        if indices is None:
            self._by_request[item.request_id] = {item.slot_index}
        else:
            indices.add(item.slot_index)
        if self._worst is not None:
            self._worst.push(_worst_entry(item, seq))
        self._not_empty.set()

    def _forget(self, item: SlotQueueItem) -> None:
        """Drop what the queue keeps about ``item`` beside the best-heap (already out of it)."""
        indices = self._by_request[item.request_id]
        indices.discard(item.slot_index)
        if not indices:
            del self._by_request[item.request_id]
        if self._worst is not None:
            self._worst.remove(item.ident)
            if 2 * len(self._best) < self.max_size:
                self._worst = None  # drained below half: evictions are far off again

    def _remove(self, ident: tuple[RequestId, int]) -> bool:
        entry = self._best.remove(ident)
        if entry is None:
            return False
        self._forget(entry[_ITEM])
        return True

    def _peek_worst(self) -> SlotQueueItem:
        """The queued item with the largest ``(key, seq)``. The queue must not be empty."""
        if self._worst is None:
            self._worst = LazyHeap(_ident, (_worst_entry(e[_ITEM], e[_SEQ]) for e in self._best.entries()))
        top = self._worst.peek()
        assert top is not None, "the queue is not empty"
        return top[_ITEM]


def _entry(item: SlotQueueItem, seq: int) -> _Entry:
    return item.key + (seq, item.ident, item)  # noqa: RUF005 - concatenation is ~2x faster than unpacking here


def _worst_entry(item: SlotQueueItem, seq: int) -> _Entry:
    return item.worst_key + (-seq, item.ident, item)  # noqa: RUF005 - hot path, as above
