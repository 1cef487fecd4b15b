"""NetworkSlotDataSource: a sale's slot fetched from peers on 127.0.0.1, verified, stored batch by batch."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pytest

from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.slotsource import NetworkSlotDataSource
from codex_node.data.erasure import ErasureParams
from codex_node.data.slots import BLOCK_SIZE, SlotLayout, cid_bytes
from codex_node.errors import RepairError, SlotDataError
from codex_node.market.types import Ask, Content, Request
from codex_node.purchasing.protect import ProtectedDataset, protect_dataset
from codex_node.sales.context import OnBlocks
from codex_node.sales.datasource import HOLDS_PREFIX, LocalSlotDataSource
from codex_node.stores.datasets import store_dataset
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.mockmarket import account
from codex_node.testing.staticpeers import StaticProviders
from tests.blockexchange.conftest import TTL, Serve
from tests.harness.blockpeers import HostilePeer, honest_app, upload

OPTIONS = FetchOptions(batch_blocks=3, parallel=2, rounds=1)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def protected(repo: RepoStore, nblocks: int) -> ProtectedDataset:
    cid, manifest = await upload(repo, nblocks)
    return await protect_dataset(repo, cid, manifest, ErasureParams.from_request(3, 1))


def request_for(dataset: ProtectedDataset) -> Request:
    pm = dataset.manifest
    return Request(
        client=account(1),
        ask=Ask(
            proof_probability=1,
            price_per_byte_per_second=1,
            collateral_per_byte=1,
            slots=pm.params.slots,
            slot_size=pm.slot_size,
            duration=3600,
            max_slot_loss=1,
        ),
        content=Content(cid=cid_bytes(dataset.cid), merkle_root=pm.dataset_root),
        expiry=600,
        nonce=os.urandom(32),
    )


class Reservation:
    """Stands in for the sale's reservation: ``slot_size`` reserved in the repo's quota, released by on_blocks."""

    def __init__(self, repo: RepoStore, size: int) -> None:
        self.repo = repo
        repo.reserve(size)
        self.seen: list[tuple[int, int]] = []  # (reserved, used) at each call, before the release

    async def __call__(self, nbytes: int) -> None:
        quota = self.repo.quota()
        self.seen.append((quota.reserved, quota.used))
        self.repo.release(nbytes)


def source_for(here: RepoStore, fetcher: BlockFetcher, **kw: object) -> NetworkSlotDataSource:
    return NetworkSlotDataSource(here, fetcher, LocalSlotDataSource(here), **kw)  # type: ignore[arg-type]


async def test_a_slot_is_fetched_verified_and_its_reserved_bytes_go_down_batch_by_batch(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 12)
    request = request_for(dataset)
    slot_cid = dataset.manifest.slot_manifests[1]
    slot_manifest = await peer_repo.get_manifest(slot_cid)
    slot_size = request.ask.slot_size
    assert slot_manifest.block_count >= 4  # several batches of 3
    # The quota holds the slot (reserved) and the two manifests, nothing more: bytes are never counted twice.
    manifests = len(await peer_repo.get_block(dataset.cid)) + len(await peer_repo.get_block(slot_cid))
    here = make_repo("here", quota_max=slot_size + manifests)
    liar = HostilePeer(peer_repo, corrupt=True)
    providers = StaticProviders([await serve(liar, "liar"), await serve(honest_app(peer_repo), "honest")])
    fetcher = BlockFetcher(here, providers, clock, options=OPTIONS)
    reservation = Reservation(here, slot_size)
    expiry = clock.now() + 10_000
    try:
        await source_for(here, fetcher).fetch(request, 1, expiry, reservation)
    finally:
        await fetcher.close()
    reserved = [r for r, _ in reservation.seen]
    assert reserved == sorted(reserved, reverse=True)
    assert len(set(reserved)) == len(reserved) >= 2  # it went down in steps, as batches landed
    quota = here.quota()
    assert quota.reserved == 0
    assert quota.used == slot_size + manifests
    for cid in [dataset.cid, slot_cid, *slot_manifest.block_cids()]:
        assert await here.get_block(cid) == await peer_repo.get_block(cid)  # get_block checks the CID too
        meta = here.block_meta(cid)
        assert meta is not None
        assert meta.expiry >= expiry
    assert providers.avoided["liar"].startswith("corrupt")
    assert list(here.kv.iterate(HOLDS_PREFIX))  # the local source's hold was recorded


async def test_a_fetched_slot_lives_until_its_sale_ends_not_for_the_block_ttl(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    """A sale cancelled at its request's expiry leaves its fetched slot to maintenance at that expiry: the bytes
    its availability got back are not also held in the quota for the full ``--block-ttl`` (anchor #1251)."""
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 6)
    request = request_for(dataset)
    slot_cid = dataset.manifest.slot_manifests[1]
    slot_manifest = await peer_repo.get_manifest(slot_cid)
    here = make_repo("here")
    fetcher = BlockFetcher(here, StaticProviders([await serve(honest_app(peer_repo), "peer")]), clock, options=OPTIONS)
    source = source_for(here, fetcher)
    expiry = clock.now() + 600  # the request's expiry: well before the repo's TTL
    assert expiry < clock.now() + TTL
    try:
        await source.fetch(request, 1, expiry, Reservation(here, request.ask.slot_size))
    finally:
        await fetcher.close()
    assert here.quota().used > 0
    await source.lower_expiry(request, 1, expiry)  # the sale ended with its request, cancelled at its expiry
    for cid in [dataset.cid, slot_cid, *slot_manifest.block_cids()]:
        meta = here.block_meta(cid)
        assert meta is not None
        assert meta.expiry == expiry, cid
    clock.set(expiry)
    await BlockMaintainer(here, clock, registry=None).run_pass()
    assert here.quota().used == 0
    assert here.block_meta(slot_cid) is None


