"""The proof-deadline margin: each landed proof's seconds left of its period, in a histogram and a short list."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from salesfakes import SalesEnv, next_period_start, until_waiting

from codex_node.sales.proofmargin import ProofMargin, ProofMargins, proof_margin
from codex_node.sales.states.proving import Proving


def test_the_margin_is_the_seconds_from_now_to_the_end_of_the_period() -> None:
    assert proof_margin(now=100, period=1, period_seconds=60) == 20  # period 1 is [60, 120)
    assert proof_margin(now=119, period=1, period_seconds=60) == 1
    assert proof_margin(now=125, period=1, period_seconds=60) == -5  # landed after its period


def test_margins_keep_the_latest_and_fill_the_histogram() -> None:
    registry = CollectorRegistry()
    margins = ProofMargins(registry, keep=2)
    for i, m in enumerate((50, 3, 7)):
        margins.observe(ProofMargin(at=i, slot_id="ab", period=i, margin=m, period_seconds=60))
    assert [m.margin for m in margins.latest()] == [3, 7]
    assert registry.get_sample_value("codex_sales_proof_margin_seconds_count") == 3
    assert registry.get_sample_value("codex_sales_proof_margin_seconds_bucket", {"le": "5.0"}) == 1


async def test_proving_records_the_margin_of_each_submitted_proof(env: SalesEnv) -> None:
    registry = CollectorRegistry()
    env.proof_margins = ProofMargins(registry)
    await env.fill(env.market, 0)
    agent = env.agent(0)
    task = asyncio.create_task(Proving().run(agent))
    await until_waiting(env.clock)
    start = await next_period_start(env)
    env.clock.set(start + 1)
    await until_waiting(env.clock)
    seconds = (await env.market.periodicity()).seconds
    assert len(env.market.calls("submit_proof")) == 1
    [margin] = env.proof_margins.latest()
    assert margin.slot_id == agent.slot_id.hex()
    assert margin.margin == seconds - 1  # landed one second into its period
    assert margin.period == start // seconds
    assert registry.get_sample_value("codex_sales_proof_margin_seconds_count") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
