"""Proving: hooks, and run against MockMarket and FakeClock with injected failures."""

from __future__ import annotations

import asyncio

import pytest
from salesfakes import FakeProof, SalesEnv, assert_declared, next_period_start, until_idle, until_waiting
from structlog.testing import capture_logs

from codex_node.errors import ProofError, ProofInvalidError
from codex_node.market.types import POINTERS, WRAP_MARGIN, SlotId, SlotState
from codex_node.sales.agent import SalesAgent
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.payout import Payout
from codex_node.sales.states.proving import Proving


def test_hooks_lead_to_cancelled_and_failed() -> None:
    assert isinstance(Proving().on_cancelled(), Cancelled)
    assert isinstance(Proving().on_failed(), Failed)
    assert Proving().on_slot_filled() is None


async def start_proving(
    env: SalesEnv, state: Proving | None = None, *, all_slots: bool = False
) -> tuple[SalesAgent, asyncio.Task[SaleState | None]]:
    if all_slots:
        await env.fill_all()
    else:
        await env.fill(env.market, 0)
    agent = env.agent(0)
    task = asyncio.create_task((state or Proving()).run(agent))
    await until_waiting(env.clock)
    return agent, task


async def next_period(env: SalesEnv) -> None:
    env.clock.set(await next_period_start(env) + 1)
    await until_waiting(env.clock)


