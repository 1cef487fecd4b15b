"""Filling: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from salesfakes import ASK, FUNDS, FakeProof, SalesEnv, assert_declared

from codex_node.errors import ChainError
from codex_node.market.types import SlotState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.filled import Filled
from codex_node.sales.states.filling import Filling
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
