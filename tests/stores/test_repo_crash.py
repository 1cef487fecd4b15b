"""Kill the store at every step of an operation, restart it, and check that the books balance.

For each scenario: count the mutating steps of the operation, then for every k run it again on a fresh copy of
the same starting state with a crash at step k, reopen the store on what reached the disk, and check the
invariants (``repo_invariants.check_invariants``) plus what the scenario promises about its outcome (all or
nothing). A second crash during recovery is covered too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from repo_invariants import check_invariants

from codex_node.data.cid import Cid, block_cid
from codex_node.errors import QuotaNotEnoughError
from codex_node.stores.blockfiles import DIRECT_MIN_BYTES, BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.kv import KVStore
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

BS = 1000  # small blocks keep hundreds of crash points fast
SHARED = bytes(range(256)) * 8  # two blocks' worth shared by datasets
DATA = SHARED + b"new data " * 400
STANDALONE = b"standalone block"


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 700):
        yield data[i : i + 700]


async def _read(repo: RepoStore, cid: Cid) -> bytes:
    return b"".join([c async for c in repo.iter_dataset(await repo.get_manifest(cid))])


@dataclass
class World:
    """The starting state every crash run begins from, and what must survive."""

    repo: RepoStore
    clock: FakeClock
    base: Cid | None = None  # a dataset that must stay whole (unless the operation deletes it)
    other: Cid | None = None  # a second dataset sharing blocks with ``base``

    async def store(self, data: bytes, **kw: int) -> Cid:
        return await store_dataset(self.repo, _chunks(data), block_size=BS, group_blocks=2, **kw)


Setup = Callable[[World], Awaitable[None]]
Op = Callable[[World], Awaitable[object]]
Outcome = Callable[[World], Awaitable[None]]


async def _setup_base(w: World) -> None:
    w.base = await w.store(SHARED + b"base tail")
    await w.repo.put_block(block_cid(STANDALONE), STANDALONE, ttl=10)


async def _base_intact(w: World) -> None:
    assert w.base is not None
    assert await _read(w.repo, w.base) == SHARED + b"base tail"


async def _op_put_block(w: World) -> object:
    return await w.repo.put_block(block_cid(b"fresh"), b"fresh")


async def _outcome_put_block(w: World) -> None:
    if w.repo.has_block(block_cid(b"fresh")):
        assert await w.repo.get_block(block_cid(b"fresh")) == b"fresh"
    await _base_intact(w)


async def _op_put_blocks(w: World) -> object:
    blocks = [b"one", b"two", STANDALONE]
    return await w.repo.put_blocks([(block_cid(b), b) for b in blocks])


async def _op_upload(w: World) -> object:
    return await w.store(DATA)


async def _outcome_upload(w: World) -> None:
    for cid, _ in w.repo.manifests():
        if cid != w.base:
            assert await _read(w.repo, cid) == DATA
    await _base_intact(w)


async def _op_upload_over_quota(w: World) -> object:
    with pytest.raises(QuotaNotEnoughError):
        await w.store(DATA + b"".join(i.to_bytes(4, "big") for i in range(12_000)))
    return None


async def _op_upload_again(w: World) -> object:
    return await w.store(SHARED + b"base tail")


async def _setup_two_datasets(w: World) -> None:
    await _setup_base(w)
    w.other = await w.store(DATA)  # shares SHARED's blocks with base


async def _op_delete_dataset(w: World) -> object:
    assert w.base is not None
    return await w.repo.del_block(w.base)


async def _outcome_delete_dataset(w: World) -> None:
    assert w.other is not None
    assert await _read(w.repo, w.other) == DATA
    if w.base is not None and w.repo.has_block(w.base):
        await _base_intact(w)


async def _op_delete_block(w: World) -> object:
    return await w.repo.del_block(block_cid(STANDALONE))


async def _op_maintenance(w: World) -> object:
    w.clock.advance(100_000)
    return await BlockMaintainer(w.repo, w.clock, batch_size=1000, registry=None).run_pass()


async def _no_outcome(w: World) -> None:
    return None


SCENARIOS: dict[str, tuple[Setup, Op, Outcome]] = {
    "put_block": (_setup_base, _op_put_block, _outcome_put_block),
    "put_blocks_with_an_existing_one": (_setup_base, _op_put_blocks, _base_intact),
    "upload": (_setup_base, _op_upload, _outcome_upload),
    "upload_over_quota": (_setup_base, _op_upload_over_quota, _base_intact),
    "upload_of_an_existing_dataset": (_setup_base, _op_upload_again, _base_intact),
    "delete_dataset_sharing_blocks": (_setup_two_datasets, _op_delete_dataset, _outcome_delete_dataset),
    "delete_standalone_block": (_setup_base, _op_delete_block, _base_intact),
    "maintenance_pass": (_setup_two_datasets, _op_maintenance, _no_outcome),
}


def _open(kv: KVStore, files: BlockFiles, clock: FakeClock) -> RepoStore:
    return RepoStore(kv, files, clock=clock, quota_max=40 * BS, block_ttl=3600, registry=None)


async def _crash_run(
    root: Path, setup: Setup, op: Op, crash_at: int | None, *, direct_min: int = DIRECT_MIN_BYTES
) -> tuple[World, MemoryKV, int]:
    """Set up, run ``op`` with a crash at step ``crash_at`` (None: no crash); return what a restart needs.
    ``direct_min``: appends of at least this many bytes are written directly (1: all of them)."""
    kv, clock, switch = MemoryKV(), FakeClock(), CrashSwitch()
    repo = _open(CrashingKV(kv, switch), CrashingFiles(root, switch, direct_min=direct_min), clock)
    world = World(repo, clock)
    await setup(world)
    if crash_at is not None:
        switch.arm(crash_at)
    before = switch.steps
    try:
        await op(world)
    except SimulatedCrashError:
        assert crash_at is not None
    else:
        assert crash_at is None or not switch.tripped, "the operation swallowed the crash"
    repo.files.close()
    return world, kv, switch.steps - before


def _restart(world: World, kv: MemoryKV, root: Path) -> World:
    repo = _open(kv, BlockFiles(root, sync="none"), world.clock)
    return World(repo, world.clock, world.base, world.other)


@pytest.mark.parametrize("direct_min", [DIRECT_MIN_BYTES, 1], ids=["buffered", "direct"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_a_crash_at_any_step_leaves_a_consistent_store(tmp_path: Path, name: str, direct_min: int) -> None:
    """Also with every append written directly (``direct``): padding records and two-step direct writes."""
    setup, op, outcome = SCENARIOS[name]
    counted, _, steps = await _crash_run(tmp_path / "count", setup, op, None, direct_min=direct_min)
    assert steps > 0
    assert isinstance(counted.repo.files, CrashingFiles)
    assert (counted.repo.files.direct_writes > 0) == (direct_min == 1)
    for k in range(steps + 1):
        root = tmp_path / f"crash-{k}"
        crashed, kv, _ = await _crash_run(root, setup, op, k, direct_min=direct_min)
        restarted = _restart(crashed, kv, root)
        check_invariants(restarted.repo)
        await outcome(restarted)
        restarted.repo.close()


async def test_a_crash_during_recovery_is_recovered_by_the_next_start(tmp_path: Path) -> None:
    _, _, steps = await _crash_run(tmp_path / "count", _setup_two_datasets, _op_delete_dataset, None)
    for k in range(0, steps, 3):
        root = tmp_path / f"crash-{k}"
        crashed, kv, _ = await _crash_run(root, _setup_two_datasets, _op_delete_dataset, k)
        for j in range(4):
            switch = CrashSwitch()
            switch.arm(j)
            with contextlib.suppress(SimulatedCrashError):
                _open(CrashingKV(kv, switch), CrashingFiles(root, switch), crashed.clock).close()
        restarted = _restart(crashed, kv, root)
        check_invariants(restarted.repo)
        await _outcome_delete_dataset(restarted)
        restarted.repo.close()
