"""Unknown: a resumed sale goes where the on-chain slot state says."""

from __future__ import annotations

from salesfakes import SalesEnv, assert_declared

from codex_node.market.types import RequestId
from codex_node.sales.agent import SalesAgent
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.finished import Finished
from codex_node.sales.states.payout import Payout
from codex_node.sales.states.unknown import Unknown


def test_hooks_lead_to_cancelled_and_failed() -> None:
    assert isinstance(Unknown().on_cancelled(), Cancelled)
    assert isinstance(Unknown().on_failed(), Failed)
    assert Unknown().on_slot_filled() is None


async def resume(agent: SalesAgent) -> SaleState | None:
    state = Unknown()
    nxt = await state.run(agent)
    assert_declared(state, nxt)
    return nxt


async def test_filled_slot_resumes_in_filled_with_its_fill_and_data_owned(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0, known_request=False)
    assert isinstance(await resume(agent), Filled)
    assert agent.data.request == env.request
    assert agent.data.filled
    assert agent.data.stored
    assert env.request.id in env.timers.watched


async def test_finished_slot_resumes_in_payout(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    assert isinstance(await resume(env.agent(0)), Payout)


async def test_paid_slot_resumes_in_finished(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    await env.market.free_slot(env.agent(0).slot_id)
    assert isinstance(await resume(env.agent(0)), Finished)


async def test_failed_request_resumes_in_failed(env: SalesEnv) -> None:
    await env.fill_all()
    await env.market.free_slot(env.agent(1).slot_id)
    await env.market.free_slot(env.agent(2).slot_id)
    assert isinstance(await resume(env.agent(0)), Failed)


async def test_cancelled_request_resumes_in_cancelled(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    env.clock.set(await env.market.request_expires_at(env.request.id) + 1)
    assert isinstance(await resume(env.agent(0)), Cancelled)


async def test_slot_lost_to_repair_while_down_is_an_error(env: SalesEnv) -> None:
    await env.fill_all()
    await env.market.free_slot(env.agent(0).slot_id)
    assert isinstance(await resume(env.agent(0)), Errored)


async def test_free_slot_is_an_error(env: SalesEnv) -> None:
    assert isinstance(await resume(env.agent(0)), Errored)


async def test_unknown_request_is_an_error(env: SalesEnv) -> None:
    agent = env.agent(0, known_request=False)
    agent.data.request_id = RequestId(b"\x09" * 32)
    assert isinstance(await resume(agent), Errored)
