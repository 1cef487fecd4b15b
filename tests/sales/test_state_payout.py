"""Payout: run against MockMarket with injected failures."""

from __future__ import annotations

import asyncio

from salesfakes import ASK, FUNDS, SalesEnv, assert_declared

from codex_node.errors import ChainError, ContractRevertError
from codex_node.market.types import SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.finished import Finished
from codex_node.sales.states.payout import RETRY_DELAYS, Payout


async def test_collects_payment_and_collateral_and_finishes(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    agent = env.agent(0)
    before = await env.market.token_balance(env.market.signer)
    state = Payout()
    nxt = await state.run(agent)
    assert isinstance(nxt, Finished)
    assert_declared(state, nxt)
    assert await env.market.current_collateral(agent.slot_id) == ASK.collateral_per_slot  # what Finished returns
    assert await env.market.slot_state(agent.slot_id) == SlotState.PAID
    assert await env.market.token_balance(env.market.signer) > before
    assert before == FUNDS - 3 * ASK.collateral_per_slot


async def _run_with_time(env: SalesEnv, state: Payout) -> SaleState | None:
    """Run ``state`` for agent 0, moving the fake clock whenever the state waits on it (no wall-clock sleeps)."""
    task = asyncio.create_task(state.run(env.agent(0)))
    while not task.done():
        await asyncio.sleep(0)
        if env.clock.waiters:
            env.clock.advance(max(RETRY_DELAYS))
    return await task


async def test_a_failed_free_slot_is_retried_until_it_pays(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    env.market.fail_next("free_slot", ChainError("connection refused"), times=3)
    nxt = await _run_with_time(env, Payout())
    assert isinstance(nxt, Finished)
    assert len(env.market.calls("free_slot")) == 4
    assert await env.market.slot_state(env.agent(0).slot_id) == SlotState.PAID


async def test_a_free_slot_mined_although_its_answer_was_lost_finishes(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    slot = env.agent(0).slot_id
    await env.market.free_slot(slot)  # mined...
    env.market.fail_next("free_slot", ChainError("timed out waiting for the receipt"))  # ...but the answer lost
    assert isinstance(await _run_with_time(env, Payout()), Finished)
    assert len(env.market.calls("free_slot")) == 2  # the one mined, the one that failed; no third


async def test_a_revert_is_not_retried(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    env.market.fail_next("free_slot", ContractRevertError("SlotIsFree"))
    assert isinstance(await _run_with_time(env, Payout()), Errored)
    assert len(env.market.calls("free_slot")) == 1


async def test_payout_gives_up_after_the_last_retry(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    env.market.fail_next("free_slot", ChainError("nonce too low"), times=len(RETRY_DELAYS) + 1)
    nxt = await _run_with_time(env, Payout())
    assert isinstance(nxt, Errored)
    assert len(env.market.calls("free_slot")) == len(RETRY_DELAYS) + 1
