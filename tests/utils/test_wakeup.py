"""Wakeup: a wait on the clock that a poke cuts short; a poke while nobody waits ends the next wait at once."""

from __future__ import annotations

import asyncio

import pytest

from codex_node.testing.fakeclock import FakeClock
from codex_node.utils.wakeup import Wakeup


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_deadline_ends_the_wait() -> None:
    clock, wakeup = FakeClock(), Wakeup()
    waiting = asyncio.ensure_future(wakeup.wait(clock, clock.now() + 60))
    await settle()
    clock.advance(59)
    await settle()
    assert not waiting.done()
    clock.advance(1)
    await asyncio.wait_for(waiting, timeout=5)  # a guard: the deadline alone ends it
    assert clock.waiters == 0


async def test_a_poke_ends_the_wait_before_its_deadline_and_leaves_no_timer_behind() -> None:
    clock, wakeup = FakeClock(), Wakeup()
    waiting = asyncio.ensure_future(wakeup.wait(clock, clock.now() + 60))
    await settle()
    wakeup.poke()
    await asyncio.wait_for(waiting, timeout=5)  # a guard: the clock never moves
    assert clock.waiters == 0
    # consumed: the next wait runs to its deadline
    again = asyncio.ensure_future(wakeup.wait(clock, clock.now() + 60))
    await settle()
    assert not again.done()
    again.cancel()
    with pytest.raises(asyncio.CancelledError):
        await again


async def test_a_poke_while_nobody_waits_ends_the_next_wait_at_once() -> None:
    clock, wakeup = FakeClock(), Wakeup()
    wakeup.poke()
    await asyncio.wait_for(wakeup.wait(clock, clock.now() + 60), timeout=5)
    assert clock.now() == 1_700_000_000