async def test_submits_a_proof_of_each_period_challenge_when_required(env: SalesEnv) -> None:
    agent, task = await start_proving(env)
    assert env.market.calls("submit_proof") == []  # none is due in the period of the fill
    challenges = []
    for _ in range(3):
        await next_period(env)
        challenges.append(await env.market.get_challenge(agent.slot_id))
    assert env.market.calls("submit_proof") == [(agent.slot_id, FakeProof(c)) for c in challenges]
    assert len(set(challenges)) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_no_proof_when_none_is_required(env: SalesEnv) -> None:
    agent, task = await start_proving(env)
    env.market.set_proof_required(agent.slot_id, False)
    await next_period(env)
    assert env.market.calls("submit_proof") == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_proof_is_logged_and_the_next_period_proves_again(env: SalesEnv) -> None:
    _, task = await start_proving(env)
    env.prover.fail_with = ProofError("cell unreadable")
    await next_period(env)
    assert not task.done()
    env.prover.fail_with = None
    await next_period(env)
    assert len(env.market.calls("submit_proof")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_proof_refused_because_the_challenge_moved_on_is_made_again_for_the_new_challenge(
    env: SalesEnv,
) -> None:
    agent, task = await start_proving(env)
    new_challenge = b"\x07" * 32

    wrapped: list[bool] = []

    async def pointer_wraps() -> None:  # the first proof lands just after the pointer wrapped
        if not wrapped:
            wrapped.append(True)
            env.market.set_challenge(agent.slot_id, new_challenge)
            raise ProofInvalidError("InvalidCellProof")

    env.market.on_call("submit_proof", pointer_wraps)
    await next_period(env)
    assert env.prover.proved[-1] == new_challenge
    assert env.market.calls("submit_proof")[-1] == (agent.slot_id, FakeProof(new_challenge))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_challenge_read_at_the_pointer_wrap_is_waited_out_block_by_block(env: SalesEnv) -> None:
    """The latest block's pointer at 255: its challenge is gone in the next block, where the proof's transaction
    runs. The prover must get the challenge of the block after the wrap, not the one before it."""
    agent, task = await start_proving(env)
    old, new = b"\x05" * 32, b"\x06" * 32
    env.market.set_pointer(agent.slot_id, POINTERS - 1)
    env.market.set_challenge(agent.slot_id, old)
    await next_period(env)
    assert env.prover.proved == []  # waiting for the next block
    env.market.set_pointer(agent.slot_id, 0)  # the next block wraps the pointer: the challenge changes with it
    env.market.set_challenge(agent.slot_id, new)
    env.clock.advance(1)
    await until_waiting(env.clock)
    assert env.prover.proved == [new]
    assert env.market.calls("submit_proof") == [(agent.slot_id, FakeProof(new))]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_challenge_read_a_few_blocks_before_the_wrap_is_waited_out_too(env: SalesEnv) -> None:
    agent, task = await start_proving(env)
    env.market.set_pointer(agent.slot_id, POINTERS - WRAP_MARGIN)
    await next_period(env)
    assert env.prover.proved == []
    env.market.set_pointer(agent.slot_id, POINTERS - WRAP_MARGIN - 1)  # far enough from the wrap
    env.clock.advance(1)
    await until_waiting(env.clock)
    assert len(env.prover.proved) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_proof_refused_at_the_wrap_with_the_view_unchanged_is_made_again_past_the_wrap(
    env: SalesEnv,
) -> None:
    """A proof slower than the margin meets the wrap: a chain estimating in the next block refuses it while the
    latest block still shows the old challenge (pointer 255). Read again past the wrap, the new one is proven."""
    agent, task = await start_proving(env)
    old, new = b"\x05" * 32, b"\x06" * 32
    env.market.set_challenge(agent.slot_id, old)

    async def refused_at_the_wrap() -> None:
        if len(env.prover.proved) == 1:
            env.market.set_pointer(agent.slot_id, POINTERS - 1)  # blocks went by while the proof was built
            raise ProofInvalidError("InvalidCellProof")

    env.market.on_call("submit_proof", refused_at_the_wrap)
    await next_period(env)
    assert env.prover.proved == [old]  # refused; waiting for the block that wraps the pointer
    env.market.set_pointer(agent.slot_id, 0)
    env.market.set_challenge(agent.slot_id, new)
    env.clock.advance(1)
    await until_waiting(env.clock)
    assert env.prover.proved == [old, new]
    assert env.market.calls("submit_proof")[-1] == (agent.slot_id, FakeProof(new))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_proof_mined_in_the_next_period_counts_for_it_and_that_period_is_not_proven_again(
    env: SalesEnv,
) -> None:
    agent, task = await start_proving(env)
    late: list[bool] = []

    async def mined_in_the_next_period() -> None:  # the challenge did not change, so the chain accepts it there
        if not late:
            late.append(True)
            challenge = await env.market.get_challenge(agent.slot_id)
            env.clock.set(await next_period_start(env) + 1)
            env.market.set_challenge(agent.slot_id, challenge)

    env.market.on_call("submit_proof", mined_in_the_next_period)
    periodicity = await env.market.periodicity()
    with capture_logs() as logs:
        await next_period(env)  # into period `built`; its proof lands in `built + 1`
        built = periodicity.period_of(env.clock.now()) - 1
        await until_waiting(env.clock)
    submitted = [e for e in logs if e["event"] == "proof submitted"]
    assert [(e["period"], e.get("built_in_period")) for e in submitted] == [(built + 1, built)]
    assert not [e for e in logs if e["event"] == "proof of this period already on chain"]
    assert len(env.market.calls("submit_proof")) == 1  # the round of `built + 1` knew it was proven

    with capture_logs() as logs:
        await next_period(env)
    assert [e["period"] for e in logs if e["event"] == "proof submitted"] == [built + 2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_request_that_ends_in_the_period_its_last_proof_counted_for_is_paid_out_at_its_end(
    env: SalesEnv,
) -> None:
    _agent, task = await start_proving(env, all_slots=True)
    ends = await env.market.request_end(env.request.id)
    periodicity = await env.market.periodicity()
    landed = ends - 1  # the last proof lands just before the end, in the period the request ends in
    assert periodicity.period_end(periodicity.period_of(landed)) > ends + 1  # the period outlasts the request

    async def mined_just_before_the_end() -> None:  # e.g. a dev chain's time travel while the proof is mined
        env.clock.set(landed)

    env.market.on_call("submit_proof", mined_just_before_the_end)
    env.clock.set(await next_period_start(env) + 1)  # a proof is due
    await until_idle()
    assert not task.done()
    env.clock.set(ends + 1)
    await until_idle()
    # Paid at the request's end, not when the period its last proof counted for runs out.
    assert task.done()
    assert isinstance(task.result(), Payout)


async def test_a_proof_that_lands_after_its_period_ended_is_not_made_again_for_that_period(env: SalesEnv) -> None:
    agent, task = await start_proving(env)
    landed_late: list[bool] = []

    async def period_ends_meanwhile() -> None:  # the chain moved to the next period before the proof landed
        if not landed_late:
            landed_late.append(True)
            env.clock.set(await next_period_start(env) + 1)
            env.market.set_challenge(agent.slot_id, b"\x09" * 32)
            raise ProofInvalidError("InvalidCellProof")

    env.market.on_call("submit_proof", period_ends_meanwhile)
    periodicity = await env.market.periodicity()
    with capture_logs() as logs:
        await next_period(env)
        first = periodicity.period_of(env.clock.now()) - 1
        await until_waiting(env.clock)
    proofs = [(e["event"], e["period"]) for e in logs if "proof" in e["event"] or "period" in e["event"]]
    # The late period is reported as such, and the round of the new period proves it under its own number.
    assert proofs[0] == ("period ended before its proof landed", first)
    assert ("proof submitted", first + 1) in proofs
    assert ("proof submitted", first) not in proofs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_wrong_proof_for_an_unchanged_challenge_is_not_sent_again(env: SalesEnv) -> None:
    _, task = await start_proving(env)
    env.market.fail_next("submit_proof", ProofInvalidError("InvalidCellProof"))
    with capture_logs() as logs:
        await next_period(env)
    assert len(env.prover.proved) == 1
    assert ("warning", "proof not submitted") in [(e["log_level"], e["event"]) for e in logs]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_period_already_proven_before_a_restart_is_not_reported_as_a_failed_proof(env: SalesEnv) -> None:
    agent, task = await start_proving(env)
    await next_period(env)
    assert len(env.market.calls("submit_proof")) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with capture_logs() as logs:
        restarted = asyncio.create_task(Proving().run(agent))  # same period: it proves again at once
        await until_waiting(env.clock)
    assert len(env.market.calls("submit_proof")) == 2  # tried, and the contract refused the duplicate
    events = [(e["log_level"], e["event"]) for e in logs]
    assert ("info", "proof of this period already on chain") in events
    assert not [e for e in events if e[0] == "warning"]
    restarted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await restarted


async def test_contract_end_leads_to_payout(env: SalesEnv) -> None:
    _, task = await start_proving(env, all_slots=True)
    env.clock.set(await env.market.request_end(env.request.id) + 1)
    nxt = await task
    assert isinstance(nxt, Payout)
    assert_declared(Proving(), nxt)


async def test_request_that_expired_unfilled_while_proving_leads_to_cancelled(env: SalesEnv) -> None:
    _, task = await start_proving(env)  # only slot 0 is filled: the request never starts
    env.clock.set(await env.market.request_expires_at(env.request.id) + 1)
    assert isinstance(await task, Cancelled)


async def test_request_failure_seen_on_chain_leads_to_failed_even_without_the_event(env: SalesEnv) -> None:
    await env.fill_all()
    agent = env.agent(0)
    await env.market.free_slot(env.agent(1).slot_id)
    await env.market.free_slot(env.agent(2).slot_id)  # two lost slots > maxSlotLoss 1: the request fails
    nxt = await Proving().run(agent)
    assert isinstance(nxt, Failed)


async def test_slot_freed_for_repair_means_we_lost_it(env: SalesEnv) -> None:
    await env.fill_all()
    agent = env.agent(0)
    await env.market.free_slot(agent.slot_id)
    nxt = await Proving().run(agent)
    assert isinstance(nxt, Errored)


async def test_a_fill_that_left_the_chain_ends_the_sale_with_its_collateral_back_and_queues_the_slot_again(
    env: SalesEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)
    agent.data.filled = True
    real = env.market.slot_state

    async def reorganised(sid: SlotId) -> SlotState:  # the blocks of our fill left the chain: the slot is free
        return SlotState.FREE if sid == agent.slot_id else await real(sid)

    monkeypatch.setattr(env.market, "slot_state", reorganised)
    with capture_logs() as logs:
        nxt = await Proving().run(agent)
    assert isinstance(nxt, Errored)
    assert nxt.reprocess  # the slot goes back to the queue while the request is open
    assert not agent.data.filled  # so the ending returns all the collateral: none of it is on chain
    assert any("no longer on chain" in e["event"] for e in logs)
    assert_declared(Proving(), nxt)
