"""InitialProving: hooks, and run against MockMarket and FakeClock with injected failures."""

from __future__ import annotations

import asyncio

from salesfakes import FakeProof, SalesEnv, assert_declared, next_period_start, until_waiting

from codex_node.errors import ProofError
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filling import Filling
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.initialproving import InitialProving


def test_hooks_lead_to_cancelled_failed_and_ignored() -> None:
    state = InitialProving()
    assert isinstance(state.on_cancelled(), Cancelled)
    assert isinstance(state.on_failed(), Failed)
    assert isinstance(state.on_slot_filled(), Ignored)


async def test_waits_for_the_next_period_then_proves_its_challenge(env: SalesEnv) -> None:
    agent = env.agent()
    env.market.set_pointer(agent.slot_id, 100)
    state = InitialProving()
    task = asyncio.create_task(state.run(agent))
    await until_waiting(env.clock)
    assert env.prover.proved == []
    env.clock.set(await next_period_start(env))
    nxt = await task
    assert isinstance(nxt, Filling)
    assert_declared(state, nxt)
    challenge = await env.market.get_challenge(agent.slot_id)
    assert nxt.proof == FakeProof(challenge)
    assert nxt.challenge == challenge  # Filling can tell whether the challenge moved on


async def test_waits_another_period_while_the_challenge_could_change_within_the_period(env: SalesEnv) -> None:
    agent = env.agent()
    downtime = (await env.market.config()).proofs.downtime
    env.market.set_pointer(agent.slot_id, 256 - downtime + 1)
    task = asyncio.create_task(InitialProving().run(agent))
    await until_waiting(env.clock)
    env.clock.set(await next_period_start(env))
    await until_waiting(env.clock)  # pointer still near the wrap: one more period
    assert env.prover.proved == []
    env.market.set_pointer(agent.slot_id, 256 - downtime)
    env.clock.set(await next_period_start(env))
    assert isinstance(await task, Filling)
    assert len(env.prover.proved) == 1


async def test_proof_failure_is_an_error(env: SalesEnv) -> None:
    agent = env.agent()
    env.market.set_pointer(agent.slot_id, 100)
    env.prover.fail_with = ProofError("block of the slot unreadable")
    task = asyncio.create_task(InitialProving().run(agent))
    await until_waiting(env.clock)
    env.clock.set(await next_period_start(env))
    assert isinstance(await task, Errored)
