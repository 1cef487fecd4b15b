"""One timer service that notices storage requests expiring unfilled, for all agents at once.

The contract emits ``RequestCancelled`` only when the client withdraws, so a host learns that a request expired
by looking at it after ``expiresAt``. Instead of one polling loop per agent (nim-codex), every agent registers its
request here; one task sleeps until the earliest deadline (``expiresAt + 1``), asks the chain for the request's
state, and hands each cancelled request to ``on_cancelled`` (Sales routes it to that request's agents).

This module owns exactly one task and never calls agents itself.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Awaitable, Callable

import structlog

from codex_node.clock import Clock
from codex_node.errors import CodexError
from codex_node.market.market import Market
from codex_node.market.types import RequestId, RequestState
from codex_node.utils.lazyheap import LazyHeap
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

RETRY_SECONDS = 1
"""When the chain still says New at the deadline (its clock lags ours) or cannot be asked, retry this much later."""


class CancellationTimers:
    """Watches request deadlines. ``watch`` is idempotent per request; ``forget`` drops a request that started."""

    def __init__(self, market: Market, clock: Clock, on_cancelled: Callable[[RequestId], Awaitable[None]]) -> None:
        self._market = market
        self._clock = clock
        self._on_cancelled = on_cancelled
        # (deadline, request id) per watched request; forgetting one leaves its entry behind (lazy deletion).
        self._deadlines: LazyHeap[RequestId, tuple[int, RequestId]] = LazyHeap(operator.itemgetter(1))
        self._changed = asyncio.Event()
        self._tasks = TrackedTasks("cancellation-timers")

    def __len__(self) -> int:
        return len(self._deadlines)

    def deadline(self, request_id: RequestId) -> int | None:
        entry = self._deadlines.get(request_id)
        return None if entry is None else entry[0]

    def start(self) -> None:
        self._tasks.reopen()
        self._tasks.spawn(self._loop(), name="cancellation-timers")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    def watch(self, request_id: RequestId, expires_at: int) -> None:
        """Check ``request_id`` at ``expires_at + 1``, the first moment the chain can call it Cancelled."""
        if request_id in self._deadlines:
            return
        self._arm(request_id, expires_at + 1)

    def forget(self, request_id: RequestId) -> None:
        """The request started, or no agent cares any more."""
        self._deadlines.remove(request_id)

    def _arm(self, request_id: RequestId, at: int) -> None:
        self._deadlines.push((at, request_id))
        self._changed.set()

    async def _loop(self) -> None:
        while True:
            first = self._deadlines.peek()
            if first is None:
                await self._wait_for_change()
                continue
            at, request_id = first
            if self._clock.now() < at:
                await self._sleep_until(at)
                continue
            self._deadlines.remove(request_id)
            await self._check(request_id)

    async def _wait_for_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def _sleep_until(self, at: int) -> None:
        """Sleep until ``at`` or until an earlier deadline is added, whichever comes first."""
        self._changed.clear()
        sleeper = asyncio.ensure_future(self._clock.wait_until(at))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (sleeper, changed):
                t.cancel()
            await asyncio.wait({sleeper, changed})

    async def _check(self, request_id: RequestId) -> None:
        try:
            state = await self._market.request_state(request_id)
        except CodexError as e:
            log.warning("could not read request state at expiry", request_id=request_id.hex(), error=repr(e))
            self._arm(request_id, self._clock.now() + RETRY_SECONDS)
            return
        if state == RequestState.NEW:
            self._arm(request_id, self._clock.now() + RETRY_SECONDS)
        elif state == RequestState.CANCELLED:
            log.info("request expired unfilled", request_id=request_id.hex())
            await self._on_cancelled(request_id)
