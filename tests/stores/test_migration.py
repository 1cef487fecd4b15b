"""A data dir in the file-per-block layout is converted to pack files at first start (issue 13 item 4): progress
logged, nothing lost, resumable after a kill at any step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from repo_invariants import check_invariants
from structlog.testing import capture_logs

from codex_node.data.cid import Cid, block_cid
from codex_node.data.manifest import Manifest
from codex_node.stores import migration
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.blockmeta import LAYOUT_KEY, LAYOUT_PACKS, MANIFEST_PREFIX, PENDING_PREFIX, TOTAL_KEY, TTL_PREFIX
from codex_node.stores.kv import KVStore
from codex_node.stores.legacyblocks import LegacyBlockFiles
from codex_node.stores.quota import QUOTA_KEY, Quota
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

BS = 1000


def _legacy_meta(expiry: int, size: int, ref: int, standalone: bool) -> bytes:
    record = {"expiry": expiry, "size": size, "refCount": ref, "standalone": standalone}
    return json.dumps(record, separators=(",", ":")).encode()


def make_legacy_dir(
    root: Path, kv: MemoryKV, now: int, data: bytes | None = None
) -> tuple[Cid, bytes, list[tuple[Cid, bytes]]]:
    """A data dir as the file-per-block store left it: a dataset (``data``, random by default), standalone blocks,
    and a pending orphan."""
    files = LegacyBlockFiles(root, sync="none")
    data = os.urandom(7 * BS + 11) if data is None else data
    blocks = [(block_cid(data[i : i + BS]), data[i : i + BS]) for i in range(0, len(data), BS)]
    manifest = Manifest.build(b"".join(c.digest for c, _ in blocks), dataset_size=len(data), block_size=BS)
    encoded = manifest.encode()
    mcid = manifest.cid()
    standalone = [(block_cid(b"slot %d" % i), b"slot %d" % i) for i in range(5)]
    files.store([*blocks, (mcid, encoded), *standalone])
    batch = kv.batch()
    for cid, block in blocks:
        batch.put(TTL_PREFIX + cid.text, _legacy_meta(now + 3600, len(block), 1, False))
    batch.put(TTL_PREFIX + mcid.text, _legacy_meta(now + 3600, len(encoded), 0, True))
    batch.put(MANIFEST_PREFIX + mcid.text, manifest.info.encode())
    for i, (cid, block) in enumerate(standalone):
        batch.put(TTL_PREFIX + cid.text, _legacy_meta(now + 86400 * (i + 1), len(block), 0, True))
    used = len(data) + len(encoded) + sum(len(b) for _, b in standalone)
    batch.put(QUOTA_KEY, Quota(1 << 30, used, 500).encode())
    batch.put(TOTAL_KEY, str(len(blocks) + 1 + len(standalone)).encode())
    orphan = block_cid(b"orphan")
    batch.put(PENDING_PREFIX + orphan.text, b"")
    kv.write(batch)
    files.store([(orphan, b"orphan")])
    files.close()
    return mcid, data, standalone


def _open(kv: KVStore, files: BlockFiles, clock: FakeClock) -> RepoStore:
    return RepoStore(kv, files, clock=clock, quota_max=1 << 30, block_ttl=3600, registry=None)


async def _check_converted(repo: RepoStore, mcid: Cid, data: bytes, standalone: list[tuple[Cid, bytes]]) -> None:
    assert repo.kv.get(LAYOUT_KEY) == LAYOUT_PACKS
    assert not (repo.files.root / "blocks").exists()
    assert repo.quota() == Quota(1 << 30, repo.quota().used, 500)
    assert repo.total_blocks == 8 + 1 + 5
    manifest = await repo.get_manifest(mcid)
    assert b"".join([bytes(c) async for c in repo.iter_dataset(manifest)]) == data
    for cid, block in standalone:
        assert await repo.get_block(cid) == block
    assert not repo.has_block(block_cid(b"orphan"))
    check_invariants(repo)


async def test_an_old_data_dir_is_converted_at_first_start_with_progress_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kv, clock = MemoryKV(), FakeClock()
    mcid, data, standalone = make_legacy_dir(tmp_path, kv, clock.now())
    monkeypatch.setattr(migration, "PAGE_BLOCKS", 4)
    with capture_logs() as logs:
        repo = _open(kv, BlockFiles(tmp_path, sync="none"), clock)
    progress = [e["converted"] for e in logs if e["event"] == "converting data dir to pack files" and "converted" in e]
    assert progress == [4, 8, 12, 14]
    assert [e["blocks"] for e in logs if e["event"] == "data dir converted to pack files"] == [14]
    await _check_converted(repo, mcid, data, standalone)
    assert len(list(repo.files.iter_files())) == 6  # the dataset's bucket, and one per day of the five slots
    repo.close()


async def test_a_conversion_killed_at_any_step_is_finished_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(migration, "PAGE_BLOCKS", 4)
    clock = FakeClock()
    counter = CrashSwitch()
    kv = MemoryKV()
    # One dataset for the count and every crash: the blocks' CIDs order the conversion's pages, so another
    # dataset can take fewer steps (45 → 42 once in 40 draws) and a crash armed past its end never happens.
    same = os.urandom(7 * BS + 11)
    make_legacy_dir(tmp_path / "count", kv, clock.now(), same)
    _open(CrashingKV(kv, counter), CrashingFiles(tmp_path / "count", counter), clock).close()
    steps = counter.steps
    assert steps > 10
    for k in range(steps):
        root = tmp_path / f"crash-{k}"
        kv = MemoryKV()
        mcid, data, standalone = make_legacy_dir(root, kv, clock.now(), same)
        switch = CrashSwitch()
        switch.arm(k)
        with pytest.raises(SimulatedCrashError):
            _open(CrashingKV(kv, switch), CrashingFiles(root, switch), clock)
        repo = _open(kv, BlockFiles(root, sync="none"), clock)
        await _check_converted(repo, mcid, data, standalone)
        repo.close()
