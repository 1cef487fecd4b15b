"""Sales agents at scale: routing cost per chain event, and memory per idle agent.

A node hosting N slots (N = 1,000, then 10,000) is built the way a restart builds it: the host account fills N
slots on a ``MockMarket`` (10 slots per request), then ``Sales.start`` resumes every one through Unknown → Filled →
Proving, where the agents sit waiting for the next period (idle). Then 100,000 ``SlotFilled`` events for random
hosted slots are emitted on the market and routed by ``Sales`` through its ``(requestId, slotIndex)`` index to the
agent, whose Proving state ignores them — the full path of a routed event without ending any sale.

Printed per N: microseconds per event (should not grow with N: routing never visits other agents), for events
handled one at a time (as a chain delivers them) and for one burst queued before any agent runs (there one task
wake-up serves all the events an agent got, so fewer agents means fewer wake-ups per event: that gap is asyncio's,
not routing's),
and the memory per idle agent (tracemalloc: everything allocated between "slots filled on the market" and "all
agents in Proving", minus the mock market's own call log; target ≤ 20 KiB).

The data source and prover are fakes that do nothing; Sales runs without history and metrics (the history lives
in LevelDB, not in memory, and the metrics are per state, not per agent); logging is filtered at WARNING (the
routed events log nothing at INFO either). Run: ``python benchmarks/agents.py [EVENTS]``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import random
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import structlog

from codex_node.market.types import Ask, Content, Request, RequestId, Slot, SlotFilled
from codex_node.sales.context import OnBlocks
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.sales.states.proving import Proving
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof

SLOTS_PER_REQUEST = 10
ASK = Ask(
    proof_probability=1_000_000,  # proofs (almost) never required: the agents stay idle
    price_per_byte_per_second=1,
    collateral_per_byte=1,
    slots=SLOTS_PER_REQUEST,
    slot_size=65_536,
    duration=30 * 86_400,
    max_slot_loss=1,
)


class NoData:
    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        return None

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None


@dataclass(frozen=True)
class NoProof:
    challenge: bytes


class NoProver:
    async def prove(self, slot: Slot, challenge: bytes) -> StorageProof:
        return cast("StorageProof", NoProof(challenge))

    def corrupt(self, proof: StorageProof) -> StorageProof:
        return proof

    async def forget(self, slot: Slot) -> None:
        return None


@dataclass
class Node:
    clock: FakeClock
    host: MockMarket
    sales: Sales
    slots: list[tuple[RequestId, int]]


async def hosted_node(n_agents: int) -> Node:
    """A market on which the host already fills ``n_agents`` slots, and a ``Sales`` not started yet."""
    clock = FakeClock()
    client = MockMarket(clock, signer=account(1))
    host = client.as_account(account(2))
    client.mint(account(1), 10**30)
    client.mint(account(2), 10**30)
    proof = cast("StorageProof", NoProof(b""))
    slots: list[tuple[RequestId, int]] = []
    for _ in range(-(-n_agents // SLOTS_PER_REQUEST)):
        request = Request(
            client=account(1),
            ask=ASK,
            content=Content(cid=os.urandom(36), merkle_root=os.urandom(32)),
            expiry=3600,
            nonce=os.urandom(32),
        )
        await client.request_storage(request)
        for index in range(min(SLOTS_PER_REQUEST, n_agents - len(slots))):
            await host.reserve_slot(request.id, index)
            await host.fill_slot(request.id, index, proof, ASK.collateral_per_slot)
            slots.append((request.id, index))
    host.call_log.clear()
    client.call_log.clear()
    sales = Sales(
        market=host,
        clock=clock,
        reservations=Reservations(FakeQuotaLedger(MemoryKV(), 1 << 40)),
        queue=SlotQueue(clock=clock),
        data_source=NoData(),
        prover=NoProver(),
    )
    return Node(clock, host, sales, slots)


async def until_all_proving(node: Node, n_agents: int) -> None:
    for _ in range(1_000_000):
        agents = node.sales.agents()
        if len(agents) == n_agents and all(isinstance(a.state, Proving) for a in agents):
            # One more turn so each Proving run reaches its wait on the clock.
            for _ in range(50):
                await asyncio.sleep(0)
            return
        await asyncio.sleep(0)
    raise AssertionError("the agents never reached Proving")


async def memory_per_agent(n_agents: int) -> float:
    node = await hosted_node(n_agents)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    await node.sales.start()
    await until_all_proving(node, n_agents)
    node.host.call_log.clear()  # the mock market's record of calls, not the node's memory
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    await node.sales.stop()
    return grown / n_agents


async def time_events(n_agents: int, n_events: int, *, burst: bool) -> float:
    """Seconds to route ``n_events``: one at a time (each handled before the next arrives, as a chain delivers
    them), or in one ``burst`` queued before any agent runs."""
    node = await hosted_node(n_agents)
    await node.sales.start()
    await until_all_proving(node, n_agents)
    rng = random.Random(7)
    events = [SlotFilled(*node.slots[rng.randrange(n_agents)]) for _ in range(n_events)]
    handled = 0
    all_handled = asyncio.Event()
    ignore = Proving.on_slot_filled

    def counting(state: Proving) -> None:
        nonlocal handled
        handled += 1
        if handled == n_events:
            all_handled.set()
        ignore(state)

    Proving.on_slot_filled = counting  # type: ignore[assignment,method-assign]
    try:
        gc.collect()
        t0 = time.perf_counter()
        for event in events:
            await node.host.emit(event)
            if not burst:
                await asyncio.sleep(0)  # the agent's scheduler handles it now
        await all_handled.wait()
        elapsed = time.perf_counter() - t0
    finally:
        Proving.on_slot_filled = ignore  # type: ignore[method-assign]
    assert all(isinstance(a.state, Proving) for a in node.sales.agents())
    await node.sales.stop()
    return elapsed


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n_events = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(f"events per run   {n_events:,} SlotFilled, routed to random hosted slots")
    for burst in (False, True):
        mode = "in one burst" if burst else "one at a time"
        for n_agents in (1_000, 10_000):
            best = min([await time_events(n_agents, n_events, burst=burst) for _ in range(3)])
            print(f"{n_agents:>6,} agents    {best / n_events * 1e6:6.2f} µs/event  {mode} (best of 3: {best:.3f} s)")
    for n_agents in (1_000, 10_000):
        per_agent = await memory_per_agent(n_agents)
        print(f"{n_agents:>6,} agents    {per_agent / 1024:.1f} KiB per idle agent (target <= 20 KiB)")


if __name__ == "__main__":
    asyncio.run(main())
