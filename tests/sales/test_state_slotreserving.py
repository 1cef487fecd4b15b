"""SlotReserving: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

from salesfakes import ASK, SalesEnv, assert_declared

from codex_node.errors import ChainError, SlotReservationNotAllowedError
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.slotreserving import SlotReserving
from codex_node.testing.mockmarket import account


def test_hooks_lead_to_cancelled_failed_and_ignored() -> None:
    state = SlotReserving()
    assert isinstance(state.on_cancelled(), Cancelled)
    assert isinstance(state.on_failed(), Failed)
    filled = state.on_slot_filled()
    assert isinstance(filled, Ignored)
    assert not filled.reprocess
    for nxt in (state.on_cancelled(), state.on_failed(), filled):
        assert_declared(state, nxt)


async def test_reserves_the_slot_on_chain_and_moves_to_downloading(env: SalesEnv) -> None:
    state = SlotReserving()
    nxt = await state.run(env.agent(2))
    assert isinstance(nxt, Downloading)
    assert_declared(state, nxt)
    assert env.market.calls("reserve_slot") == [(env.request.id, 2)]
    assert not await env.market.can_reserve_slot(env.request.id, 2)  # already reserved by us


async def test_slot_with_no_reservation_place_left_is_ignored(env: SalesEnv) -> None:
    await env.fill(env.other_host, 0)
    nxt = await SlotReserving().run(env.agent(0))
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess
    assert env.market.calls("reserve_slot") == []


async def test_reservation_refused_by_the_contract_is_ignored(env: SalesEnv) -> None:
    env.market.fail_next("reserve_slot", SlotReservationNotAllowedError("ReservationNotAllowed"))
    nxt = await SlotReserving().run(env.agent())
    assert isinstance(nxt, Ignored)


async def test_other_market_failure_is_an_error(env: SalesEnv) -> None:
    env.market.fail_next("reserve_slot", ChainError("transaction not mined"))
    nxt = await SlotReserving().run(env.agent())
    assert isinstance(nxt, Errored)


async def test_a_wallet_that_cannot_cover_the_collateral_ignores_the_slot_before_reserving_it(env: SalesEnv) -> None:
    env.market = env.client.as_account(account(9))  # a host account that holds no tokens
    state = SlotReserving()
    nxt = await state.run(env.agent(0))
    assert isinstance(nxt, Ignored)
    assert_declared(state, nxt)
    assert not nxt.reprocess  # Preparing queues the slot again; here the wallet was drained meanwhile
    assert f"less than the slot's collateral of {ASK.collateral_per_slot}" in nxt.reason
    assert "holds 0 tokens" in nxt.reason
    assert env.market.calls("reserve_slot") == []
