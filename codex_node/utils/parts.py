"""Parts of a long-running process: things with ``async start()``/``async stop()``, stopped in reverse order.

Generic (no domain imports): the composition root (``node.py``) and the marketplace wiring (``marketplace.py``)
start every part through one :class:`PartStack`, so a failure while starting stops what already started, and
shutdown stops everything newest first, each part once, even when one of them fails to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import structlog

log = structlog.get_logger(__name__)


class Part(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Closing:
    """A resource with nothing to start and a synchronous ``close`` to run when the node stops."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._close()


class PartStack:
    """Started parts, in start order. :meth:`stop_all` stops them newest first, each once."""

    def __init__(self) -> None:
        self._started: list[tuple[str, Part]] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._started]

    async def start(self, name: str, part: Part) -> None:
        await part.start()
        self._started.append((name, part))
        log.debug("part started", part=name)

    async def stop_all(self) -> None:
        """Stop every part; one that fails to stop is logged and the others still stop."""
        while self._started:
            name, part = self._started.pop()
            try:
                await part.stop()
            except Exception:
                log.exception("part failed to stop", part=name)
            else:
                log.debug("part stopped", part=name)
