"""Long work inside a route handler that stops when its client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")

CLIENT_GONE = 499
"""Status of an answer nobody reads: the client left before the work was done (nginx's convention)."""


async def until_disconnected(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or ``None`` once the client has gone (then ``work`` is cancelled and awaited).

    The body has been read whole, so the next ASGI message is the client's disconnect."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, gone):
            pending.cancel()  # no-op on the one that finished; on cancellation of this request, both
        await asyncio.gather(task, gone, return_exceptions=True)
    if task.cancelled():
        return None
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
