"""Filled: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

from salesfakes import SalesEnv, assert_declared

from codex_node.errors import ChainError
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.proving import Proving
from codex_node.sales.states.provingsimulated import ProvingSimulated


def test_hooks_lead_to_cancelled_and_failed_and_slot_filled_is_ignored() -> None:
    assert isinstance(Filled().on_cancelled(), Cancelled)
    assert isinstance(Filled().on_failed(), Failed)
    assert Filled().on_slot_filled() is None


async def test_releases_the_worker_and_keeps_the_data_until_the_contract_ends(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)
    state = Filled()
    nxt = await state.run(agent)
    assert type(nxt) is Proving
    assert_declared(state, nxt)
    assert env.hooks.filled == [agent]
    assert env.data_source.raised == [await env.market.request_end(env.request.id)]


async def test_simulated_proof_failures_prove_through_proving_simulated(env: SalesEnv) -> None:
    env.simulate_proof_failures = 3
    await env.fill(env.market, 0)
    nxt = await Filled().run(env.agent(0))
    assert isinstance(nxt, ProvingSimulated)
    assert nxt.every == 3


async def test_slot_hosted_by_someone_else_is_an_error_and_keeps_the_worker(env: SalesEnv) -> None:
    await env.fill(env.other_host, 0)
    nxt = await Filled().run(env.agent(0))
    assert isinstance(nxt, Errored)
    assert env.hooks.filled == []


async def test_chain_failure_is_an_error(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    env.market.fail_next("get_host", ChainError("node unreachable"))
    assert isinstance(await Filled().run(env.agent(0)), Errored)
