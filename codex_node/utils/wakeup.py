"""A wait on the clock that a poke cuts short: how a state machine sleeps until its next read of the chain unless
something (a marketplace event, a reorganisation) says the chain changed first."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codex_node.clock import Clock


class Wakeup:
    def __init__(self) -> None:
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """End the wait in progress, or the next one at once if none is in progress."""
        self._poked.set()

    async def wait(self, clock: Clock, deadline: int) -> None:
        """Until ``clock`` reaches ``deadline`` or :meth:`poke` is called, whichever comes first."""
        poked = asyncio.ensure_future(self._poked.wait())
        due = asyncio.ensure_future(clock.wait_until(deadline))
        try:
            await asyncio.wait((poked, due), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (poked, due):
                task.cancel()
            await asyncio.gather(poked, due, return_exceptions=True)
        self._poked.clear()
