"""Filling: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from salesfakes import ASK, FUNDS, FakeProof, SalesEnv, assert_declared, next_period_start, until_waiting
from structlog.testing import capture_logs

from codex_node.errors import ChainError, ProofInvalidError
from codex_node.market.types import SlotState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.filling import FILL_ATTEMPTS, Filling
from codex_node.sales.states.ignored import Ignored

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

PROOF = cast("StorageProof", FakeProof(b""))  # any challenge


def test_cancel_and_fail_hooks_and_slot_filled_ignored_since_it_may_be_our_own_fill() -> None:
    state = Filling(PROOF)
    assert isinstance(state.on_cancelled(), Cancelled)
    assert isinstance(state.on_failed(), Failed)
    assert state.on_slot_filled() is None


async def test_fills_the_slot_with_collateral_and_moves_to_filled(env: SalesEnv) -> None:
    agent = env.agent(1)
    await env.market.reserve_slot(env.request.id, 1)
    state = Filling(PROOF)
    nxt = await state.run(agent)
    assert isinstance(nxt, Filled)
    assert_declared(state, nxt)
    assert env.market.calls("fill_slot") == [(env.request.id, 1, PROOF, ASK.collateral_per_slot)]
    assert await env.market.slot_state(agent.slot_id) == SlotState.FILLED
    assert await env.market.token_balance(env.market.signer) == FUNDS - ASK.collateral_per_slot
    assert agent.data.filled


async def test_slot_taken_by_another_host_first_is_ignored(env: SalesEnv) -> None:
    await env.market.reserve_slot(env.request.id, 0)
    await env.fill(env.other_host, 0)
    agent = env.agent(0)
    nxt = await Filling(PROOF).run(agent)
    assert isinstance(nxt, Ignored)
    assert not agent.data.filled


async def test_transaction_failure_is_an_error(env: SalesEnv) -> None:
    await env.market.reserve_slot(env.request.id, 0)
    env.market.fail_next("fill_slot", ChainError("out of gas"))
    agent = env.agent(0)
    nxt = await Filling(PROOF).run(agent)
    assert isinstance(nxt, Errored)
    assert not agent.data.filled


async def test_repair_returns_the_collateral_discount_to_the_availability_before_filling(env: SalesEnv) -> None:
    for i in range(ASK.slots):
        await env.other_host.reserve_slot(env.request.id, i)
        collateral = await env.other_host.slot_collateral(env.request.id, i)
        await env.other_host.fill_slot(env.request.id, i, PROOF, collateral)
    agent = env.agent(0)
    await env.other_host.free_slot(agent.slot_id)
    assert await env.market.slot_state(agent.slot_id) == SlotState.REPAIR
    discounted = await env.market.slot_collateral(env.request.id, 0)
    assert discounted < ASK.collateral_per_slot
    await env.market.reserve_slot(env.request.id, 0)
    nxt = await Filling(PROOF).run(agent)
    assert isinstance(nxt, Filled)
    assert env.reservations.lowered == [discounted]
    assert agent.reserved_collateral() == discounted
    assert env.market.calls("fill_slot") == [(env.request.id, 0, PROOF, discounted)]


async def test_a_new_slot_keeps_the_reservations_collateral(env: SalesEnv) -> None:
    await env.market.reserve_slot(env.request.id, 0)
    await Filling(PROOF).run(env.agent(0))
    assert env.reservations.lowered == []


async def test_a_fill_refused_because_the_challenge_moved_on_proves_the_next_one_and_fills_again(
    env: SalesEnv,
) -> None:
    agent = env.agent(0)
    env.market.set_pointer(agent.slot_id, 100)
    await env.market.reserve_slot(env.request.id, 0)
    proven = await env.market.get_challenge(agent.slot_id)
    env.clock.set(await next_period_start(env))  # the period ended before the fill landed: another challenge
    env.market.fail_next("fill_slot", ProofInvalidError("InvalidCellProof"))
    state = Filling(cast("StorageProof", FakeProof(proven)), proven)
    with capture_logs() as logs:
        task = asyncio.create_task(state.run(agent))
        await until_waiting(env.clock)  # for the next period: the fill gets a whole one to land
        assert len(env.market.calls("fill_slot")) == 1
        env.clock.set(await next_period_start(env))
        nxt = await task
    assert isinstance(nxt, Filled)
    assert agent.data.filled
    fresh = await env.market.get_challenge(agent.slot_id)
    assert fresh != proven
    assert [call[2] for call in env.market.calls("fill_slot")] == [FakeProof(proven), FakeProof(fresh)]
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "the challenge moved on before the fill landed: proving again"
    ]
    assert await env.market.token_balance(env.market.signer) == FUNDS - ASK.collateral_per_slot  # posted once


async def test_a_fill_refused_with_the_challenge_unchanged_or_on_every_attempt_is_an_error(env: SalesEnv) -> None:
    agent = env.agent(0)
    env.market.set_pointer(agent.slot_id, 100)
    await env.market.reserve_slot(env.request.id, 0)
    proven = await env.market.get_challenge(agent.slot_id)
    env.market.fail_next("fill_slot", ProofInvalidError("InvalidCellProof"))
    nxt = await Filling(cast("StorageProof", FakeProof(proven)), proven).run(agent)
    assert isinstance(nxt, Errored)  # the proof itself is wrong: a new one would be the same
    assert len(env.market.calls("fill_slot")) == 1

    async def slow_fill() -> None:  # every fill lands in the next period, meeting its challenge
        env.clock.set(await next_period_start(env))

    env.market.on_call("fill_slot", slow_fill)
    env.market.fail_next("fill_slot", ProofInvalidError("InvalidCellProof"), times=FILL_ATTEMPTS)
    task = asyncio.create_task(Filling(cast("StorageProof", FakeProof(proven)), proven).run(agent))
    for _ in range(FILL_ATTEMPTS - 1):  # each new proof waits for the start of a period
        await until_waiting(env.clock)
        env.clock.set(await next_period_start(env))
    nxt = await task
    assert isinstance(nxt, Errored)
    assert len(env.market.calls("fill_slot")) == 1 + FILL_ATTEMPTS
    assert not agent.data.filled
