"""ProvingSimulated: every N-th due proof is wrong, the contract rejects it, and proving carries on."""

from __future__ import annotations

import asyncio

import pytest
from salesfakes import SalesEnv, next_period_start, until_waiting

from codex_node.sales.states.proving import Proving
from codex_node.sales.states.provingsimulated import ProvingSimulated


def test_declares_the_same_transitions_as_proving() -> None:
    assert ProvingSimulated.transitions == Proving.transitions


def test_refuses_a_period_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ProvingSimulated(0)


async def test_every_second_proof_is_wrong_and_rejected_without_ending_the_sale(env: SalesEnv) -> None:
    await env.fill(env.market, 0)
    agent = env.agent(0)
    task = asyncio.create_task(ProvingSimulated(2).run(agent))
    await until_waiting(env.clock)
    for _ in range(4):
        env.clock.set(await next_period_start(env) + 1)
        await until_waiting(env.clock)
    submitted = [proof.wrong for _, proof in env.market.calls("submit_proof")]  # type: ignore[attr-defined]
    assert submitted == [False, True, False, True]
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_proof_sent_again_in_the_same_period_does_not_count_as_another_period(env: SalesEnv) -> None:
    """Every N-th *period* is wrong: a correct proof refused because the challenge moved on, and sent again within
    its period, does not advance the count (the retry used to be the wrong one with N=2)."""
    from codex_node.errors import ProofInvalidError

    await env.fill(env.market, 0)
    agent = env.agent(0)
    task = asyncio.create_task(ProvingSimulated(2).run(agent))
    await until_waiting(env.clock)
    moved: list[bool] = []

    async def challenge_moves_on() -> None:  # the first proof lands after the pointer wrapped
        if not moved:
            moved.append(True)
            env.market.set_challenge(agent.slot_id, b"\x07" * 32)  # type: ignore[attr-defined]
            raise ProofInvalidError("InvalidCellProof")

    env.market.on_call("submit_proof", challenge_moves_on)  # type: ignore[attr-defined]
    for _ in range(3):
        env.clock.set(await next_period_start(env) + 1)
        await until_waiting(env.clock)
    submitted = [proof.wrong for _, proof in env.market.calls("submit_proof")]  # type: ignore[attr-defined]
    assert submitted == [False, False, True, False]  # period 1 sent twice (both right), period 2 wrong, period 3 right
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