async def test_only_the_blocks_missing_here_are_fetched(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 6)
    request = request_for(dataset)
    slot_manifest = await peer_repo.get_manifest(dataset.manifest.slot_manifests[0])
    here = make_repo("here")
    first = slot_manifest.block_cid(0)
    await here.put_block(first, await peer_repo.get_block(first))
    peer = HostilePeer(peer_repo)
    fetcher = BlockFetcher(here, StaticProviders([await serve(peer, "peer")]), clock, options=OPTIONS)
    calls: list[int] = []

    async def on_blocks(n: int) -> None:
        calls.append(n)

    try:
        await source_for(here, fetcher).fetch(request, 0, clock.now() + 100, on_blocks)
    finally:
        await fetcher.close()
    assert calls[0] == BLOCK_SIZE  # the block already here, reported first
    assert sum(calls) == request.ask.slot_size


async def test_a_protected_manifest_that_disagrees_with_the_request_is_refused_before_any_block(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 6)
    request = request_for(dataset)
    wrong = replace(request, ask=replace(request.ask, slot_size=request.ask.slot_size * 2))
    here = make_repo("here")
    peer = HostilePeer(peer_repo)
    fetcher = BlockFetcher(here, StaticProviders([await serve(peer, "peer")]), clock, options=OPTIONS)
    try:
        with pytest.raises(SlotDataError, match="slots of"):
            await source_for(here, fetcher).fetch(wrong, 0, clock.now() + 100, _count())
    finally:
        await fetcher.close()
    assert peer.requests == 1  # only the protected manifest was asked for
    assert here.total_blocks == 0


def _count() -> OnBlocks:
    async def on_blocks(_n: int) -> None:
        return None

    return on_blocks


class FakeRepairer:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def repair(self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks) -> None:
        self.calls.append((slot_index, expiry))


async def test_repairing_without_a_repairer_is_a_clear_repair_error(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 6)
    here = make_repo("here")
    fetcher = BlockFetcher(here, StaticProviders([await serve(honest_app(peer_repo), "p")]), clock, options=OPTIONS)
    try:
        with pytest.raises(RepairError, match="without a slot repairer"):
            await source_for(here, fetcher).fetch(request_for(dataset), 2, clock.now() + 5, _count(), is_repairing=True)
        assert here.has_block(dataset.cid)  # the protected manifest was secured first
    finally:
        await fetcher.close()


async def test_repairing_calls_the_repairer_for_the_slot(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    dataset = await protected(peer_repo, 6)
    here = make_repo("here")
    repairer = FakeRepairer()
    fetcher = BlockFetcher(here, StaticProviders([await serve(honest_app(peer_repo), "p")]), clock, options=OPTIONS)
    try:
        with pytest.raises(SlotDataError):  # the fake rebuilt nothing: the local pass finds the slot missing
            await source_for(here, fetcher, repairer=repairer).fetch(
                request_for(dataset), 2, clock.now() + 5, _count(), is_repairing=True
            )
    finally:
        await fetcher.close()
    assert repairer.calls == [(2, clock.now() + 5)]


async def test_a_block_repeated_in_the_slot_is_fetched_once_and_its_bytes_reported_per_position(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    peer_repo = make_repo("peer")
    same = os.urandom(BLOCK_SIZE)
    cid = await store_dataset(peer_repo, _one(same * 5 + os.urandom(BLOCK_SIZE)))
    manifest = await peer_repo.get_manifest(cid)
    layout = SlotLayout(manifest.block_count, 1)
    request = Request(
        client=account(1),
        ask=Ask(
            proof_probability=1,
            price_per_byte_per_second=1,
            collateral_per_byte=1,
            slots=1,
            slot_size=layout.slot_size,
            duration=3600,
            max_slot_loss=0,
        ),
        content=Content(cid=cid_bytes(cid), merkle_root=bytes(32)),
        expiry=600,
        nonce=os.urandom(32),
    )
    here = make_repo("here")
    peer = HostilePeer(peer_repo)
    fetcher = BlockFetcher(here, StaticProviders([await serve(peer, "peer")]), clock, options=OPTIONS)
    reservation = Reservation(here, layout.slot_size)
    try:
        await source_for(here, fetcher).fetch(request, 0, clock.now() + 100, reservation)
    finally:
        await fetcher.close()
    assert here.quota().reserved == 0  # all six positions left the reservation, though only two blocks came
    assert here.total_blocks == 3  # the manifest and the two distinct blocks
