"""Compaction of sparse packs (issue 13 item 2): live blocks move, the pack goes, the copying is paced, and a kill
at any step of it leaves a store the next start completes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from repo_invariants import check_invariants

from codex_node.data.cid import block_cid
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.compaction import Compactor, Pacer
from codex_node.stores.kv import KVStore
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

BLOCKS = [bytes([i]) * 1000 + os.urandom(8) for i in range(20)]
CIDS = [block_cid(b) for b in BLOCKS]
KEEP = {0, 3, 7, 12, 19}


class FakeTime:
    """A monotonic timer that only the injected sleep moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def timer(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _open(kv: KVStore, files: BlockFiles, clock: FakeClock) -> RepoStore:
    return RepoStore(kv, files, clock=clock, quota_max=1 << 30, block_ttl=3600, registry=None)


async def _sparse_pack(repo: RepoStore) -> int:
    """One sealed pack of twenty blocks of which five are left."""
    await repo.put_blocks(list(zip(CIDS, BLOCKS, strict=True)))
    for i in range(20):
        if i not in KEEP:
            await repo.del_block(CIDS[i])
    meta = repo.block_meta(CIDS[0])
    assert meta is not None
    return meta.pack


async def _kept_blocks_read_back(repo: RepoStore) -> None:
    for i in KEEP:
        assert await repo.get_block(CIDS[i]) == BLOCKS[i]
    assert repo.total_blocks == len(KEEP)


async def test_a_sealed_pack_under_the_threshold_is_rewritten_and_deleted_at_the_paced_rate(tmp_path: Path) -> None:
    repo = _open(MemoryKV(), BlockFiles(tmp_path, sync="none", pack_limit=10_000), FakeClock())
    pid = await _sparse_pack(repo)
    record = repo.pack_records()[pid]
    assert record.live < record.size / 3  # the dead-byte count rose with each deletion
    time = FakeTime()
    compactor = Compactor(repo, threshold=0.5, rate=1000, chunk_bytes=2000, sleep=time.sleep, timer=time.timer)
    assert compactor.candidates() == [pid]
    assert await compactor.run_pass() == 1
    assert pid not in repo.pack_records()
    assert not repo.files.pack_path(pid).exists()
    await _kept_blocks_read_back(repo)
    moved = sum(len(BLOCKS[i]) for i in KEEP)
    assert compactor.bytes_moved == moved
    assert len(time.slept) == 3  # three chunks of two blocks at most, each paced
    assert time.now == pytest.approx(moved / 1000)  # 5 kB at 1 kB/s: five seconds of (fake) time
    check_invariants(repo)
    repo.close()


async def test_an_open_pack_or_a_dense_one_is_left_alone(tmp_path: Path) -> None:
    repo = _open(MemoryKV(), BlockFiles(tmp_path, sync="none"), FakeClock())
    await _sparse_pack(repo)  # the pack is still open (no size limit reached)
    assert Compactor(repo).candidates() == []
    repo.close()
    repo = _open(repo.kv, BlockFiles(tmp_path, sync="none"), FakeClock())  # a restart seals every pack
    assert Compactor(repo, threshold=0.1).candidates() == []  # dense enough for this threshold
    assert len(Compactor(repo, threshold=0.5).candidates()) == 1
    repo.close()


async def test_a_kill_at_any_step_of_a_compaction_leaves_a_store_the_next_start_completes(tmp_path: Path) -> None:
    async def run(root: Path, crash_at: int | None) -> tuple[MemoryKV, int, FakeClock]:
        kv, switch, clock = MemoryKV(), CrashSwitch(), FakeClock()
        repo = _open(CrashingKV(kv, switch), CrashingFiles(root, switch, pack_limit=10_000), clock)
        await _sparse_pack(repo)
        time = FakeTime()
        compactor = Compactor(repo, rate=1 << 30, chunk_bytes=2000, sleep=time.sleep, timer=time.timer)
        before = switch.steps
        if crash_at is not None:
            switch.arm(crash_at)
        try:
            await compactor.run_pass()
        except SimulatedCrashError:
            assert crash_at is not None
        repo.files.close()
        return kv, switch.steps - before, clock

    _, steps, _ = await run(tmp_path / "count", None)
    assert steps > 10
    for k in range(steps):
        root = tmp_path / f"crash-{k}"
        kv, _, clock = await run(root, k)
        repo = _open(kv, BlockFiles(root, sync="none"), clock)
        check_invariants(repo)
        await _kept_blocks_read_back(repo)
        # And the next compaction finishes the job.
        await Compactor(repo).run_pass()
        check_invariants(repo)
        await _kept_blocks_read_back(repo)
        assert all(r.live >= r.size / 2 for r in repo.pack_records().values())
        repo.close()


async def test_the_pacer_holds_the_average_rate_and_does_not_sleep_when_behind() -> None:
    time = FakeTime()
    pacer = Pacer(100, sleep=time.sleep, timer=time.timer)
    await pacer.spent(50)
    assert time.now == pytest.approx(0.5)
    time.now += 2  # the work itself took long: no more sleeping until the budget catches up
    await pacer.spent(100)
    assert time.slept == [pytest.approx(0.5)]
