"""The monitor: checks on its clock, keeps storage samples, raises alerts, and judges readiness."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry

from codex_node.monitor.alerts import AlertBook
from codex_node.monitor.chain import ChainReading
from codex_node.monitor.monitor import Monitor
from codex_node.monitor.samples import StorageSamples
from codex_node.sales.proofmargin import ProofMargin, ProofMargins
from codex_node.stores.quota import Quota
from codex_node.testing.fakeclock import FakeClock


class FakeChain:
    def __init__(self) -> None:
        self.reading = ChainReading(True, head_block=100, cursor_block=101, gas_balance=10**18, token_balance=10)

    async def read(self) -> ChainReading:
        return self.reading


def monitor(tmp_path: Path, clock: FakeClock, chain: FakeChain | None = None, **kw: object) -> Monitor:
    quota = Quota(max=1000, used=10, reserved=0)
    return Monitor(
        clock=clock,
        quota=lambda: quota,
        store_open=lambda: True,
        data_dir=tmp_path,
        book=AlertBook(CollectorRegistry()),
        samples=StorageSamples(),
        chain=chain,
        interval=30,
        **kw,  # type: ignore[arg-type]
    )


async def until_waiting(clock: FakeClock) -> None:
    for _ in range(200):
        if clock.waiters:
            return
        await asyncio.sleep(0)
    raise AssertionError("the monitor is not waiting on its clock")


async def test_it_samples_at_start_and_every_interval_of_its_clock(tmp_path: Path) -> None:
    clock = FakeClock(1000)
    m = monitor(tmp_path, clock)
    await m.start()
    try:
        await until_waiting(clock)
        clock.advance(30)
        await until_waiting(clock)
        clock.advance(30)
        await until_waiting(clock)
    finally:
        await m.stop()
    samples = m.samples.since()
    assert [s.at for s in samples] == [1000, 1030, 1060]
    assert samples[0].quota_used == 10
    assert samples[0].disk_free is not None
    assert samples[0].disk_free > 0
    assert m.last_check == 1060


async def test_a_chain_that_stops_answering_raises_then_clears_an_alert(tmp_path: Path) -> None:
    clock = FakeClock(1000)
    chain = FakeChain()
    m = monitor(tmp_path, clock, chain)
    await m.check()
    assert m.book.active() == []
    chain.reading = ChainReading(False, "connection refused", cursor_block=101)
    await m.check()
    assert [a.key for a in m.book.active()] == ["chain_unreachable"]
    assert "connection refused" in m.book.active()[0].message
    chain.reading = ChainReading(True, head_block=100, cursor_block=101)
    await m.check()
    assert m.book.active() == []


async def test_a_tight_recent_proof_raises_the_margin_alert_and_an_old_one_does_not(tmp_path: Path) -> None:
    clock = FakeClock(10_000)
    margins = ProofMargins(CollectorRegistry())
    m = monitor(tmp_path, clock, margins=margins)
    margins.observe(ProofMargin(at=9_990, slot_id="cd" * 32, period=166, margin=2, period_seconds=60))
    await m.check()
    assert [a.key for a in m.book.active()] == ["proof_margin_low"]
    clock.advance(3600)
    await m.check()
    assert m.book.active() == []


async def test_readiness_names_each_failing_check(tmp_path: Path) -> None:
    clock = FakeClock(1000)
    chain = FakeChain()
    m = monitor(tmp_path, clock, chain)
    health = await m.health()
    assert health.ready
    assert [c.name for c in health.checks] == ["store", "chain", "events", "disk"]

    chain.reading = ChainReading(True, head_block=500, cursor_block=101)
    lagging = await m.health()
    assert not lagging.ready
    assert [c.name for c in lagging.checks if not c.ok] == ["events"]
    assert "400 blocks behind" in next(c.detail for c in lagging.checks if c.name == "events")

    full = monitor(tmp_path, clock, chain=None, min_ready_disk=1 << 62)
    h = await full.health()
    assert not h.ready
    assert [c.name for c in h.checks if not c.ok] == ["disk"]
