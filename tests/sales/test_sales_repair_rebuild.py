"""A sale in Repair rebuilds its slot through the SlotRepairer and fills it with the discounted collateral.

The world is the sales world (MockMarket, FakeClock, the real reservations book); the slot data source is a small
test source that does what the network slot source does for a slot in Repair: secure the protected manifest in
the host's repo, then call the repairer. The client's repo holds the protected dataset; the slot's former host is
gone, so nobody serves slot 1 any more and it must be rebuilt from slots 0 and 2.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from salesfakes import FakeProof
from salesworld import EXPIRY, WORLD_ASK, World

from codex_node.blockexchange.port import BlockGetter, SlotRepairer
from codex_node.blockexchange.repair import RepoSlotRepairer
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import cid_bytes, cid_from_bytes
from codex_node.market.types import Content, Request, RequestState, slot_id
from codex_node.sales.context import OnBlocks
from codex_node.sales.ledger import EntryKind
from codex_node.stores.repostore import RepoStore
from codex_node.testing.mockmarket import account
from tests.harness.repairkit import Protected, RepoGetter, protect, slot_blocks
from tests.harness.repo import memory_repo

if TYPE_CHECKING:
    from codex_node.proofs import StorageProof


@dataclass
class RepairingDataSource:
    """Rebuilds a slot in Repair through ``repairer`` into ``repo``; the rest as the world's ledger source does."""

    world: World
    repo: RepoStore
    getter: BlockGetter
    repairer: SlotRepairer
    repaired: list[int] = field(default_factory=list)
    stored: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        assert is_repairing, "this world only ever repairs"
        cid = cid_from_bytes(request.content.cid)
        [raw] = await self.getter.get_blocks([cid])
        await self.repo.put_block(cid, ProtectedManifest.from_block(cid, raw).encode())

        async def counted(nbytes: int) -> None:
            await on_blocks(nbytes)
            self.world.ledger.store_blocks(nbytes)  # the sales ledger's quota follows the repo's
            self.stored += nbytes

        await self.repairer.repair(request, slot_index, expiry, counted)
        self.repaired.append(slot_index)
        self.done.set()

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        pass

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        pass

    @property
    def stored_bytes(self) -> int:
        return self.stored


@pytest.fixture
def client_repo(tmp_path: Path, world: World) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "client", clock=world.clock) as repo:
        yield repo


@pytest.fixture
def host_repo(tmp_path: Path, world: World) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "host", clock=world.clock) as repo:
        yield repo


async def post(world: World, p: Protected) -> Request:
    assert (p.manifest.params.slots, p.manifest.slot_size) == (WORLD_ASK.slots, WORLD_ASK.slot_size)
    request = Request(
        client=account(1),
        ask=WORLD_ASK,
        content=Content(cid=cid_bytes(p.cid), merkle_root=p.manifest.dataset_root),
        expiry=EXPIRY,
        nonce=os.urandom(32),
    )
    await world.client.request_storage(request)
    world.requests.append(request)
    return request


async def test_a_sale_in_repair_rebuilds_its_slot_and_fills_it_with_the_discounted_collateral(
    world: World, client_repo: RepoStore, host_repo: RepoStore
) -> None:
    p = await protect(client_repo, 3 * world_block() + 5, 2, 1)  # K=2, M=1: 2 rows, slots of 2 blocks
    getter = RepoGetter([client_repo])
    await getter.lose_slot(client_repo, p.manifest, 1)  # its host is gone: nobody serves slot 1
    source = RepairingDataSource(world, host_repo, getter, RepoSlotRepairer(host_repo, getter))
    world.data = source  # type: ignore[assignment]  # the world's sales take their data from it
    await world.start()
    request = await post(world, p)
    rival = world.client.as_account(account(3))
    for i in range(WORLD_ASK.slots):
        await rival.reserve_slot(request.id, i)
        await rival.fill_slot(
            request.id, i, cast("StorageProof", FakeProof(b"")), await rival.slot_collateral(request.id, i)
        )
    assert await world.host.request_state(request.id) == RequestState.STARTED
    await world.create_availability(size=2 * world_block())
    await rival.free_slot(slot_id(request.id, 1))  # slashed out: the slot is in Repair
    await world.settle()
    discounted = await world.host.slot_collateral(request.id, 1)
    assert discounted < WORLD_ASK.collateral_per_slot
    # The repair reads and writes blocks in worker threads, which the world's idle detection cannot see.
    await asyncio.wait_for(source.done.wait(), timeout=60)
    await world.until_states(["Proving"])

    assert source.repaired == [1]
    assert await world.host.get_host(slot_id(request.id, 1)) == world.host.signer
    assert await slot_blocks(host_repo, p.manifest, 1) == await slot_blocks(client_repo, p.manifest, 1)
    assert world.earnings is not None
    posted = [e.amount for e in world.earnings.page() if e.kind == EntryKind.COLLATERAL_POSTED]
    assert posted == [discounted]
    assert world.host.calls("fill_slot")[-1][-1] == discounted
    await world.books()
    await world.stop()


def world_block() -> int:
    return WORLD_ASK.slot_size // 2
