"""LocalSlotDataSource over a real RepoStore (MemoryKV, block files in tmp_path): securing, holds, lowering."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from codex_node.data.cid import Cid, block_cid, manifest_cid
from codex_node.data.manifest import Manifest
from codex_node.data.slots import BLOCK_SIZE, ZERO_BLOCK, SlotLayout, cid_bytes
from codex_node.errors import SlotDataError
from codex_node.market.types import Ask, Content, Request
from codex_node.sales.datasource import HOLDS_PREFIX, LocalSlotDataSource, lowered_expiry
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import account

TTL = 3600  # the uploader's TTL: the manifest's expiry before any sale


@dataclass
class Blocks:
    """Records ``on_blocks`` calls."""

    calls: list[int] = field(default_factory=list)

    async def __call__(self, nbytes: int) -> None:
        self.calls.append(nbytes)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(tmp_path: Path, clock: FakeClock) -> Iterator[RepoStore]:
    store = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "repo", sync="none"),
        clock=clock,
        quota_max=1 << 30,
        block_ttl=TTL,
        registry=None,
    )
    yield store
    store.close()


@pytest.fixture
def source(repo: RepoStore) -> LocalSlotDataSource:
    return LocalSlotDataSource(repo, batch_blocks=2)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def upload(repo: RepoStore, nblocks: int, *, tail: int = BLOCK_SIZE) -> tuple[Cid, Manifest]:
    """A dataset of ``nblocks`` distinct blocks, the last ``tail`` bytes long."""
    data = b"".join(os.urandom(BLOCK_SIZE) for _ in range(nblocks - 1)) + os.urandom(tail)
    cid = await store_dataset(repo, _chunks(data))
    return cid, await repo.get_manifest(cid)


def request_for(cid: Cid, manifest: Manifest, slots: int, **ask: int) -> Request:
    layout = SlotLayout(manifest.block_count, slots)
    return Request(
        client=account(1),
        ask=Ask(
            proof_probability=1,
            price_per_byte_per_second=1,
            collateral_per_byte=1,
            slots=slots,
            slot_size=ask.get("slot_size", layout.slot_size),
            duration=3600,
            max_slot_loss=0,
        ),
        content=Content(cid=cid_bytes(cid), merkle_root=bytes(32)),
        expiry=600,
        nonce=os.urandom(32),
    )


def expiry_of(repo: RepoStore, cid: Cid) -> int:
    meta = repo.block_meta(cid)
    assert meta is not None
    return meta.expiry


def slot_cids(manifest: Manifest, request: Request, slot_index: int) -> list[Cid]:
    layout = SlotLayout(manifest.block_count, request.ask.slots)
    return [manifest.block_cid(i) for i in layout.block_indices(slot_index) if i is not None]


# --- fetch --------------------------------------------------------------------------------------------------------


async def test_fetch_raises_the_manifest_and_exactly_the_slots_blocks_and_reports_the_slot_bytes(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 9)
    request = request_for(cid, manifest, slots=3)
    blocks = Blocks()
    expiry = clock.now() + 10 * TTL
    await source.fetch(request, 1, expiry, blocks)
    assert blocks.calls == [2 * BLOCK_SIZE, BLOCK_SIZE]  # 3 positions in batches of 2
    assert sum(blocks.calls) == request.ask.slot_size
    assert expiry_of(repo, cid) == expiry
    ours = slot_cids(manifest, request, 1)
    assert [manifest.block_cid(i) for i in (1, 4, 7)] == ours
    for c in manifest.block_cids():
        assert expiry_of(repo, c) == (expiry if c in ours else clock.now() + TTL)


async def test_padding_positions_count_as_slot_bytes_but_no_zero_block_is_stored(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 5, tail=1000)  # 3 slots of 2 blocks: slot 2 is block 2 + a zero block
    request = request_for(cid, manifest, slots=3)
    blocks = Blocks()
    await source.fetch(request, 2, clock.now() + 2 * TTL, blocks)
    assert sum(blocks.calls) == request.ask.slot_size == 2 * BLOCK_SIZE
    assert not repo.has_block(block_cid(ZERO_BLOCK))
    assert expiry_of(repo, manifest.block_cid(2)) == clock.now() + 2 * TTL


async def test_fetch_of_a_dataset_not_in_the_repo_fails_before_reporting_anything(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    other = Manifest.build(os.urandom(32) * 3, dataset_size=3 * BLOCK_SIZE)
    request = replace(request_for(cid, manifest, slots=3), content=Content(cid_bytes(other.cid()), bytes(32)))
    blocks = Blocks()
    with pytest.raises(SlotDataError, match="not in the repo"):
        await source.fetch(request, 0, clock.now() + 2 * TTL, blocks)
    assert blocks.calls == []
    assert list(repo.kv.iterate(HOLDS_PREFIX)) == []


async def test_a_missing_block_of_the_slot_is_named_and_the_batches_before_it_were_reported(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    # A manifest whose block 7 (slot 1, third position) was never stored.
    stored = [os.urandom(BLOCK_SIZE) for _ in range(9)]
    cids = [block_cid(b) for b in stored]
    await repo.put_blocks([(c, b) for i, (c, b) in enumerate(zip(cids, stored, strict=True)) if i != 7])
    manifest = Manifest.build(b"".join(c.digest for c in cids), dataset_size=9 * BLOCK_SIZE)
    encoded = manifest.encode()
    await repo.put_block(manifest_cid(encoded), encoded)
    request = request_for(manifest.cid(), manifest, slots=3)
    blocks = Blocks()
    with pytest.raises(SlotDataError, match=rf"block 7 of the dataset \({cids[7]}\)"):
        await source.fetch(request, 1, clock.now() + 2 * TTL, blocks)
    assert blocks.calls == [2 * BLOCK_SIZE]
    # The sale errors and its end lowers what the fetch raised (Downloading marks the blocks as the sale's).
    await source.lower_expiry(request, 1, clock.now())
    assert expiry_of(repo, manifest.cid()) == clock.now() + TTL
    assert list(repo.kv.iterate(HOLDS_PREFIX)) == []


async def test_a_request_whose_slot_size_does_not_fit_the_dataset_is_refused(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 6)
    request = request_for(cid, manifest, slots=3, slot_size=4 * BLOCK_SIZE)
    with pytest.raises(SlotDataError, match="slot"):
        await source.fetch(request, 0, clock.now() + TTL, Blocks())


async def test_content_that_is_not_a_manifest_cid_is_refused(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    raw = replace(request_for(cid, manifest, slots=3), content=Content(cid_bytes(manifest.block_cid(0)), bytes(32)))
    with pytest.raises(SlotDataError, match="not a manifest CID"):
        await source.fetch(raw, 0, clock.now() + TTL, Blocks())
    garbage = replace(raw, content=Content(b"\x01\x02\x03", bytes(32)))
    with pytest.raises(SlotDataError, match="not a CID"):
        await source.fetch(garbage, 0, clock.now() + TTL, Blocks())


# --- raising and lowering -----------------------------------------------------------------------------------------


async def test_lowering_never_goes_below_the_uploaders_ttl(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    request = request_for(cid, manifest, slots=3)
    base = clock.now() + TTL
    await source.fetch(request, 0, clock.now() + 60, Blocks())  # shorter than the TTL: nothing to raise
    await source.raise_expiry(request, 0, clock.now() + 5 * TTL)
    assert expiry_of(repo, cid) == clock.now() + 5 * TTL
    await source.lower_expiry(request, 0, clock.now() + 120)
    assert expiry_of(repo, cid) == base


async def test_lowering_goes_to_the_contract_end_when_that_outlives_the_upload(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    request = request_for(cid, manifest, slots=3)
    await source.fetch(request, 0, clock.now() + 600, Blocks())
    await source.raise_expiry(request, 0, clock.now() + 5 * TTL)
    await source.lower_expiry(request, 0, clock.now() + 2 * TTL)
    assert expiry_of(repo, cid) == clock.now() + 2 * TTL
    # Dataset blocks stay referenced by the manifest: the repo never lowers those, they go with the manifest.
    assert expiry_of(repo, manifest.block_cid(0)) == clock.now() + 5 * TTL


async def test_one_sale_ending_keeps_the_dataset_for_another_sale_of_it(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 6)
    first = request_for(cid, manifest, slots=3)
    second = request_for(cid, manifest, slots=2)  # other request, same content, overlapping blocks
    await source.fetch(first, 0, clock.now() + 4 * TTL, Blocks())
    await source.fetch(second, 0, clock.now() + 8 * TTL, Blocks())
    await source.fetch(first, 1, clock.now() + 6 * TTL, Blocks())
    await source.lower_expiry(second, 0, clock.now() + TTL)
    assert expiry_of(repo, cid) == clock.now() + 6 * TTL  # first's slot 1 still holds it
    await source.lower_expiry(first, 1, clock.now() + TTL)
    assert expiry_of(repo, cid) == clock.now() + 4 * TTL
    await source.lower_expiry(first, 0, clock.now() + 2 * TTL)
    assert expiry_of(repo, cid) == clock.now() + 2 * TTL
    assert list(repo.kv.iterate("meta/sales/hold")) == []


async def test_holds_are_persisted_so_a_restarted_node_lowers_correctly(repo: RepoStore, clock: FakeClock) -> None:
    cid, manifest = await upload(repo, 3)
    first, second = request_for(cid, manifest, slots=3), request_for(cid, manifest, slots=3)
    await LocalSlotDataSource(repo).fetch(first, 0, clock.now() + 4 * TTL, Blocks())
    await LocalSlotDataSource(repo).fetch(second, 2, clock.now() + 3 * TTL, Blocks())
    restarted = LocalSlotDataSource(repo)
    await restarted.lower_expiry(first, 0, clock.now())
    assert expiry_of(repo, cid) == clock.now() + 3 * TTL


async def test_a_sale_that_never_raised_anything_lowers_nothing(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    request = request_for(cid, manifest, slots=3)
    await source.fetch(request, 0, clock.now() + 4 * TTL, Blocks())
    other = request_for(cid, manifest, slots=3)
    await source.lower_expiry(other, 0, clock.now())
    assert expiry_of(repo, cid) == clock.now() + 4 * TTL


async def test_holds_already_past_are_dropped_and_hold_nothing(
    repo: RepoStore, source: LocalSlotDataSource, clock: FakeClock
) -> None:
    cid, manifest = await upload(repo, 3)
    crashed = request_for(cid, manifest, slots=3)  # its sale's end never ran (e.g. a crash)
    live = request_for(cid, manifest, slots=3)
    await source.fetch(crashed, 0, clock.now() + 2 * TTL, Blocks())
    await source.fetch(live, 0, clock.now() + 3 * TTL, Blocks())
    clock.set(clock.now() + 2 * TTL)
    await source.lower_expiry(live, 0, clock.now() + 60)
    assert list(repo.kv.iterate(HOLDS_PREFIX)) == []
    assert expiry_of(repo, cid) == clock.now() + 60


def test_lowered_expiry_is_the_largest_need() -> None:
    assert lowered_expiry(10, [], None) == 10
    assert lowered_expiry(10, [30, 20], 5) == 30
    assert lowered_expiry(10, [], 50) == 50
