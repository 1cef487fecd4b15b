"""A whole ``Sales`` over MockMarket and FakeClock, with the real reservations book and slot queue.

The repo is stood in for by ``FakeQuotaLedger`` (quota and metadata in a ``MemoryKV``) plus
:class:`LedgerDataSource`, which "stores" a slot's blocks by growing the quota's used bytes and remembers their
expiry, and whose :meth:`LedgerDataSource.maintain` deletes expired blocks as the repo's maintenance would. That is
enough to check the books of ARCHITECTURE.md rule 1 after every step, across restarts.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from salesfakes import BLOCK, FUNDS, FakeProver, _fake_verifier, until_idle

from codex_node.errors import BlockNotFoundError
from codex_node.market.types import Ask, Content, Request, SlotId, slot_id
from codex_node.sales.accounting import check_books
from codex_node.sales.availability import Availability, AvailabilityTerms
from codex_node.sales.context import OnBlocks
from codex_node.sales.history import SaleHistory
from codex_node.sales.ledger import EarningsLedger
from codex_node.sales.metrics import SalesMetrics
from codex_node.sales.openrequests import OpenRequests
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account

WORLD_ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=2,
    collateral_per_byte=1,
    slots=3,
    slot_size=2 * BLOCK,
    duration=3600,
    max_slot_loss=1,
)
EXPIRY = 600
QUOTA = 64 * BLOCK


@dataclass
class StoredSlot:
    nbytes: int
    expiry: int


@dataclass
class LedgerDataSource:
    """Stores slots as quota bytes in the fake ledger; keeps each slot's block expiry (persisted across restarts
    by living in the world, as the repo's block metadata would). Blocks are put with the repo's default TTL,
    ``block_ttl`` (0: none), as the repo does for every block it stores."""

    world: World
    slots: dict[SlotId, StoredSlot] = field(default_factory=dict)
    fail_next_fetch: bool = False
    block_ttl: int = 0

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        if self.fail_next_fetch:
            self.fail_next_fetch = False
            raise BlockNotFoundError("peer went away")
        sid = slot_id(request.id, slot_index)
        stored = self.slots.setdefault(sid, StoredSlot(0, expiry))
        stored.expiry = max(stored.expiry, expiry, self.world.clock.now() + self.block_ttl)
        while stored.nbytes < request.ask.slot_size:
            # Reserved bytes make room first, then the block is written: a crash in between loses no quota.
            await on_blocks(BLOCK)
            self.world.ledger.store_blocks(BLOCK)
            stored.nbytes += BLOCK
            await asyncio.sleep(0)

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        stored = self.slots[slot_id(request.id, slot_index)]
        stored.expiry = max(stored.expiry, expiry)

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        stored = self.slots.get(slot_id(request.id, slot_index))
        if stored is not None:
            stored.expiry = expiry

    def maintain(self) -> None:
        """Delete every expired slot's blocks (the repo's BlockMaintainer)."""
        now = self.world.clock.now()
        for sid, stored in list(self.slots.items()):
            if stored.expiry <= now:
                self.world.ledger.delete_blocks(stored.nbytes)
                del self.slots[sid]

    @property
    def stored_bytes(self) -> int:
        return sum(s.nbytes for s in self.slots.values())


@dataclass
class World:
    clock: FakeClock
    client: MockMarket
    host: MockMarket
    kv: MemoryKV
    ledger: FakeQuotaLedger
    data: LedgerDataSource = field(init=False)
    prover: FakeProver = field(default_factory=FakeProver)
    sales: Sales | None = None
    reservations: Reservations | None = None
    queue: SlotQueue | None = None
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    max_workers: int = 3
    max_open_requests: int = 1024
    simulate_proof_failures: int = 0
    requests: list[Request] = field(default_factory=list)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    earnings: EarningsLedger | None = None

    def __post_init__(self) -> None:
        self.data = LedgerDataSource(self)

    async def start(self) -> Sales:
        """Build and start a fresh Sales over the persisted state (a node start or restart)."""
        self.ledger = self.ledger.reopen()
        self.registry = CollectorRegistry()
        self.reservations = Reservations(self.ledger)
        self.earnings = EarningsLedger(self.kv, self.clock)
        self.queue = SlotQueue(16, self.max_workers, clock=self.clock)
        self.sales = Sales(
            market=self.host,
            clock=self.clock,
            reservations=self.reservations,
            queue=self.queue,
            data_source=self.data,
            prover=self.prover,
            history=SaleHistory(self.kv, self.clock),
            open_requests=OpenRequests(self.kv, self.clock, max_requests=self.max_open_requests),
            metrics=SalesMetrics(self.registry),
            simulate_proof_failures=self.simulate_proof_failures,
            rng=self.rng,
            ledger=self.earnings,
        )
        await self.sales.start()
        return self.sales

    async def stop(self) -> None:
        if self.sales is not None:
            await self.sales.stop()
            self.sales = None

    @property
    def book(self) -> Reservations:
        assert self.reservations is not None
        return self.reservations

    async def create_availability(
        self, size: int = 8 * BLOCK, collateral: int = 100 * BLOCK, *, enabled: bool = True, min_price: int = 1
    ) -> Availability:
        return await self.book.create_availability(
            AvailabilityTerms(
                total_size=size,
                duration=24 * 3600,
                min_price_per_byte_per_second=min_price,
                total_collateral=collateral,
                enabled=enabled,
            )
        )

    async def post_request(self, ask: Ask = WORLD_ASK, expiry: int = EXPIRY) -> Request:
        request = Request(
            client=account(1),
            ask=ask,
            content=Content(cid=b"\x01\x55\x12\x20" + os.urandom(32), merkle_root=os.urandom(32)),
            expiry=expiry,
            nonce=os.urandom(32),
        )
        await self.client.request_storage(request)
        self.requests.append(request)
        return request

    async def settle(self) -> None:
        """Let every task run until all of them wait on the fake clock or on something only the test can cause."""
        await until_idle()

    def states(self) -> list[str]:
        """The state of every live agent, sorted."""
        assert self.sales is not None
        return sorted(type(a.state).__name__ for a in self.sales.agents())

    async def until_states(self, expected: list[str], *, limit: int = 3600) -> None:
        """Advance time (30 s steps) until the agents are in ``expected``; fail after ``limit`` seconds."""
        waited = 0
        while self.states() != expected:
            assert waited < limit, f"agents in {self.states()}, expected {expected}"
            await self.advance(30)
            waited += 30

    async def advance(self, seconds: int, step: int = 30) -> None:
        """Move time forward in steps, letting agents react (prove, time out) at each one."""
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.set(min(end, self.clock.now() + step))
            await self.settle()

    async def books(self) -> None:
        """Assert ARCHITECTURE.md rule 1 and the collateral books on what is persisted right now."""
        quota = self.ledger.quota
        problems = check_books(
            await self.book.availabilities(),
            await self.book.all_reservations(),
            reserved=quota.reserved,
            used=quota.used,
            stored=self.data.stored_bytes,
            quota_max=quota.max,
        )
        assert problems == []


async def make_world(**kwargs: object) -> World:
    clock = FakeClock()
    client = MockMarket(clock, signer=account(1), verifier=_fake_verifier)
    host = client.as_account(account(2))
    for n in (1, 2, 3, 4):
        client.mint(account(n), FUNDS)
    kv = MemoryKV()
    world = World(clock=clock, client=client, host=host, kv=kv, ledger=FakeQuotaLedger(kv, QUOTA))
    for k, v in kwargs.items():
        setattr(world, k, v)
    return world
