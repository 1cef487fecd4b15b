"""Proving when a period ends while a proof is being made: the new period is proven, not skipped.

Found end to end (tests/e2e, a node restarted while proving): the proof attempt of one period was still running
when the chain moved into the next. Proving computed its next wake-up from the clock *after* the attempt, so it
slept until the end of the period it had just entered and never proved it (a missed proof: slashing).
"""

from __future__ import annotations

import asyncio

import pytest
from salesfakes import FakeProof, SalesEnv, next_period_start, until_waiting

from codex_node.market.types import Slot
from codex_node.proofs import StorageProof
from codex_node.sales.states.proving import Proving


async def test_a_period_entered_during_a_proof_attempt_is_proven_at_once(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)
    prover = env.prover
    original = prover.prove
    slow_once: list[bool] = []

    async def slow_prove(slot: Slot, challenge: bytes) -> StorageProof:
        proof = await original(slot, challenge)
        if not slow_once:
            slow_once.append(True)
            env.clock.set(await next_period_start(env) + 1)  # the period ends while the proof is being made
        return proof

    prover.prove = slow_prove  # type: ignore[method-assign]
    task = asyncio.create_task(Proving().run(agent))
    await until_waiting(env.clock)
    env.clock.set(await next_period_start(env) + 1)  # first period after the fill: a proof is due
    await until_waiting(env.clock)
    # The late proof of the previous period carries a stale challenge; the period we are in now is proven right
    # away, without waiting for another period to pass.
    current = await env.market.get_challenge(agent.slot_id)
    assert (agent.slot_id, FakeProof(current)) in env.market.calls("submit_proof")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
