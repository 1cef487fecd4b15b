"""The on-chain clock: "now" is the timestamp of the latest block the node has seen.

Sales deadlines (request expiry, proof periods, request end) are judged by the contract against block
timestamps, not the wall clock, so the node measures them the same way. The clock itself does no I/O: the event
stream (``market/events.py``) reads the chain head on every poll and calls :meth:`ChainClock.observe`, which moves
``now`` forward (never back) and wakes every ``wait_until`` whose time has come.

A chain that mines no block does not move this clock: ``wait_until`` then waits for the next block (the
embedded chain mines one every ``--dev-block-time``; a real chain every few seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import operator

from codex_node.utils.lazyheap import LazyHeap


class ChainClock:
    """:class:`~codex_node.clock.Clock` driven by observed block timestamps."""

    def __init__(self, timestamp: int = 0, block_number: int = 0) -> None:
        self._now = timestamp
        self._block = block_number
        # (timestamp, seq, future) per pending wait, keyed by seq: a cancelled wait is removed in O(1).
        self._waiters: LazyHeap[int, tuple[int, int, asyncio.Future[None]]] = LazyHeap(operator.itemgetter(1))
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    @property
    def block_number(self) -> int:
        """Number of the block whose timestamp ``now()`` is."""
        return self._block

    def observe(self, block_number: int, timestamp: int) -> None:
        """A block was seen: move forward to it (an older or equal block changes nothing) and wake due waiters."""
        if block_number <= self._block and timestamp <= self._now:
            return
        self._block = max(self._block, block_number)
        self._now = max(self._now, timestamp)
        while (first := self._waiters.peek()) is not None and first[0] <= self._now:
            self._waiters.pop()
            if not first[2].done():
                first[2].set_result(None)

    async def wait_until(self, timestamp: int) -> None:
        """Return once a block with a timestamp ``>= timestamp`` has been seen."""
        if timestamp <= self._now:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seq = next(self._seq)
        self._waiters.push((timestamp, seq, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            self._waiters.remove(seq)
            raise

    @property
    def waiters(self) -> int:
        """Pending waits (cancelled ones excluded)."""
        return sum(1 for _, _, w in self._waiters.entries() if not w.done())
