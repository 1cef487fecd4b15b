"""A min-heap whose entries can be removed by name in O(1): the lazy-deletion heap, written once.

Each entry sits under an *ident* (``ident(entry)``, e.g. a slot or a request id). :meth:`LazyHeap.remove` only
forgets the ident; the entry stays in the heap, dead, until it reaches the head, where :meth:`peek` and
:meth:`pop` skip it. Pushing an entry under an ident already present replaces the old entry the same way. When
dead entries outnumber live ones by two to one the heap is rebuilt from the live ones, so memory stays O(len)
and every operation O(log n) amortized.

Entries are compared by ``heapq`` (plain ``<``): make them flat tuples whose leading fields decide, with a unique
field (a sequence number) before anything that does not compare. An entry is live while the index holds that
very object (``is``), so equal tuples pushed twice are still told apart.

Pure data structure: no I/O, no time, no asyncio. Used by the slot queue, the cancellation timers and the chain
clock's waiters.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, ValuesView
from heapq import heapify, heappop, heappush
from typing import Any, Generic, TypeVar

I = TypeVar("I", bound=Hashable)  # noqa: E741 - the conventional name of an ident type variable
E = TypeVar("E", bound=Any)

_SLACK = 32
"""Dead entries tolerated on top of twice the live ones before a rebuild (keeps small heaps from rebuilding)."""


class LazyHeap(Generic[I, E]):
    """Min-heap of entries keyed by ``ident(entry)``, with O(1) removal by ident (see the module docstring)."""

    __slots__ = ("_heap", "_ident", "_live", "live")

    def __init__(self, ident: Callable[[E], I], entries: Iterable[E] = ()) -> None:
        self._ident = ident
        self._live: dict[I, E] = {}
        for entry in entries:
            self._live[ident(entry)] = entry
        self._heap: list[E] = list(self._live.values())
        heapify(self._heap)
        self.live: Mapping[I, E] = self._live
        """The live entries by ident (read-only): ``ident in heap.live`` and ``len(heap.live)`` are what
        ``ident in heap`` and ``len(heap)`` say, without a Python-level call, for hot loops."""

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)

    def __contains__(self, ident: object) -> bool:
        return ident in self._live

    def get(self, ident: I) -> E | None:
        """The live entry under ``ident``, or ``None``."""
        return self._live.get(ident)

    def entries(self) -> ValuesView[E]:
        """The live entries, in no particular order (a view: do not change the heap while iterating)."""
        return self._live.values()

    def push(self, entry: E) -> None:
        """Add ``entry``; an entry already under its ident is replaced (left behind dead)."""
        live, heap = self._live, self._heap
        live[self._ident(entry)] = entry
        heappush(heap, entry)
        if len(heap) > 2 * len(live) + _SLACK:  # only after replacements: a fresh push keeps the heap as it was
            self._rebuild()

    def remove(self, ident: I) -> E | None:
        """Forget the entry under ``ident`` and return it (``None`` if there was none)."""
        entry = self._live.pop(ident, None)
        if entry is not None and len(self._heap) > 2 * len(self._live) + _SLACK:
            self._rebuild()
        return entry

    def peek(self) -> E | None:
        """The smallest live entry, or ``None`` when empty. Drops the dead entries it finds at the head."""
        heap, live, ident = self._heap, self._live, self._ident
        while heap:
            top = heap[0]
            if live.get(ident(top)) is top:
                return top
            heappop(heap)
        return None

    def pop(self) -> E | None:
        """Remove and return the smallest live entry, or ``None`` when empty."""
        heap, live, ident = self._heap, self._live, self._ident
        while heap:
            entry = heappop(heap)
            key = ident(entry)
            if live.get(key) is entry:
                del live[key]
                return entry
        return None

    def clear(self) -> None:
        self._live.clear()
        self._heap.clear()

    def _rebuild(self) -> None:
        self._heap = list(self._live.values())
        heapify(self._heap)
