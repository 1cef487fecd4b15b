"""A chain reorganisation wakes every proving sale at once: a sale whose fill left the chain ends and its slot is
queued again without waiting for the next proof period (which, on a chain with long periods, could outlast the
request's expiry while another host takes the slot)."""

from __future__ import annotations

import pytest
from salesworld import World

from codex_node.market.types import ChainReorganised, SlotId, SlotState, slot_id


async def test_a_reorganisation_makes_a_proving_sale_read_its_slot_again_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.start()
    await world.create_availability()
    request = await world.post_request()
    await world.until_states(["Proving"] * 3)
    assert world.sales is not None
    lost = slot_id(request.id, 1)
    real = world.host.slot_state

    async def reorganised(sid: SlotId) -> SlotState:  # the block of one fill left the chain: that slot is free
        return SlotState.FREE if sid == lost else await real(sid)

    monkeypatch.setattr(world.host, "slot_state", reorganised)
    now = world.clock.now()
    await world.settle()
    assert world.states() == ["Proving"] * 3  # nothing reads the chain between periods on its own

    await world.host.emit(ChainReorganised(first_block=1))
    await world.settle()
    assert world.clock.now() == now  # no period passed
    agents = {agent.slot_id: agent for agent in world.sales.agents()}
    assert lost not in agents or type(agents[lost].state).__name__ != "Proving"
    assert sorted(type(a.state).__name__ for s, a in agents.items() if s != lost) == ["Proving"] * 2
    history = world.sales.book
    assert history is not None
    ended = [s for s in history.page(limit=20) if s.slot_id == lost and s.error and "no longer on chain" in s.error]
    assert ended, "the sale whose fill left the chain ended"
    assert world.host.handler_errors == []
    await world.stop()
