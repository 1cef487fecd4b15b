"""The sales agent as a running machine: event routing to hooks, errors, and the one-time end of a sale."""

from __future__ import annotations

import asyncio

from salesfakes import ASK, SalesEnv, until_waiting
from structlog.testing import capture_logs

from codex_node.errors import ChainError
from codex_node.sales.agent import SalesAgent
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.initialproving import InitialProving


class Buggy(SaleState):
    async def run(self, machine: SalesAgent) -> SaleState | None:
        raise RuntimeError("a bug, not a domain error")


async def started_in_initial_proving(env: SalesEnv) -> SalesAgent:
    agent = env.agent(0)
    agent.start(InitialProving())
    await until_waiting(env.clock)
    return agent


async def test_cancelled_event_moves_a_waiting_agent_to_cancelled_and_ends_the_sale(env: SalesEnv) -> None:
    agent = await started_in_initial_proving(env)
    agent.on_cancelled()
    await agent.wait_for_state(lambda s: isinstance(s, Cancelled))
    await until_cleaned(env)
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    await agent.stop()


async def test_failed_event_moves_a_waiting_agent_to_failed(env: SalesEnv) -> None:
    agent = await started_in_initial_proving(env)
    agent.on_failed()
    await agent.wait_for_state(lambda s: isinstance(s, Failed))
    await agent.stop()


async def test_slot_filled_event_moves_a_waiting_agent_to_ignored(env: SalesEnv) -> None:
    agent = await started_in_initial_proving(env)
    agent.on_slot_filled()
    await agent.wait_for_state(lambda s: isinstance(s, Ignored))
    await agent.stop()


async def test_event_not_handled_in_the_current_state_is_ignored(env: SalesEnv) -> None:
    agent = await started_in_initial_proving(env)
    agent.on_cancelled()
    await agent.wait_for_state(lambda s: isinstance(s, Cancelled))
    agent.on_failed()  # Cancelled has no hooks
    for _ in range(20):
        await asyncio.sleep(0)
    assert isinstance(agent.state, Cancelled)
    await agent.stop()


async def test_unexpected_exception_in_run_becomes_errored_and_ends_the_sale(env: SalesEnv) -> None:
    agent = env.agent(0)
    with capture_logs() as logs:
        agent.start(Buggy())
        errored = await agent.wait_for_state(lambda s: isinstance(s, Errored))
        await until_cleaned(env)
    assert isinstance(errored, Errored)
    assert isinstance(errored.error, RuntimeError)
    assert any(e["event"] == "unexpected error in sale state" and e["slot_index"] == 0 for e in logs)
    await agent.stop()


async def test_end_sale_runs_once_however_often_it_is_called(env: SalesEnv) -> None:
    agent = env.agent(0)
    agent.data.stored = True
    assert await agent.end_sale() == ASK.collateral_per_slot  # never filled: all of it back
    assert await agent.end_sale(reprocess=True) == 0
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    assert len(env.data_source.lowered) == 1
    assert agent.ended


async def test_end_sale_lowers_expiry_to_the_contract_end_before_the_clean_up(env: SalesEnv) -> None:
    agent = env.agent(0)
    agent.data.stored = True
    order: list[str] = []
    lower = env.data_source.lower_expiry

    async def lower_first(*args: object) -> None:
        order.append("lower")
        await lower(*args)  # type: ignore[arg-type]

    clean = env.hooks.sale_ended

    async def clean_second(*args: object, **kwargs: object) -> None:
        order.append("clean")
        await clean(*args, **kwargs)  # type: ignore[arg-type]

    env.data_source.lower_expiry = lower_first  # type: ignore[method-assign]
    env.hooks.sale_ended = clean_second  # type: ignore[method-assign]
    await agent.end_sale()
    assert order == ["lower", "clean"]
    assert env.data_source.lowered == [await env.market.request_end(env.request.id)]


async def test_end_sale_still_cleans_up_when_lowering_expiry_fails(env: SalesEnv) -> None:
    agent = env.agent(0)
    agent.data.stored = True
    env.market.fail_next("request_end", ChainError("node unreachable"))
    with capture_logs() as logs:
        await agent.end_sale()
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    assert any(e["event"] == "could not lower the slot's block expiry" for e in logs)


async def test_failing_clean_up_does_not_loop_through_errored(env: SalesEnv) -> None:
    agent = env.agent(0)

    async def broken_clean_up(*_: object, **__: object) -> None:
        raise ChainError("metadata store gone")

    env.hooks.sale_ended = broken_clean_up  # type: ignore[method-assign]
    transitions: list[str] = []
    agent.add_listener(lambda _m, _f, to, _c: transitions.append(to.name))
    agent.start(Ignored(reprocess=False, reason="x"))
    for _ in range(50):
        await asyncio.sleep(0)
    assert transitions == ["Ignored"]
    await agent.stop()


async def test_stop_leaves_no_task_behind(env: SalesEnv) -> None:
    before = asyncio.all_tasks()
    agent = await started_in_initial_proving(env)
    await agent.stop()
    assert asyncio.all_tasks() == before


async def until_cleaned(env: SalesEnv) -> None:
    for _ in range(200):
        if env.hooks.cleaned:
            return
        await asyncio.sleep(0)
    raise AssertionError("the sale was not cleaned up")
