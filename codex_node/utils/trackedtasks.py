"""Owned background tasks: every task a part starts is tracked here and cancelled and awaited on ``stop()``.

A task that fails is logged (never silently lost); a task that finishes drops out of the set by itself.
This module must never import domain code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class TrackedTasks:
    """A set of tasks owned by one part."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a tracked task. Refused after :meth:`cancel_all` so nothing outlives its owner."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._owner}: cannot start tasks after stop")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("background task failed", owner=self._owner, task=task.get_name(), error=repr(exc))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every tracked task and wait until all have finished.

        If the caller is itself cancelled while waiting, that cancellation propagates (the tasks were already
        told to stop).
        """
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def reopen(self) -> None:
        """Allow spawning again after :meth:`cancel_all` (a part that is restarted)."""
        self._closed = False
