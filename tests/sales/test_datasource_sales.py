"""Sales on MockMarket over a real RepoStore: the node sells the slots of a dataset it holds (LocalSlotDataSource).

The repo's worker-thread calls run inline here (``asyncio.to_thread`` patched), so "every task waits" means the
world has settled (``until_idle``); the data source's own tests (``test_datasource.py``) run them in threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry
from salesfakes import FUNDS, FakeProver, _fake_verifier, until_idle

from codex_node.data.cid import Cid
from codex_node.data.slots import BLOCK_SIZE, SlotLayout, cid_bytes
from codex_node.market.types import Ask, Content, Request, SlotState, slot_id
from codex_node.sales.accounting import check_books
from codex_node.sales.availability import AvailabilityTerms
from codex_node.sales.datasource import LocalSlotDataSource
from codex_node.sales.history import SaleHistory
from codex_node.sales.metrics import SalesMetrics
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account

TTL = 3600
QUOTA = 64 * BLOCK_SIZE
_T = TypeVar("_T")


async def _inline(fn: Callable[..., _T], *args: Any) -> _T:
    return fn(*args)


@pytest.fixture(autouse=True)
def inline_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio, "to_thread", _inline)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(tmp_path: Path, clock: FakeClock) -> Iterator[RepoStore]:
    store = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "repo", sync="none"),
        clock=clock,
        quota_max=QUOTA,
        block_ttl=TTL,
        registry=None,
    )
    yield store
    store.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class Node:
    def __init__(self, clock: FakeClock, repo: RepoStore) -> None:
        self.clock = clock
        self.repo = repo
        self.client = MockMarket(clock, signer=account(1), verifier=_fake_verifier)
        self.host = self.client.as_account(account(2))
        for n in (1, 2):
            self.client.mint(account(n), FUNDS)
        self.book = Reservations(repo)
        self.queue = SlotQueue(16, 3, clock=clock)
        self.registry = CollectorRegistry()
        self.sales = Sales(
            market=self.host,
            clock=clock,
            reservations=self.book,
            queue=self.queue,
            data_source=LocalSlotDataSource(repo),
            prover=FakeProver(),
            history=SaleHistory(repo.kv, clock),
            metrics=SalesMetrics(self.registry),
        )

    def states(self) -> list[str]:
        return sorted(type(a.state).__name__ for a in self.sales.agents())

    async def settle(self) -> None:
        await until_idle()

    async def advance(self, seconds: int, step: int = 30) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.set(min(end, self.clock.now() + step))
            await self.settle()

    async def until_states(self, expected: list[str], limit: int = 3600) -> None:
        waited = 0
        while self.states() != expected:
            assert waited < limit, f"agents in {self.states()}, expected {expected}"
            await self.advance(30)
            waited += 30

    async def post(self, cid: Cid, blocks: int, slots: int) -> Request:
        request = Request(
            client=account(1),
            ask=Ask(
                proof_probability=1,
                price_per_byte_per_second=2,
                collateral_per_byte=1,
                slots=slots,
                slot_size=SlotLayout(blocks, slots).slot_size,
                duration=3600,
                max_slot_loss=1,
            ),
            content=Content(cid=cid_bytes(cid), merkle_root=os.urandom(32)),
            expiry=600,
            nonce=os.urandom(32),
        )
        await self.client.request_storage(request)
        return request


@pytest.fixture
async def node(clock: FakeClock, repo: RepoStore) -> AsyncIterator[Node]:
    n = Node(clock, repo)
    await n.sales.start()
    yield n
    await n.sales.stop()


async def test_the_node_sells_every_slot_of_a_dataset_it_holds_and_the_dataset_outlives_the_contract(
    node: Node, repo: RepoStore, clock: FakeClock
) -> None:
    cid = await store_dataset(repo, _once(os.urandom(5 * BLOCK_SIZE + 100)))  # 6 blocks, 3 slots of 2
    base = repo.block_meta(cid)
    assert base is not None
    used = repo.quota().used
    availability = await node.book.create_availability(
        AvailabilityTerms(
            total_size=16 * BLOCK_SIZE,
            duration=24 * 3600,
            min_price_per_byte_per_second=1,
            total_collateral=100 * BLOCK_SIZE,
        )
    )
    request = await node.post(cid, 6, 3)
    await node.until_states(["Proving"] * 3)
    request_end = await node.host.request_end(request.id)
    meta = repo.block_meta(cid)
    assert meta is not None
    assert meta.expiry == request_end  # raised past the uploader's TTL for the contract
    assert repo.quota().used == used  # nothing copied: the slots are the dataset's own blocks
    assert repo.quota().reserved == availability.total_size - 3 * 2 * BLOCK_SIZE  # the slots' bytes are sold

    await node.advance(request_end + 120 - clock.now())
    assert node.states() == []
    assert [await node.host.slot_state(slot_id(request.id, i)) for i in range(3)] == [SlotState.PAID] * 3
    await node.book.reclaim_returning_bytes()
    after = await node.book.get_availability(availability.id)
    assert after.free_size == availability.total_size
    assert after.total_remaining_collateral == availability.total_collateral
    meta = repo.block_meta(cid)
    assert meta is not None
    assert meta.expiry == max(request_end, base.expiry)
    assert list(repo.kv.iterate("meta/sales/hold")) == []


async def test_a_request_for_data_the_node_does_not_hold_errors_and_returns_everything(
    node: Node, repo: RepoStore, clock: FakeClock
) -> None:
    held = await store_dataset(repo, _once(os.urandom(2 * BLOCK_SIZE)))
    missing = await store_dataset(repo, _once(os.urandom(2 * BLOCK_SIZE)))
    await repo.del_block(missing)
    availability = await node.book.create_availability(
        AvailabilityTerms(
            total_size=16 * BLOCK_SIZE,
            duration=24 * 3600,
            min_price_per_byte_per_second=1,
            total_collateral=100 * BLOCK_SIZE,
        )
    )
    await node.post(missing, 2, 1)
    await node.settle()
    assert node.states() == []
    assert node.registry.get_sample_value("codex_sales_ended_total", {"outcome": "errored"}) == 1
    after = await node.book.get_availability(availability.id)
    assert after.total_remaining_collateral == availability.total_collateral
    assert await node.book.all_reservations() == []
    assert check_books([after], [], reserved=repo.quota().reserved) == []
    meta = repo.block_meta(held)
    assert meta is not None
    assert meta.expiry == clock.now() + TTL
