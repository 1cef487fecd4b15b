"""Preparing: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

import asyncio

import pytest
from salesfakes import ASK, SalesEnv, assert_declared

from codex_node.errors import ChainError
from codex_node.market.types import RequestId
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import AVAILABILITY_MISMATCH, Ignored
from codex_node.sales.states.preparing import Preparing
from codex_node.sales.states.slotreserving import SlotReserving
from codex_node.testing.mockmarket import account


def test_cancelled_event_leads_to_cancelled() -> None:
    assert isinstance(Preparing().on_cancelled(), Cancelled)


def test_failed_event_leads_to_failed() -> None:
    assert isinstance(Preparing().on_failed(), Failed)


def test_slot_filled_by_anyone_while_preparing_means_another_host_won() -> None:
    nxt = Preparing().on_slot_filled()
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess
    assert_declared(Preparing(), nxt)


async def test_creates_reservation_for_the_slot_and_moves_to_slot_reserving(env: SalesEnv) -> None:
    agent = env.agent(1, known_request=False, reserved=False)
    state = Preparing()
    nxt = await state.run(agent)
    assert isinstance(nxt, SlotReserving)
    assert_declared(state, nxt)
    request_end = await env.market.request_end(env.request.id)
    assert env.reservations.find_args == [
        (ASK.slot_size, ASK.duration, ASK.price_per_byte_per_second, ASK.collateral_per_byte, request_end)
    ]
    [reservation] = env.reservations.created
    assert agent.data.reservation == reservation
    assert (reservation.slot_index, reservation.size, reservation.valid_until) == (1, ASK.slot_size, request_end)
    assert agent.data.request == env.request


async def test_registers_the_request_deadline_with_the_timer_service(env: SalesEnv) -> None:
    await Preparing().run(env.agent(reserved=False))
    assert env.timers.watched == {env.request.id: await env.market.request_expires_at(env.request.id)}


async def test_request_missing_on_chain_is_an_error(env: SalesEnv) -> None:
    agent = env.agent(known_request=False, reserved=False)
    agent.data.request_id = RequestId(b"\x07" * 32)
    nxt = await Preparing().run(agent)
    assert isinstance(nxt, Errored)


async def test_slot_that_is_no_longer_free_is_ignored_without_reprocessing(env: SalesEnv) -> None:
    await env.fill(env.other_host, 0)
    nxt = await Preparing().run(env.agent(0, reserved=False))
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess
    assert env.reservations.created == []


async def test_no_matching_availability_is_ignored_with_reprocessing(env: SalesEnv) -> None:
    env.reservations.has_availability = False
    nxt = await Preparing().run(env.agent(reserved=False))
    assert isinstance(nxt, Ignored)
    assert nxt.reprocess


async def test_availability_taken_by_another_agent_meanwhile_is_ignored_with_reprocessing(env: SalesEnv) -> None:
    env.reservations.race_on_create = True
    nxt = await Preparing().run(env.agent(reserved=False))
    assert isinstance(nxt, Ignored)
    assert nxt.reprocess
    assert nxt.reason == AVAILABILITY_MISMATCH


async def test_chain_failure_is_an_error_not_an_exception(env: SalesEnv) -> None:
    env.market.fail_next("slot_state", ChainError("node unreachable"))
    nxt = await Preparing().run(env.agent(reserved=False))
    assert isinstance(nxt, Errored)
    assert isinstance(nxt.error, ChainError)


async def test_cancellation_while_the_reservation_is_written_still_records_it(env: SalesEnv) -> None:
    agent = env.agent(reserved=False)
    entered = asyncio.Event()
    proceed = asyncio.Event()
    create = env.reservations.create_reservation

    async def slow_create(*args: object) -> object:
        entered.set()
        await proceed.wait()
        return await create(*args)  # type: ignore[arg-type]

    env.reservations.create_reservation = slow_create  # type: ignore[method-assign]
    task = asyncio.create_task(Preparing().run(agent))
    await entered.wait()
    task.cancel()
    await asyncio.sleep(0)
    assert not task.done()  # the write is allowed to finish first
    proceed.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert agent.data.reservation is not None
    assert agent.data.reservation == env.reservations.created[0]


async def test_a_wallet_that_cannot_cover_the_collateral_ignores_the_slot_before_reserving_anything(
    env: SalesEnv,
) -> None:
    env.market = env.client.as_account(account(9))  # a host account that holds no tokens
    state = Preparing()
    nxt = await state.run(env.agent(0, reserved=False))
    assert isinstance(nxt, Ignored)
    assert_declared(state, nxt)
    assert nxt.reprocess  # queued again: the wallet may be funded by the time an availability changes
    assert nxt.reason == f"the wallet holds 0 tokens, less than the slot's collateral of {ASK.collateral_per_slot}"
    assert env.reservations.created == []
