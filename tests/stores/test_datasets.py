from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from conftest import MakeRepo
from repo_invariants import check_invariants

from codex_node.data.cid import block_cid
from codex_node.data.manifest import BLOCK_SIZE, Manifest, tree_cid
from codex_node.errors import CorruptBlockError, QuotaNotEnoughError, ValidationError
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore


async def _chunks(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _read_all(repo: RepoStore, manifest: Manifest) -> bytes:
    return b"".join([chunk async for chunk in repo.iter_dataset(manifest)])


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 5 * BLOCK_SIZE + 7])
async def test_round_trip_is_byte_identical(make_repo: MakeRepo, size: int) -> None:
    repo = make_repo()
    data = os.urandom(size)
    cid = await store_dataset(repo, _chunks(data), group_blocks=2)
    manifest = await repo.get_manifest(cid)
    assert manifest.info.dataset_size == size
    assert manifest.block_count == -(-size // BLOCK_SIZE)
    assert await _read_all(repo, manifest) == data
    check_invariants(repo)


async def test_manifest_records_sizes_names_and_the_tree_over_block_digests(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = b"x" * BLOCK_SIZE + b"tail"
    cid = await store_dataset(repo, _chunks(data), filename="a.txt", mimetype="text/plain")
    manifest = await repo.get_manifest(cid)
    assert list(manifest.block_cids()) == [block_cid(data[:BLOCK_SIZE]), block_cid(b"tail")]
    assert manifest.info.tree_cid == tree_cid(manifest.block_digests)
    assert (manifest.info.filename, manifest.info.mimetype, manifest.info.block_size) == (
        "a.txt",
        "text/plain",
        BLOCK_SIZE,
    )
    assert repo.manifests() == [(cid, manifest.info)]


async def test_data_blocks_and_manifest_get_the_same_ttl(make_repo: MakeRepo) -> None:
    repo = make_repo(ttl=3600)
    cid = await store_dataset(repo, _chunks(b"abc" * 30_000), ttl=77)
    manifest = await repo.get_manifest(cid)
    expiries = {repo.block_meta(c).expiry for c in [cid, *manifest.block_cids()]}  # type: ignore[union-attr]
    assert expiries == {repo.clock.now() + 77}


async def test_blocks_are_committed_while_the_body_still_streams(make_repo: MakeRepo) -> None:
    repo = make_repo()
    used_midway: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(40):
            if i == 9:
                # With one group in flight, the first (4 blocks) was awaited when the second one filled up.
                used_midway.append(repo.quota().used)
            yield os.urandom(BLOCK_SIZE)

    await store_dataset(repo, body(), group_blocks=4, groups_in_flight=1)
    assert used_midway == [4 * BLOCK_SIZE]


async def test_same_bytes_twice_give_the_same_cid_and_share_blocks(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = os.urandom(3 * BLOCK_SIZE)
    first = await store_dataset(repo, _chunks(data))
    used = repo.quota().used
    second = await store_dataset(repo, _chunks(data))
    assert first == second
    assert repo.quota().used == used
    # One dataset, so one reference per block: deleting it once must free everything.
    assert repo.block_meta(block_cid(data[:BLOCK_SIZE])).ref_count == 1  # type: ignore[union-attr]
    await repo.del_block(second)
    assert repo.total_blocks == 0
    check_invariants(repo)


async def test_repeated_blocks_within_one_dataset_are_stored_once(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid = await store_dataset(repo, _chunks(bytes(10 * BLOCK_SIZE)), group_blocks=3)
    zero = block_cid(bytes(BLOCK_SIZE))
    assert repo.block_meta(zero).ref_count == 10  # type: ignore[union-attr]
    assert repo.total_blocks == 2  # the zero block and the manifest
    await repo.del_block(cid)
    assert repo.total_blocks == 0
    check_invariants(repo)


async def test_over_quota_upload_leaves_no_block_behind(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=10 * BLOCK_SIZE)
    await repo.put_block(block_cid(b"keep"), b"keep")
    before = repo.quota()
    with pytest.raises(QuotaNotEnoughError):
        await store_dataset(repo, _chunks(os.urandom(20 * BLOCK_SIZE)), group_blocks=3)
    assert repo.quota() == before
    assert repo.total_blocks == 1
    check_invariants(repo)


async def test_stream_failure_midway_leaves_no_block_behind(make_repo: MakeRepo) -> None:
    repo = make_repo()

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield os.urandom(BLOCK_SIZE)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store_dataset(repo, broken(), group_blocks=2)
    assert repo.quota().used == 0
    assert repo.total_blocks == 0
    check_invariants(repo)


async def test_cancelled_upload_leaves_no_block_behind(make_repo: MakeRepo) -> None:
    repo = make_repo()
    stalled = asyncio.Event()

    async def stalls_after_two_groups() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield os.urandom(BLOCK_SIZE)
        stalled.set()
        await asyncio.get_running_loop().create_future()  # a client that stops sending
        yield b""

    task = asyncio.create_task(store_dataset(repo, stalls_after_two_groups(), group_blocks=2, groups_in_flight=1))
    await stalled.wait()
    assert repo.quota().used >= 2 * BLOCK_SIZE
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert repo.total_blocks == 0
    check_invariants(repo)


async def test_failed_upload_keeps_blocks_other_datasets_and_standalone_puts_hold(make_repo: MakeRepo) -> None:
    repo = make_repo(quota_max=8 * BLOCK_SIZE)
    shared = os.urandom(BLOCK_SIZE)
    kept = await store_dataset(repo, _chunks(shared))
    standalone = os.urandom(BLOCK_SIZE)
    await repo.put_block(block_cid(standalone), standalone)
    with pytest.raises(QuotaNotEnoughError):
        await store_dataset(repo, _chunks(shared + standalone + os.urandom(10 * BLOCK_SIZE)), group_blocks=2)
    assert await _read_all(repo, await repo.get_manifest(kept)) == shared
    assert await repo.get_block(block_cid(standalone)) == standalone
    check_invariants(repo)


async def test_deleting_a_dataset_removes_its_blocks_and_gives_the_quota_back(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid = await store_dataset(repo, _chunks(os.urandom(4 * BLOCK_SIZE)))
    await repo.del_block(cid)
    assert repo.quota().used == 0
    assert repo.total_blocks == 0
    assert repo.manifests() == []
    check_invariants(repo)


async def test_deleting_one_of_two_datasets_sharing_blocks_keeps_the_other_whole(make_repo: MakeRepo) -> None:
    repo = make_repo()
    common = os.urandom(2 * BLOCK_SIZE)
    a = await store_dataset(repo, _chunks(common + b"A"))
    b = await store_dataset(repo, _chunks(common + b"B"))
    await repo.del_block(a)
    assert await _read_all(repo, await repo.get_manifest(b)) == common + b"B"
    check_invariants(repo)


async def test_deleting_a_dataset_keeps_a_standalone_copy_of_its_block(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = os.urandom(BLOCK_SIZE)
    await repo.put_block(block_cid(data), data)
    cid = await store_dataset(repo, _chunks(data))
    await repo.del_block(cid)
    assert await repo.get_block(block_cid(data)) == data
    check_invariants(repo)


async def test_a_block_of_a_dataset_cannot_be_deleted_on_its_own(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = os.urandom(BLOCK_SIZE)
    await store_dataset(repo, _chunks(data))
    with pytest.raises(ValidationError, match="part of a dataset"):
        await repo.del_block(block_cid(data))


async def test_get_manifest_of_a_raw_block_cid_is_refused(make_repo: MakeRepo) -> None:
    repo = make_repo()
    await repo.put_block(block_cid(b"x"), b"x")
    with pytest.raises(ValidationError):
        await repo.get_manifest(block_cid(b"x"))


async def test_concurrent_uploads_of_the_same_bytes_make_one_dataset(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = os.urandom(6 * BLOCK_SIZE)
    cids = await asyncio.gather(*(store_dataset(repo, _chunks(data), group_blocks=2) for _ in range(3)))
    assert len(set(cids)) == 1
    assert await _read_all(repo, await repo.get_manifest(cids[0])) == data
    check_invariants(repo)
    await repo.del_block(cids[0])
    assert repo.total_blocks == 0


async def test_reading_a_dataset_with_a_truncated_block_reports_corruption(make_repo: MakeRepo) -> None:
    repo = make_repo()
    data = os.urandom(2 * BLOCK_SIZE)
    manifest = await repo.get_manifest(await store_dataset(repo, _chunks(data)))
    metas = [repo.block_meta(manifest.block_cid(i)) for i in range(2)]
    meta = max((m for m in metas if m is not None), key=lambda m: m.offset)
    os.truncate(repo.files.pack_path(meta.pack), meta.offset + 100)  # the pack was cut inside its last block
    with pytest.raises(CorruptBlockError, match="100 bytes"):
        await _read_all(repo, manifest)


async def test_reading_a_dataset_with_a_lost_block_file_reports_corruption(make_repo: MakeRepo) -> None:
    repo = make_repo()
    manifest = await repo.get_manifest(await store_dataset(repo, _chunks(os.urandom(2 * BLOCK_SIZE))))
    meta = repo.block_meta(manifest.block_cid(1))
    assert meta is not None
    repo.files.pack_path(meta.pack).unlink()
    with pytest.raises(CorruptBlockError, match="no file"):
        await _read_all(repo, manifest)
