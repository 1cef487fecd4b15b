"""Owned background tasks."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from codex_node.utils.trackedtasks import TrackedTasks


async def test_cancel_all_cancels_and_awaits_every_task() -> None:
    tasks = TrackedTasks("test")
    finished: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.append(name)

    tasks.spawn(forever("a"))
    tasks.spawn(forever("b"))
    await asyncio.sleep(0)
    assert len(tasks) == 2
    await tasks.cancel_all()
    assert sorted(finished) == ["a", "b"]
    assert len(tasks) == 0


async def test_finished_task_drops_out_and_failure_is_logged() -> None:
    tasks = TrackedTasks("owner-x")

    async def fail() -> None:
        raise ValueError("nope")

    with capture_logs() as logs:
        t = tasks.spawn(fail(), name="failing")
        with pytest.raises(ValueError, match="nope"):
            await t
        await asyncio.sleep(0)
    assert len(tasks) == 0
    assert any(e["event"] == "background task failed" and e["owner"] == "owner-x" for e in logs)


async def test_spawn_after_cancel_all_is_refused() -> None:
    tasks = TrackedTasks("t")
    await tasks.cancel_all()

    async def noop() -> None:
        return None

    with pytest.raises(RuntimeError):
        tasks.spawn(noop())
