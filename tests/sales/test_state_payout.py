"""Payout: run against MockMarket with injected failures."""

from __future__ import annotations

from salesfakes import ASK, FUNDS, SalesEnv, assert_declared

from codex_node.errors import ChainError
from codex_node.market.types import SlotState
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.finished import Finished
from codex_node.sales.states.payout import Payout


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


async def test_failed_free_slot_is_an_error(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    env.market.fail_next("free_slot", ChainError("nonce too low"))
    assert isinstance(await Payout().run(env.agent(0)), Errored)
