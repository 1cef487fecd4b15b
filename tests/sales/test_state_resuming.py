"""Resuming: a sale stopped before its fill picks up where the chain says it stands."""

from __future__ import annotations

from salesfakes import SalesEnv, assert_declared

from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.resuming import Resuming
from codex_node.sales.states.slotreserving import SlotReserving


def test_hooks_lead_to_cancelled_failed_and_ignored() -> None:
    state = Resuming()
    assert isinstance(state.on_cancelled(), Cancelled)
    assert isinstance(state.on_failed(), Failed)
    nxt = state.on_slot_filled()
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess


async def test_a_reservation_that_never_reached_the_chain_is_made_now(env: SalesEnv) -> None:
    agent = env.agent(0, known_request=False)
    state = Resuming()
    nxt = await state.run(agent)
    assert isinstance(nxt, SlotReserving)
    assert_declared(state, nxt)
    assert agent.data.request == env.request
    assert env.request.id in env.timers.watched


async def test_a_reservation_already_on_chain_goes_on_to_download(env: SalesEnv) -> None:
    await env.market.reserve_slot(env.request.id, 0)
    state = Resuming()
    nxt = await state.run(env.agent(0))
    assert isinstance(nxt, Downloading)
    assert_declared(state, nxt)


async def test_a_slot_another_host_filled_meanwhile_is_ignored(env: SalesEnv) -> None:
    await env.fill(env.other_host, 0)
    nxt = await Resuming().run(env.agent(0))
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess


async def test_without_a_reservation_it_is_an_error(env: SalesEnv) -> None:
    assert isinstance(await Resuming().run(env.agent(0, reserved=False)), Errored)
