"""Downloading: hooks, and run against MockMarket with injected failures."""

from __future__ import annotations

from dataclasses import replace

from salesfakes import ASK, BLOCK, SalesEnv, assert_declared

from codex_node.errors import BlockNotFoundError
from codex_node.market.types import SlotId, SlotState
from codex_node.sales.agent import SalesAgent
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.initialproving import InitialProving


def test_hooks_lead_to_cancelled_failed_and_ignored() -> None:
    state = Downloading()
    assert isinstance(state.on_cancelled(), Cancelled)
    assert isinstance(state.on_failed(), Failed)
    nxt = state.on_slot_filled()
    assert isinstance(nxt, Ignored)
    assert not nxt.reprocess


async def test_stores_the_slot_until_request_expiry_and_releases_reserved_bytes_per_batch(env: SalesEnv) -> None:
    agent = env.agent(1)
    state = Downloading()
    nxt = await state.run(agent)
    assert isinstance(nxt, InitialProving)
    assert_declared(state, nxt)
    expires_at = await env.market.request_expires_at(env.request.id)
    assert env.data_source.fetched == [(1, expires_at, False)]
    assert env.reservations.released == [BLOCK] * (ASK.slot_size // BLOCK)
    assert agent.data.stored


async def test_started_request_stores_the_slot_until_request_end(env: SalesEnv) -> None:
    await env.fill_all()  # the request starts; then slot 0 is freed for repair
    await env.market.free_slot(env.agent(0).slot_id)
    assert await env.market.slot_state(env.agent(0).slot_id) == SlotState.REPAIR
    await Downloading().run(env.agent(0))
    assert env.data_source.fetched == [(0, await env.market.request_end(env.request.id), True)]


async def test_data_source_failure_is_an_error_and_the_blocks_are_still_owned(env: SalesEnv) -> None:
    env.data_source.fail_with = BlockNotFoundError("block 3 of the slot is missing")
    agent = env.agent()
    nxt = await Downloading().run(agent)
    assert isinstance(nxt, Errored)
    assert agent.data.stored  # blocks fetched before the failure must get their expiry lowered at the end


async def test_without_a_reservation_there_is_nothing_to_download_into(env: SalesEnv) -> None:
    nxt = await Downloading().run(env.agent(reserved=False))
    assert isinstance(nxt, Errored)
    assert env.data_source.fetched == []


async def test_a_resumed_download_releases_only_what_its_reservation_still_holds(env: SalesEnv) -> None:
    """The local data source reports the whole slot again after a restart; the reservation holds only the rest."""
    agent = env.agent(1)
    reservation = agent.data.reservation
    assert reservation is not None
    agent.data.reservation = replace(reservation, size=BLOCK)  # all but one block secured before the stop
    assert isinstance(await Downloading().run(agent), InitialProving)
    assert sum(env.reservations.released) == BLOCK


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[SlotId, int, int]] = []

    def progress(self, slot: SlotId, nbytes: int, total: int) -> bool:
        self.calls.append((slot, nbytes, total))
        return True


async def test_reports_the_bytes_secured_so_far_after_each_batch(env: SalesEnv) -> None:
    recorder = Recorded()
    agent = env.agent(1)
    agent = SalesAgent(replace(agent.context, download_progress=recorder), agent.data)
    assert isinstance(await Downloading().run(agent), InitialProving)
    blocks = ASK.slot_size // BLOCK
    assert recorder.calls == [(agent.slot_id, n * BLOCK, ASK.slot_size) for n in range(1, blocks + 1)]
