"""The on-chain clock: now is the latest observed block's timestamp; waits end when a late enough block is seen."""

from __future__ import annotations

import asyncio

from codex_node.market.clock import ChainClock


def test_now_follows_observed_blocks_and_never_goes_back() -> None:
    clock = ChainClock()
    clock.observe(10, 1_000)
    assert (clock.now(), clock.block_number) == (1_000, 10)
    clock.observe(9, 990)  # an older head (a lagging node) changes nothing
    assert (clock.now(), clock.block_number) == (1_000, 10)
    clock.observe(11, 1_012)
    assert (clock.now(), clock.block_number) == (1_012, 11)


async def test_wait_until_returns_at_once_for_a_past_time() -> None:
    clock = ChainClock(1_000, 10)
    async with asyncio.timeout(1):
        await clock.wait_until(1_000)
    assert clock.waiters == 0


async def test_wait_until_ends_when_a_block_reaches_the_time() -> None:
    clock = ChainClock(1_000, 10)
    early = asyncio.create_task(clock.wait_until(1_005))
    late = asyncio.create_task(clock.wait_until(1_020))
    await asyncio.sleep(0)
    assert clock.waiters == 2

    clock.observe(11, 1_004)
    await asyncio.sleep(0)
    assert not early.done()

    clock.observe(12, 1_006)  # past 1_005: no block exactly at the time is needed
    await asyncio.sleep(0)
    assert early.done()
    assert not late.done()
    assert clock.waiters == 1
    late.cancel()


async def test_cancelled_waits_are_dropped_and_do_not_break_later_ones() -> None:
    clock = ChainClock(0, 0)
    tasks = [asyncio.create_task(clock.wait_until(100 + i)) for i in range(10)]
    keep = asyncio.create_task(clock.wait_until(50))
    await asyncio.sleep(0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert clock.waiters == 1
    assert len(clock._waiters) < 11  # pruned once most of the heap was cancelled waits
    clock.observe(1, 200)
    await asyncio.sleep(0)
    assert keep.done()
