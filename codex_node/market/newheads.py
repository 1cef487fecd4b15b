"""Wake the event stream at each block a websocket node announces (``eth_subscribe`` ``newHeads``).

With ``--eth-provider ws(s)://…`` the node tells us about each new block instead of waiting for the next poll.
This is only a wake-up call: the stream still reads the logs with ``eth_getLogs`` from its persisted cursor, so
its exactly-once, in-order delivery and its rewinds hold whatever the subscription does (a lost, late or repeated
notification changes nothing). While subscribed, the stream keeps polling, less often, as a safety net.

Over http it does nothing. When subscribing fails or the subscription ends (the socket dropped, a node without
``eth_subscribe``), it logs that the stream falls back to polling and tries again after a back-off. It must never
deliver anything itself nor let an error escape into the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import structlog

if TYPE_CHECKING:
    from web3 import AsyncWeb3

log = structlog.get_logger(__name__)

FIRST_RETRY: Final = 1.0
MAX_RETRY: Final = 60.0


def persistent(w3: AsyncWeb3[Any]) -> bool:
    """Whether ``w3`` talks over a persistent connection (a websocket) that can carry subscriptions."""
    from web3.providers.persistent import PersistentConnectionProvider

    return isinstance(w3.provider, PersistentConnectionProvider)


class NewHeads:
    """Calls ``wake`` at each new block while subscribed; see the module docstring."""

    def __init__(self, w3: AsyncWeb3[Any], wake: Callable[[], None], *, first_retry: float = FIRST_RETRY) -> None:
        self._w3 = w3
        self._wake = wake
        self._first_retry = first_retry
        self._task: asyncio.Task[None] | None = None
        self.subscribed = False
        self.notifications = 0
        """New heads announced since the start (tests and logs)."""

    def start(self) -> None:
        if self._task is None and persistent(self._w3):
            self._task = asyncio.get_running_loop().create_task(self._run(), name="newHeads subscription")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        self.subscribed = False

    async def _run(self) -> None:
        delay = self._first_retry
        while True:
            try:
                await self._follow()
                error = "the subscription stream ended"
            except Exception as e:  # noqa: BLE001 - web3 and websockets raise many types; polling covers them all
                error = " ".join(str(e).split())[:300] or type(e).__name__
            if self.subscribed:  # it worked until now: try again soon
                delay = self._first_retry
            self.subscribed = False
            log.warning("websocket subscription failed: the event stream polls", error=error, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY)

    async def _follow(self) -> None:
        subscription = await self._w3.eth.subscribe("newHeads")
        self.subscribed = True
        log.info("following new blocks through a websocket subscription")
        async for message in self._w3.socket.process_subscriptions():
            if message.get("subscription") == subscription:
                self.notifications += 1
                self._wake()
