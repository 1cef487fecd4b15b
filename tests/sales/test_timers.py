"""The one cancellation timer service: fires at expiresAt + 1 for requests the chain calls Cancelled."""

from __future__ import annotations

import asyncio

from salesfakes import SalesEnv, until_waiting

from codex_node.errors import ChainError
from codex_node.market.types import RequestId
from codex_node.sales.timers import RETRY_SECONDS, CancellationTimers


async def started(env: SalesEnv) -> tuple[CancellationTimers, list[RequestId]]:
    fired: list[RequestId] = []

    async def on_cancelled(request_id: RequestId) -> None:
        fired.append(request_id)

    timers = CancellationTimers(env.market, env.clock, on_cancelled)
    timers.start()
    return timers, fired


async def test_fires_once_the_request_expired_unfilled_and_not_before(env: SalesEnv) -> None:
    timers, fired = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    timers.watch(env.request.id, expires_at)
    await until_waiting(env.clock)
    env.clock.set(expires_at)
    await until_waiting(env.clock)
    assert fired == []
    env.clock.set(expires_at + 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fired == [env.request.id]
    assert len(timers) == 0
    await timers.stop()


async def test_watching_again_keeps_one_deadline_per_request(env: SalesEnv) -> None:
    timers, _ = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    for _ in range(5):
        timers.watch(env.request.id, expires_at)
    assert len(timers) == 1
    assert timers.deadline(env.request.id) == expires_at + 1
    await timers.stop()


async def test_started_request_is_not_reported(env: SalesEnv) -> None:
    timers, fired = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    timers.watch(env.request.id, expires_at)
    await env.fill_all()
    env.clock.set(expires_at + 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fired == []
    await timers.stop()


async def test_forgotten_request_is_not_checked(env: SalesEnv) -> None:
    timers, fired = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    timers.watch(env.request.id, expires_at)
    timers.forget(env.request.id)
    env.clock.set(expires_at + 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fired == []
    assert env.market.calls("request_state") == []
    await timers.stop()


async def test_an_earlier_deadline_added_while_sleeping_wakes_the_service(env: SalesEnv) -> None:
    timers, fired = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    timers.watch(RequestId(b"\x05" * 32), expires_at + 10_000)
    await until_waiting(env.clock)
    timers.watch(env.request.id, expires_at)
    env.clock.set(expires_at + 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fired == [env.request.id]
    await timers.stop()


async def test_chain_failure_retries_shortly_after(env: SalesEnv) -> None:
    timers, fired = await started(env)
    expires_at = await env.market.request_expires_at(env.request.id)
    timers.watch(env.request.id, expires_at)
    env.market.fail_next("request_state", ChainError("node unreachable"))
    env.clock.set(expires_at + 1)
    await until_waiting(env.clock)
    assert fired == []
    assert timers.deadline(env.request.id) == expires_at + 1 + RETRY_SECONDS
    env.clock.advance(RETRY_SECONDS)
    for _ in range(20):
        await asyncio.sleep(0)
    assert fired == [env.request.id]
    await timers.stop()


async def test_one_task_serves_every_request_and_stop_ends_it(env: SalesEnv) -> None:
    before = asyncio.all_tasks()
    timers, _ = await started(env)
    for n in range(100):
        timers.watch(RequestId(n.to_bytes(32, "big")), env.clock.now() + 1000 + n)
    await until_waiting(env.clock)
    # The service and its two waits (the clock; an earlier deadline arriving), however many requests it watches.
    assert len(asyncio.all_tasks() - before) == 3
    await timers.stop()
    assert asyncio.all_tasks() == before
    assert env.clock.waiters == 0
