"""The Clock port: "now" in whole seconds, and waiting until a moment.

Two real clocks exist: :class:`SystemClock` (wall time, used by the block store's TTLs) and the on-chain clock in
``market/clock.py`` (latest block timestamp, used by sales deadlines). Unit tests use ``testing.FakeClock``.
Nothing else in the package may read the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the Unix epoch, as this clock sees them."""

    def now(self) -> int: ...

    async def wait_until(self, timestamp: int) -> None:
        """Return once ``now() >= timestamp``."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> int:
        return int(time.time())

    async def wait_until(self, timestamp: int) -> None:
        # Re-check after each sleep: the event loop may wake early or late relative to wall time.
        while (delay := timestamp - time.time()) > 0:  # noqa: ASYNC110 - waiting on wall time is the point
            await asyncio.sleep(delay)
