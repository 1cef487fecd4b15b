"""Blocks in append-only pack files (issue 13 item 1): grouping by expiry bucket, sealing, the order of durability,
positioned reads, and a start-up that reads neither the index nor a folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from repo_invariants import check_invariants

from codex_node.data.cid import block_cid
from codex_node.data.manifest import Manifest
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.blockmeta import LAYOUT_KEY, LAYOUT_PACKS, TTL_PREFIX
from codex_node.stores.datasets import store_dataset
from codex_node.stores.kv import WriteBatch, batch_ops
from codex_node.stores.quota import QUOTA_KEY
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

DAY = 24 * 3600


def _blocks(n: int, tag: bytes = b"") -> list[tuple[Any, bytes]]:
    out = []
    for i in range(n):
        data = tag + i.to_bytes(4, "big") * 250
        out.append((block_cid(data), data))
    return out


def _open(kv: MemoryKV, files: BlockFiles, clock: FakeClock) -> RepoStore:
    return RepoStore(kv, files, clock=clock, quota_max=1 << 30, block_ttl=3600, registry=None)


async def test_blocks_that_expire_in_one_bucket_share_a_pack_and_another_bucket_gets_its_own(tmp_path: Path) -> None:
    clock = FakeClock()
    repo = _open(MemoryKV(), BlockFiles(tmp_path, sync="none", bucket_seconds=DAY), clock)
    soon, later = _blocks(3, b"s"), _blocks(3, b"l")
    day_after_tomorrow = (clock.now() // DAY + 2) * DAY - clock.now()
    await repo.put_blocks(soon[:2], ttl=day_after_tomorrow + 10)
    await repo.put_blocks(later, ttl=day_after_tomorrow + 30 * DAY)
    await repo.put_blocks(soon[2:], ttl=day_after_tomorrow + 20_000)
    packs = {repo.block_meta(cid).pack for cid, _ in soon}  # type: ignore[union-attr]
    packs_later = {repo.block_meta(cid).pack for cid, _ in later}  # type: ignore[union-attr]
    assert len(packs) == 1
    assert len(packs_later) == 1
    assert packs != packs_later
    assert len(list(repo.files.iter_files())) == 2  # two files for six blocks
    check_invariants(repo)
    repo.close()


async def test_a_pack_is_sealed_at_its_size_limit_and_the_next_blocks_go_to_a_new_one(tmp_path: Path) -> None:
    repo = _open(MemoryKV(), BlockFiles(tmp_path, sync="none", pack_limit=2500), FakeClock())
    blocks = _blocks(6)
    for pair in (blocks[0:2], blocks[2:4], blocks[4:6]):  # 2 × ~1070 bytes each: the third record crosses 2500
        await repo.put_blocks(pair)
    packs = [repo.block_meta(cid).pack for cid, _ in blocks]  # type: ignore[union-attr]
    assert packs[:4] == [packs[0]] * 4
    assert packs[4] == packs[5] != packs[0]
    first = repo.pack_records()[packs[0]]
    assert first.count == 4
    assert first.size >= 2500
    assert repo.files.is_sealed(packs[0])
    assert not repo.files.is_sealed(packs[4])
    check_invariants(repo)
    repo.close()


class _RecordingKV(MemoryKV):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def write(self, batch: WriteBatch) -> None:
        keys = [key for key, _ in batch_ops(batch)]
        if any(k.startswith(TTL_PREFIX) for k in keys):
            self.events.append("index" + ("+quota" if QUOTA_KEY in keys else ""))
        super().write(batch)


class _RecordingFiles(BlockFiles):
    def __init__(self, root: Path, events: list[str]) -> None:
        super().__init__(root, sync="fsync")
        self.events = events

    def _write_region(self, fd: int, offset: int, buffers: list[Any]) -> None:
        self.events.append("write")
        super()._write_region(fd, offset, buffers)

    def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
        self.events.append("write")
        super()._write_direct(fd, offset, data)

    def _sync(self, fd: int) -> None:
        super()._sync(fd)
        self.events.append("durable")


async def test_the_index_entry_is_written_with_the_quota_in_one_batch_only_after_the_bytes_are_durable(
    tmp_path: Path,
) -> None:
    events: list[str] = []
    repo = _open(_RecordingKV(events), _RecordingFiles(tmp_path, events), FakeClock())
    await repo.put_blocks(_blocks(3))
    assert events == ["write", "durable", "index+quota"]
    repo.close()


async def test_a_dataset_stored_in_order_is_read_back_with_one_positioned_read_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _open(MemoryKV(), BlockFiles(tmp_path, sync="none"), FakeClock())
    data = os.urandom(10 * 1000 + 7)

    async def one_chunk() -> Any:
        yield data

    cid = await store_dataset(repo, one_chunk(), block_size=1000, group_blocks=16)
    manifest: Manifest = await repo.get_manifest(cid)
    calls: list[int] = []
    real = os.preadv

    def counting(fd: int, buffers: Any, offset: int) -> int:
        calls.append(len(buffers))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counting)
    assert b"".join([bytes(c) async for c in repo.iter_dataset(manifest, blocks_per_read=64)]) == data
    assert calls == [2 * 11 - 1]  # eleven blocks and the ten headers between them, in one call
    repo.close()


async def test_a_new_data_dir_holds_packs_and_start_up_reads_no_index_entry_and_lists_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv, clock = MemoryKV(), FakeClock()
    repo = _open(kv, BlockFiles(tmp_path, sync="none"), clock)
    assert kv.get(LAYOUT_KEY) == LAYOUT_PACKS
    await repo.put_blocks(_blocks(50))
    repo.close()
    assert not (tmp_path / "blocks").exists()

    prefixes: list[str] = []
    real_iterate = kv.iterate

    def iterate(prefix: str, **kw: Any) -> Iterator[tuple[str, bytes]]:
        prefixes.append(prefix)
        return real_iterate(prefix, **kw)

    def no_listing(*_: object) -> None:
        raise AssertionError("start-up listed a folder")

    monkeypatch.setattr(kv, "iterate", iterate)
    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    repo = _open(kv, BlockFiles(tmp_path, sync="none"), clock)
    assert TTL_PREFIX not in prefixes
    assert repo.total_blocks == 50
    monkeypatch.undo()
    check_invariants(repo)
    repo.close()
