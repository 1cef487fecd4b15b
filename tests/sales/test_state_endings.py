"""The states that end a sale (Finished, Cancelled, Failed, Errored, Ignored): what each returns, exactly once."""

from __future__ import annotations

from salesfakes import ASK, SalesEnv

from codex_node.errors import ChainError, SaleError
from codex_node.market.types import SlotState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.finished import Finished
from codex_node.sales.states.ignored import Ignored

ENDINGS = (Finished, Cancelled, Failed, Errored, Ignored)


def test_every_ending_is_terminal_and_has_no_hooks() -> None:
    samples = (Finished(), Cancelled(), Failed(), Errored(SaleError("x")), Ignored(reprocess=False, reason="x"))
    for state in samples:
        assert state.terminal
        assert state.transitions == frozenset()
        assert (state.on_cancelled(), state.on_failed(), state.on_slot_filled()) == (None, None, None)


async def test_finished_returns_the_collateral_the_payout_sent_back_and_lowers_expiry(env: SalesEnv) -> None:
    await env.fill_all()
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    agent = env.agent(0)
    agent.data.stored = True
    agent.data.filled = True
    await env.market.free_slot(agent.slot_id)  # Payout
    assert await Finished().run(agent) is None
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    assert env.data_source.lowered == [await env.market.request_end(env.request.id)]
    assert env.prover.forgotten == [agent.slot]


async def test_cancelled_before_filling_returns_all_reserved_collateral(env: SalesEnv) -> None:
    env.clock.set(await env.market.request_expires_at(env.request.id) + 1)
    await Cancelled().run(env.agent())
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    assert env.market.calls("free_slot") == []


async def test_cancelled_after_filling_collects_payout_and_returns_the_contract_collateral(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)
    agent.data.stored = True
    env.clock.set(await env.market.request_expires_at(env.request.id) + 1)
    before = await env.market.token_balance(env.market.signer)
    await Cancelled().run(agent)
    assert env.market.calls("free_slot") == [(agent.slot_id,)]
    assert await env.market.slot_state(agent.slot_id) == SlotState.PAID
    assert await env.market.token_balance(env.market.signer) > before + ASK.collateral_per_slot
    assert env.cleaned() == (ASK.collateral_per_slot, False)
    # The slot's data need not outlive the cancelled contract (its end is the expiry).
    assert env.data_source.lowered == [await env.market.request_expires_at(env.request.id)]


async def test_cancelled_that_cannot_free_the_slot_returns_nothing_but_still_ends(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    env.clock.set(await env.market.request_expires_at(env.request.id) + 1)
    env.market.fail_next("free_slot", ChainError("node unreachable"))
    await Cancelled().run(env.agent(0))
    assert env.cleaned() == (0, False)


async def test_failed_after_filling_forfeits_the_collateral_but_leaves_my_slots(env: SalesEnv) -> None:
    await env.fill_all()
    agent = env.agent(0)
    await env.market.free_slot(env.agent(1).slot_id)
    await env.market.free_slot(env.agent(2).slot_id)
    assert await env.market.slot_state(agent.slot_id) == SlotState.FAILED
    await Failed().run(agent)
    assert agent.slot_id not in await env.market.my_slots()
    assert env.cleaned() == (0, False)


async def test_failed_before_filling_returns_all_reserved_collateral(env: SalesEnv) -> None:
    await Failed().run(env.agent())
    assert env.cleaned() == (ASK.collateral_per_slot, False)


async def test_errored_before_filling_returns_the_collateral(env: SalesEnv) -> None:
    """MARKETPLACE.md §5 #4: nim-codex's SaleErrored returned no collateral at all."""
    await Errored(ChainError("x")).run(env.agent())
    assert env.cleaned() == (ASK.collateral_per_slot, False)


async def test_errored_after_a_fill_that_was_mined_despite_the_error_returns_none(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)  # agent.data.filled is False: the fill call "failed", but the chain names us
    await Errored(ChainError("receipt timeout")).run(agent)
    assert env.cleaned() == (0, False)


async def test_errored_passes_on_reprocess(env: SalesEnv) -> None:
    await Errored(SaleError("x"), reprocess=True).run(env.agent())
    assert env.cleaned() == (ASK.collateral_per_slot, True)


async def test_ignored_returns_the_reserved_collateral_and_passes_on_reprocess(env: SalesEnv) -> None:
    await Ignored(reprocess=True, reason="no availability").run(env.agent())
    assert env.cleaned() == (ASK.collateral_per_slot, True)


async def test_ending_without_reservation_returns_no_collateral(env: SalesEnv) -> None:
    await Ignored(reprocess=False, reason="slot taken").run(env.agent(reserved=False))
    assert env.cleaned() == (0, False)


async def test_ending_without_stored_data_leaves_block_expiry_alone(env: SalesEnv) -> None:
    await Ignored(reprocess=False, reason="slot taken").run(env.agent())
    assert env.data_source.lowered == []
