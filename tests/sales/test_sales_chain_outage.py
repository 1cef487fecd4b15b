"""A chain that does not answer while a slot is prepared or reserved: the sale ends (its bytes and collateral back
in the availability) and the slot is queued again, unseen, ``RETRY_SECONDS`` later, so it is sold once the chain
answers; a contract's refusal is not retried. (Found by ``integration/test_rpc_outage.py``: a reserveSlot caught by
an outage dropped the slot for good, as an errored sale's slot was never queued again.)"""

from __future__ import annotations

import pytest
from salesfakes import SalesEnv
from salesworld import WORLD_ASK, World

from codex_node.errors import ChainError, ContractRevertError, TransactionError
from codex_node.market.types import slot_id
from codex_node.sales.sales import RETRY_SECONDS
from codex_node.sales.states.errored import Errored, chain_unreachable
from codex_node.sales.states.preparing import Preparing
from codex_node.sales.states.slotreserving import SlotReserving


def test_only_an_unanswered_chain_is_worth_a_retry() -> None:
    assert chain_unreachable(ChainError("reading the nonce failed: 500 Internal Server Error"))
    assert not chain_unreachable(TransactionError("node refused the transaction"))
    assert not chain_unreachable(ContractRevertError("SlotIsFree"))
    assert not chain_unreachable(ValueError("not a chain error"))


async def test_an_unreachable_chain_while_reserving_ends_the_sale_for_a_retry(env: SalesEnv) -> None:
    env.market.fail_next("reserve_slot", ChainError("reserveSlot: estimating gas failed: timed out"))
    nxt = await SlotReserving().run(env.agent())
    assert isinstance(nxt, Errored)
    assert nxt.retry
    env.market.fail_next("reserve_slot", TransactionError("reserveSlot: node refused the transaction"))
    refused = await SlotReserving().run(env.agent())
    assert isinstance(refused, Errored)
    assert not refused.retry


async def test_an_unreachable_chain_while_preparing_ends_the_sale_for_a_retry(env: SalesEnv) -> None:
    env.market.fail_next("slot_state", ChainError("slotState failed: 500"))
    nxt = await Preparing().run(env.agent(reserved=False))
    assert isinstance(nxt, Errored)
    assert nxt.retry


@pytest.mark.parametrize("method", ["reserve_slot", "slot_state"])
async def test_a_slot_caught_by_a_chain_outage_is_sold_once_the_chain_answers(world: World, method: str) -> None:
    await world.start()
    availability = await world.create_availability()
    world.host.fail_next(method, ChainError(f"{method}: 500 Internal Server Error"))
    request = await world.post_request()
    await world.settle()
    assert world.queue is not None
    assert len(world.states()) == WORLD_ASK.slots - 1  # the one that met the outage ended ...
    await world.books()  # ... with its bytes and collateral back
    await world.advance(RETRY_SECONDS - 1, step=1)
    assert len(world.states()) == WORLD_ASK.slots - 1  # not before its time
    await world.until_states(["Proving"] * WORLD_ASK.slots)
    assert sorted(await world.host.my_slots()) == sorted(slot_id(request.id, i) for i in range(WORLD_ASK.slots))
    after = await world.book.get_availability(availability.id)
    assert after.free_size == availability.free_size - WORLD_ASK.slots * WORLD_ASK.slot_size
    await world.books()
    await world.stop()
