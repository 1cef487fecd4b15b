"""A clock that only moves when a test moves it."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    """:class:`~codex_node.clock.Clock` for tests. ``set``/``advance`` wake every waiter whose time has come."""

    def __init__(self, now: int = 1_700_000_000) -> None:
        self._now = now
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    async def wait_until(self, timestamp: int) -> None:
        if timestamp <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (timestamp, next(self._seq), fut))
        await fut

    def set(self, now: int) -> None:
        """Move to ``now`` (never backwards) and release the waiters that are due."""
        self._now = max(self._now, now)
        while self._waiters and self._waiters[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)

    def advance(self, seconds: int) -> None:
        self.set(self._now + seconds)

    @property
    def waiters(self) -> int:
        """How many waits are pending (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._waiters if not f.done())
