from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from conftest import MakeRepo
from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from prometheus_client.registry import REGISTRY
from repo_invariants import check_invariants

from codex_node.data.cid import CODEX_ROOT, SHA2_256, block_cid, make_cid
from codex_node.errors import (
    BlockNotFoundError,
    CorruptBlockError,
    KVError,
    QuotaNotEnoughError,
    QuotaUnderflowError,
    ValidationError,
)
from codex_node.stores.blockfiles import BlockFiles, SyncMode
from codex_node.stores.kv import LevelDBStore
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.quota import Quota
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

A = b"a" * 1000
B = b"b" * 2000


async def test_put_block_stores_bytes_and_counts_quota(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid = block_cid(A)
    assert await repo.put_block(cid, A) is True
    assert repo.has_block(cid)
    assert await repo.get_block(cid) == A
    assert repo.quota().used == len(A)
    assert repo.total_blocks == 1
    check_invariants(repo)


async def test_put_block_twice_counts_once_and_keeps_the_later_expiry(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=100)
    cid = block_cid(A)
    await repo.put_block(cid, A, ttl=1000)
    assert await repo.put_block(cid, A, ttl=10) is False
    meta = repo.block_meta(cid)
    assert meta is not None
    assert meta.expiry == clock.now() + 1000
    clock.advance(5000)
    await repo.put_block(cid, A)
    meta = repo.block_meta(cid)
    assert meta is not None
    assert meta.expiry == clock.now() + 100
    assert repo.quota().used == len(A)
    assert repo.total_blocks == 1


async def test_put_block_with_data_not_matching_the_cid_is_refused(make_repo: MakeRepo) -> None:
    repo = make_repo()
    with pytest.raises(CorruptBlockError):
        await repo.put_block(block_cid(A), B)
    assert not repo.has_block(block_cid(A))
    assert repo.quota().used == 0
    check_invariants(repo)


async def test_put_block_under_a_tree_root_cid_is_refused(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid = make_cid(CODEX_ROOT, SHA2_256, block_cid(A).digest)
    with pytest.raises(ValidationError):
        await repo.put_block(cid, A)


async def test_put_block_over_quota_stores_nothing(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=1500)
    await repo.put_block(block_cid(A), A)
    files = list(repo.files.iter_files())
    with pytest.raises(QuotaNotEnoughError):
        await repo.put_block(block_cid(B), B)
    assert not repo.has_block(block_cid(B))
    assert list(repo.files.iter_files()) == files  # refused before a byte was written
    assert repo.quota().used == len(A)
    check_invariants(repo)


async def test_quota_can_be_filled_exactly(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=len(A) + len(B))
    await repo.put_blocks([(block_cid(A), A), (block_cid(B), B)])
    assert repo.quota().available == 0


async def test_reserve_and_release_change_reserved_and_persist(make_repo: MakeRepo, kv: MemoryKV) -> None:
    repo = make_repo(quota_max=10_000)
    assert repo.reserve(4000) == Quota(10_000, 0, 4000)
    assert repo.release(1000) == Quota(10_000, 0, 3000)
    repo2 = make_repo(kv, quota_max=10_000)
    assert repo2.quota() == Quota(10_000, 0, 3000)


async def test_reserve_beyond_available_is_refused(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=10_000)
    await repo.put_block(block_cid(A), A)
    with pytest.raises(QuotaNotEnoughError):
        repo.reserve(10_000 - len(A) + 1)
    assert repo.quota().reserved == 0


async def test_releasing_more_than_reserved_is_refused(make_repo: MakeRepo) -> None:
    repo = make_repo()
    repo.reserve(10)
    with pytest.raises(QuotaUnderflowError):
        repo.release(11)
    assert repo.quota().reserved == 10


async def test_reserved_bytes_leave_no_room_for_blocks(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=1500)
    repo.reserve(1000)
    with pytest.raises(QuotaNotEnoughError):
        await repo.put_block(block_cid(A), A)


async def test_commit_with_quota_writes_the_callers_records_with_the_quota(make_repo: MakeRepo, kv: MemoryKV) -> None:
    repo = make_repo(quota_max=1000)
    batch = kv.batch()
    batch.put("meta/sales/x", b"1")
    quota = repo.commit_with_quota(batch, 600)
    assert quota.reserved == 600
    assert kv.get("meta/sales/x") == b"1"
    refused = kv.batch()
    refused.put("meta/sales/y", b"1")
    with pytest.raises(QuotaNotEnoughError):
        repo.commit_with_quota(refused, 401)
    assert kv.get("meta/sales/y") is None
    assert repo.quota().reserved == 600


async def test_commit_with_quota_leaves_the_cache_alone_when_the_write_fails(make_repo: MakeRepo, kv: MemoryKV) -> None:
    repo = make_repo()
    kv.fail_next_write()
    with pytest.raises(KVError):
        repo.commit_with_quota(kv.batch(), 5)
    assert repo.quota().reserved == 0
    check_invariants(repo)


async def test_put_blocks_can_move_reserved_bytes_to_used_when_the_quota_is_full(
    make_repo: MakeRepo, kv: MemoryKV
) -> None:
    repo = make_repo(quota_max=3000)
    repo.reserve(3000)
    batch = kv.batch()
    batch.put("meta/sales/reservation", b"shrunk")
    added = await repo.put_blocks([(block_cid(A), A), (block_cid(B), B)], batch=batch, reserved_delta=-3000)
    assert added == 3000
    assert repo.quota() == Quota(3000, 3000, 0)
    assert kv.get("meta/sales/reservation") == b"shrunk"
    check_invariants(repo)


async def test_changed_quota_max_is_persisted_on_reopen(make_repo: MakeRepo, kv: MemoryKV) -> None:
    make_repo(quota_max=1000).reserve(100)
    repo = make_repo(kv, quota_max=5000)
    assert repo.quota() == Quota(5000, 0, 100)
    assert make_repo(kv, quota_max=5000).quota() == Quota(5000, 0, 100)


async def test_ensure_expiry_never_lowers(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=100)
    cid = block_cid(A)
    await repo.put_block(cid, A)
    repo.ensure_expiry(cid, clock.now() + 50)
    assert repo.block_meta(cid).expiry == clock.now() + 100  # type: ignore[union-attr]
    repo.ensure_expiry(cid, clock.now() + 500)
    assert repo.block_meta(cid).expiry == clock.now() + 500  # type: ignore[union-attr]


async def test_set_expiry_lowers_a_standalone_block(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=10_000)
    cid = block_cid(A)
    await repo.put_block(cid, A)
    repo.set_expiry(cid, clock.now() + 5)
    assert repo.block_meta(cid).expiry == clock.now() + 5  # type: ignore[union-attr]


async def test_expiry_changes_of_a_missing_block_raise_not_found(make_repo: MakeRepo) -> None:
    repo = make_repo()
    with pytest.raises(BlockNotFoundError):
        repo.set_expiry(block_cid(A), 1)
    with pytest.raises(BlockNotFoundError):
        repo.ensure_expiry(block_cid(A), 1)


async def test_expiry_many_skips_missing_blocks_and_counts_found(make_repo: MakeRepo, clock: FakeClock) -> None:
    repo = make_repo(ttl=100)
    await repo.put_block(block_cid(A), A)
    assert await repo.set_expiry_many([block_cid(A), block_cid(B)], clock.now() + 1) == 1
    assert repo.block_meta(block_cid(A)).expiry == clock.now() + 1  # type: ignore[union-attr]
    assert await repo.ensure_expiry_many([block_cid(A), block_cid(B)], clock.now() + 9) == 1
    assert repo.block_meta(block_cid(A)).expiry == clock.now() + 9  # type: ignore[union-attr]


async def test_del_block_removes_file_metadata_and_quota(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await repo.put_blocks([(block_cid(A), A), (block_cid(B), B)])
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    await repo.del_block(block_cid(A))
    assert not repo.has_block(block_cid(A))
    pack = repo.pack_records()[meta.pack]
    assert (pack.count, pack.live) == (1, len(B))  # only the index changed: A's bytes are the pack's dead bytes
    assert pack.dead > len(A)
    assert repo.quota().used == len(B)
    assert repo.total_blocks == 1
    check_invariants(repo)


async def test_del_block_of_unknown_cid_raises_not_found(make_repo: MakeRepo) -> None:
    with pytest.raises(BlockNotFoundError):
        await make_repo().del_block(block_cid(A))


async def test_get_block_of_unknown_cid_raises_not_found(make_repo: MakeRepo) -> None:
    with pytest.raises(BlockNotFoundError):
        await make_repo().get_block(block_cid(A))


async def test_read_blocks_into_fills_each_view_and_says_which_were_read(make_repo: MakeRepo) -> None:
    repo = make_repo()
    c = b"c" * 1500
    await repo.put_blocks([(block_cid(A), A), (block_cid(B), B), (block_cid(c), c)])
    buffer = bytearray(b"?" * (len(A) + 10 + len(B) + 7 + len(c)))
    view = memoryview(buffer)
    dests = [view[0 : len(A)], view[len(A) : len(A) + 10], view[len(A) + 10 : len(A) + 10 + len(B)], view[-7:]]
    cids = [block_cid(A), block_cid(b"not here"), block_cid(B), block_cid(c)]  # c's view is of the wrong size
    assert repo.read_blocks_into(cids, dests) == [True, False, True, False]
    assert bytes(dests[0]) == A
    assert bytes(dests[2]) == B
    assert bytes(dests[1]) == b"?" * 10  # views of blocks not read are left as they were
    assert bytes(dests[3]) == b"?" * 7
    with pytest.raises(ValueError, match="one destination per CID"):
        repo.read_blocks_into(cids, dests[:2])


async def test_read_blocks_gives_each_block_in_order_and_hashes_them_unless_told_not_to(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await repo.put_blocks([(block_cid(A), A), (block_cid(B), B)])
    cids = [block_cid(B), block_cid(b"not here"), block_cid(A), block_cid(B)]
    assert [None if v is None else bytes(v) for v in repo.read_blocks(cids)] == [B, None, A, B]
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    fd = os.open(repo.files.pack_path(meta.pack), os.O_WRONLY)
    os.pwrite(fd, b"x", meta.offset)  # A rots on disk
    os.close(fd)
    with pytest.raises(CorruptBlockError, match="does not match its CID"):
        repo.read_blocks(cids)
    read = repo.read_blocks(cids, check=False)  # for a caller that checks what it makes of them
    assert read[2] is not None
    assert bytes(read[2]) == b"x" + A[1:]


async def test_get_block_detects_a_corrupted_file(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await repo.put_block(block_cid(A), A)
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    fd = os.open(repo.files.pack_path(meta.pack), os.O_WRONLY)
    os.pwrite(fd, B[: len(A)], meta.offset)
    os.close(fd)
    with pytest.raises(CorruptBlockError):
        await repo.get_block(block_cid(A))


async def test_get_block_reports_a_missing_file_as_corruption(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await repo.put_block(block_cid(A), A)
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    repo.files.pack_path(meta.pack).unlink()
    with pytest.raises(CorruptBlockError, match="no file"):
        await repo.get_block(block_cid(A))
    with pytest.raises(CorruptBlockError, match="no file"):  # and to a peer's batch (api/routes/blocks.py)
        repo.read_blocks_into([block_cid(A)], [memoryview(bytearray(len(A)))])


async def test_failed_metadata_write_leaves_no_file_behind(make_repo: MakeRepo, kv: MemoryKV) -> None:
    repo = make_repo()
    kv.fail_next_write(after=1)  # the new pack's record goes through, the metadata batch fails
    with pytest.raises(KVError):
        await repo.put_block(block_cid(A), A)
    assert not repo.has_block(block_cid(A))
    assert list(repo.files.iter_files()) == []  # the pack it went to holds no block: deleted at once
    assert repo.quota().used == 0
    check_invariants(repo)


async def test_recovery_cuts_a_pack_tail_no_index_entry_covers(make_repo: MakeRepo, kv: MemoryKV) -> None:
    repo = make_repo()
    await repo.put_block(block_cid(A), A)
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    path = repo.files.pack_path(meta.pack)
    committed = path.stat().st_size
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"half a record a kill left")
    os.close(fd)
    repo.close()
    repo2 = make_repo(kv)
    assert path.stat().st_size == committed
    assert await repo2.get_block(block_cid(A)) == A
    check_invariants(repo2)


async def test_recovery_deletes_a_pack_no_index_entry_points_into(tmp_path: Path, clock: FakeClock) -> None:
    kv, switch = MemoryKV(), CrashSwitch()
    repo = RepoStore(
        CrashingKV(kv, switch), CrashingFiles(tmp_path, switch), clock=clock, quota_max=1 << 20, block_ttl=60
    )
    await repo.put_block(block_cid(A), A)
    # B goes to a pack of its own (another expiry bucket): record, file, two halves of the append, flush, then
    # the kill, at the batch with B's index entry.
    switch.arm(5)
    with pytest.raises(SimulatedCrashError) as crash:
        await repo.put_block(block_cid(B), B, ttl=10**8)
    assert "crash at kv batch" in str(crash.value.__context__ or crash.value)
    repo.files.close()
    assert sorted(size > 0 for _, size in repo.files.iter_files()) == [True, True]
    repo2 = RepoStore(kv, BlockFiles(tmp_path, sync="none"), clock=clock, quota_max=1 << 20, block_ttl=60)
    assert [name for name, _ in repo2.files.iter_files()] == [repo2.files.pack_path(1).name]
    assert not repo2.has_block(block_cid(B))
    check_invariants(repo2)
    repo2.close()


async def test_a_block_deleted_by_a_kill_between_unlink_and_record_is_finished_at_start(
    make_repo: MakeRepo, kv: MemoryKV
) -> None:
    repo = make_repo()
    await repo.put_block(block_cid(A), A)
    meta = repo.block_meta(block_cid(A))
    assert meta is not None
    kv.fail_next_write(after=1)  # the entry's removal goes through; the empty pack's record stays
    with pytest.raises(KVError):
        await repo.del_block(block_cid(A))
    repo.close()
    assert not repo.files.pack_path(meta.pack).exists()
    repo2 = make_repo(kv)
    assert repo2.pack_records() == {}
    check_invariants(repo2)


async def test_concurrent_puts_of_the_same_block_count_it_once(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid = block_cid(A)
    results = await asyncio.gather(*(repo.put_block(cid, A) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
    assert repo.quota().used == len(A)
    check_invariants(repo)


@pytest.mark.parametrize("sync", ["syncfs", "fsync", "none"])
async def test_store_survives_reopen_on_leveldb_with_each_flush_mode(
    tmp_path: Path, clock: FakeClock, sync: SyncMode
) -> None:
    def open_repo(kv: LevelDBStore) -> RepoStore:
        files = BlockFiles(tmp_path / "repo", sync=sync)
        return RepoStore(kv, files, clock=clock, quota_max=1 << 20, block_ttl=60, registry=None)

    kv = LevelDBStore(tmp_path / "meta")
    repo = open_repo(kv)
    await repo.put_blocks([(block_cid(A), A), (block_cid(B), B)])
    await repo.del_block(block_cid(A))
    repo.close()
    kv.close()

    kv = LevelDBStore(tmp_path / "meta")
    repo = open_repo(kv)
    assert await repo.get_block(block_cid(B)) == B
    assert not repo.has_block(block_cid(A))
    check_invariants(repo)
    repo.close()
    kv.close()


def test_a_repo_or_maintainer_given_no_registry_registers_no_metrics_anywhere(tmp_path: Path) -> None:
    clock = FakeClock()
    for quota in (1 << 20, 2 << 20):  # two stores in one process: no clash, nothing on the process-wide registry
        repo = RepoStore(MemoryKV(), BlockFiles(tmp_path / str(quota)), clock=clock, quota_max=quota, block_ttl=60)
        BlockMaintainer(repo, clock)
    assert REGISTRY.get_sample_value("codex_repostore_bytes_max") is None
    assert REGISTRY.get_sample_value("codex_maintenance_passes_total") is None
