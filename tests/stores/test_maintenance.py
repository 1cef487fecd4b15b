from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import MakeRepo
from prometheus_client import CollectorRegistry
from repo_invariants import check_invariants

from codex_node.data.cid import block_cid, parse_cid
from codex_node.data.manifest import BLOCK_SIZE
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.blockmeta import TTL_PREFIX
from codex_node.stores.datasets import store_dataset
from codex_node.stores.kv import WriteBatch, batch_ops
from codex_node.stores.maintenance import CURSOR_KEY, BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _maintainer(repo: RepoStore, clock: FakeClock, **kw: int) -> BlockMaintainer:
    return BlockMaintainer(repo, clock, registry=None, **kw)


async def _put_standalone(repo: RepoStore, n: int, ttl: int) -> list[bytes]:
    blocks = [os.urandom(100) for _ in range(n)]
    await repo.put_blocks([(block_cid(b), b) for b in blocks], ttl=ttl)
    return blocks


async def test_expired_dataset_is_deleted_and_quota_returns(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=2)
    cid = await store_dataset(repo, _chunks(os.urandom(3 * BLOCK_SIZE + 5)))
    m = _maintainer(repo, clock, batch_size=100)
    clock.advance(1)
    assert await m.run_pass() == 0
    assert repo.has_block(cid)
    clock.advance(1)
    await m.run_pass()
    assert not repo.has_block(cid)
    assert repo.quota().used == 0
    assert repo.total_blocks == 0
    check_invariants(repo)


async def test_unexpired_blocks_are_kept(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo()
    await _put_standalone(repo, 3, ttl=100)
    await _put_standalone(repo, 2, ttl=10)
    clock.advance(50)
    assert await _maintainer(repo, clock).run_pass() == 2
    assert repo.total_blocks == 3


async def test_referenced_expired_block_waits_for_its_manifest(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=10)
    data = os.urandom(BLOCK_SIZE)
    cid = await store_dataset(repo, _chunks(data))
    repo.ensure_expiry(cid, clock.now() + 1000)  # keeping the manifest keeps the dataset
    clock.advance(20)
    await _maintainer(repo, clock).run_pass()
    assert repo.has_block(block_cid(data))
    assert b"".join([c async for c in repo.iter_dataset(await repo.get_manifest(cid))]) == data


async def test_lowered_expiry_lets_maintenance_reclaim_a_sales_block(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=30 * 24 * 3600)
    (block,) = await _put_standalone(repo, 1, ttl=30 * 24 * 3600)
    repo.set_expiry(block_cid(block), clock.now() + 60)  # the sale ended: back to the contract end
    clock.advance(61)
    assert await _maintainer(repo, clock).run_pass() == 1
    assert repo.quota().used == 0


async def test_a_pass_examines_at_most_batch_size_blocks_and_remembers_its_place(
    make_repo: MakeRepo, clock: FakeClock, kv: MemoryKV
) -> None:
    repo = make_repo()
    await _put_standalone(repo, 7, ttl=1)
    clock.advance(5)
    m = _maintainer(repo, clock, batch_size=3)
    assert await m.run_pass() == 3
    first_cursor = m.cursor
    assert first_cursor is not None
    assert kv.get(CURSOR_KEY) == first_cursor.encode()
    assert await m.run_pass() == 3
    assert m.cursor is not None
    assert m.cursor > first_cursor
    assert await m.run_pass() == 1
    assert m.cursor is None  # short page: cycle completed
    assert m.cycles == 1
    assert repo.total_blocks == 0


async def test_a_restarted_maintainer_resumes_after_the_persisted_cursor(
    make_repo: MakeRepo, clock: FakeClock, kv: MemoryKV
) -> None:
    repo = make_repo()
    blocks = await _put_standalone(repo, 6, ttl=1000)
    m = _maintainer(repo, clock, batch_size=2)
    await m.run_pass()  # examines the first two (key order), deletes nothing
    ordered = sorted(block_cid(b).text for b in blocks)
    assert m.cursor == ordered[1]
    repo.ensure_expiry(parse_cid(ordered[0]), clock.now() + 10**6)  # keeps the pack from going whole
    clock.advance(2000)  # now everything else is expired
    restarted = _maintainer(make_repo(kv), clock, batch_size=2)
    assert await restarted.run_pass() == 2
    assert {c.text for c, _ in repo.expiry_page(None, 10)} == set(ordered[:2]) | set(ordered[4:])


async def test_cycle_starts_over_and_finds_blocks_that_expired_behind_the_cursor(
    make_repo: MakeRepo, clock: FakeClock
) -> None:
    repo = make_repo()
    await _put_standalone(repo, 4, ttl=1000)
    m = _maintainer(repo, clock, batch_size=3)
    await m.run_pass()
    await m.run_pass()
    assert m.cycles == 1
    clock.advance(2000)
    await m.run_pass()
    await m.run_pass()
    assert repo.total_blocks == 0


async def test_running_maintainer_passes_on_each_interval_of_the_clock(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo()
    await _put_standalone(repo, 2, ttl=5)
    passed = asyncio.Event()

    class Observed(BlockMaintainer):
        async def run_pass(self) -> int:
            n = await super().run_pass()
            passed.set()
            return n

    m = Observed(repo, clock, interval=10, registry=None)
    await m.start()
    try:
        await _until_waiting(clock)
        clock.advance(10)
        await passed.wait()
        assert m.passes == 1
        assert repo.total_blocks == 0
        passed.clear()
        await _until_waiting(clock)
        clock.advance(9)
        await asyncio.sleep(0)
        assert not passed.is_set()
        clock.advance(1)
        await passed.wait()
        assert m.passes == 2
    finally:
        await m.stop()
    assert clock.waiters == 0


async def _until_waiting(clock: FakeClock) -> None:
    """Let the maintainer's task run until it waits on the clock (a handful of loop turns)."""
    for _ in range(100):
        if clock.waiters:
            return
        await asyncio.sleep(0)
    raise AssertionError("the maintainer never waited on the clock")


async def test_metrics_count_passes_and_deletions(make_repo: MakeRepo, clock: FakeClock) -> None:
    registry = CollectorRegistry()
    repo = make_repo()
    await _put_standalone(repo, 3, ttl=1)
    m = BlockMaintainer(repo, clock, registry=registry)
    clock.advance(2)
    await m.run_pass()
    await m.run_pass()
    assert registry.get_sample_value("codex_maintenance_passes_total") == 2
    assert registry.get_sample_value("codex_maintenance_deleted_blocks_total") == 3
    m.close()
    assert registry.get_sample_value("codex_maintenance_passes_total") is None


def test_non_positive_settings_are_refused(make_repo: MakeRepo, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="positive"):
        _maintainer(make_repo(), clock, interval=0)


async def test_a_sealed_pack_whose_blocks_all_expired_is_deleted_whole_in_one_batch(
    make_repo: MakeRepo, clock: FakeClock, tmp_path: Path
) -> None:
    kv = _CountingKV()
    repo = make_repo(kv, files=BlockFiles(tmp_path / "packs", sync="none", bucket_seconds=3600))
    slot = await _put_standalone(repo, 40, ttl=100)  # one slot's data: one expiry, one pack
    meta = repo.block_meta(block_cid(slot[0]))
    assert meta is not None
    keep = await _put_standalone(repo, 2, ttl=10 * 3600)  # another bucket, another pack
    clock.advance(3600)  # the slot's bucket has passed: its pack gets sealed
    kv.index_batches = 0
    m = _maintainer(repo, clock, batch_size=1)  # the page walk sees one block: the pack goes by the pack step
    assert await m.run_pass() == 40
    assert kv.index_batches == 1  # forty entries, one step
    assert not repo.files.pack_path(meta.pack).exists()
    assert meta.pack not in repo.pack_records()
    assert m.deleted_packs == 1
    assert repo.total_blocks == 2
    assert repo.quota().used == sum(len(b) for b in keep)
    check_invariants(repo)


async def test_a_pack_with_a_block_still_wanted_is_not_deleted_whole(
    make_repo: MakeRepo, clock: FakeClock, tmp_path: Path
) -> None:
    repo = make_repo(files=BlockFiles(tmp_path / "packs", sync="none", bucket_seconds=3600))
    slot = await _put_standalone(repo, 4, ttl=100)
    repo.ensure_expiry(block_cid(slot[0]), clock.now() + 5000)  # a sale extended one block
    clock.advance(3600)
    m = _maintainer(repo, clock, batch_size=100)
    assert await m.run_pass() == 3  # by the page walk, block by block
    assert m.deleted_packs == 0
    assert await repo.get_block(block_cid(slot[0])) == slot[0]
    check_invariants(repo)


class _CountingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.index_batches = 0

    def write(self, batch: WriteBatch) -> None:
        if any(key.startswith(TTL_PREFIX) for key, _ in batch_ops(batch)):
            self.index_batches += 1
        super().write(batch)


async def test_an_expired_dataset_in_a_sealed_pack_goes_with_its_manifest_not_by_the_pack_step(
    make_repo: MakeRepo, clock: FakeClock, tmp_path: Path
) -> None:
    repo = make_repo(ttl=10, files=BlockFiles(tmp_path / "packs", sync="none", bucket_seconds=3600))
    cid = await store_dataset(repo, _chunks(os.urandom(3 * BLOCK_SIZE)))
    clock.advance(3600)  # sealed, and everything expired: but the blocks are referenced by the manifest
    assert await repo.delete_expired_packs(clock.now()) == (0, 0)
    await _maintainer(repo, clock, batch_size=100).run_pass()
    assert not repo.has_block(cid)
    assert repo.total_blocks == 0
    assert list(repo.files.iter_files()) == []
    check_invariants(repo)
