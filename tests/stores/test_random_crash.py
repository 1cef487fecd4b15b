"""Randomized crash test (issue 13, "Done means"): 80 rounds, each ending with a random operation — an upload, a
put, a deletion, a maintenance pass or a compaction — killed at a random one of its own steps, then a restart.

Each round first runs one random operation to its end, so the store grows and changes; then it runs the operation
to kill on a copy of the store to count its steps, so that every kill lands inside the operation (an operation that
had nothing to do is not killed: at least 50 rounds are). After each restart: the quota equals the sum of the live
blocks, every indexed block reads back byte-identical, the pack books match the index
(``repo_invariants.check_invariants``), and every dataset the store lists reads back as uploaded.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from repo_invariants import check_invariants

from codex_node.data.cid import Cid, block_cid
from codex_node.errors import QuotaNotEnoughError
from codex_node.stores.blockfiles import DIRECT_MIN_BYTES, BlockFiles
from codex_node.stores.compaction import Compactor
from codex_node.stores.datasets import store_dataset
from codex_node.stores.kv import KVStore
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

ROUNDS = 80
DIRECT_WRITES: Counter[int] = Counter()
"""Direct writes made, by ``direct_min``: the direct runs must have made some, the buffered ones none."""
BS = 500
OPS = ("upload", "put", "delete_block", "delete_dataset", "maintenance", "compaction")


async def _no_sleep(_: float) -> None:
    return None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 700):
        yield data[i : i + 700]


def _copy_kv(kv: MemoryKV) -> MemoryKV:
    copy = MemoryKV()
    copy._data = dict(kv._data)
    copy._keys = list(kv._keys)
    return copy


def _open(kv: KVStore, files: BlockFiles, clock: FakeClock) -> RepoStore:
    return RepoStore(kv, files, clock=clock, quota_max=200 * BS, block_ttl=300, registry=None)


async def _run(repo: RepoStore, clock: FakeClock, op: str, seed: int, datasets: dict[Cid, bytes]) -> None:
    rng = random.Random(seed)
    match op:
        case "upload":
            base = rng.choice([*datasets.values(), b""]) if datasets else b""
            data = base[: rng.randrange(len(base) + 1)] + rng.randbytes(rng.randrange(1, 6 * BS))
            cid = await store_dataset(repo, _chunks(data), block_size=BS, group_blocks=2, ttl=rng.choice([50, 500]))
            datasets[cid] = data
        case "put":
            blocks = [rng.randbytes(rng.randrange(1, BS)) for _ in range(rng.randrange(1, 4))]
            await repo.put_blocks([(block_cid(b), b) for b in blocks], ttl=rng.choice([50, 500, 5000]))
        case "delete_block":
            loose = [cid for cid, meta in repo.expiry_page(None, 10_000) if cid.is_block and meta.ref_count == 0]
            if loose:
                await repo.del_block(rng.choice(loose))
        case "delete_dataset":
            stored = [cid for cid, _ in repo.manifests()]
            if stored:
                await repo.del_block(rng.choice(stored))
        case "maintenance":
            clock.advance(rng.choice([20, 200, 2000]))
            await BlockMaintainer(repo, clock, batch_size=5, registry=None).run_pass()
        case "compaction":
            await Compactor(repo, threshold=rng.choice([0.7, 1.0]), chunk_bytes=BS, sleep=_no_sleep).run_pass()


async def _attempt(
    kv: MemoryKV,
    root: Path,
    clock: FakeClock,
    op: str,
    seed: int,
    datasets: dict[Cid, bytes],
    crash_at: int | None,
    direct_min: int,
) -> int:
    """Open the store, run ``op`` (crashing at step ``crash_at``), return the steps it took."""
    switch = CrashSwitch()
    files = CrashingFiles(root, switch, pack_limit=3 * BS, bucket_seconds=200, direct_min=direct_min)
    repo = _open(CrashingKV(kv, switch), files, clock)
    if crash_at is not None:
        switch.arm(crash_at)
    before = switch.steps
    try:
        await _run(repo, clock, op, seed, datasets)
    except SimulatedCrashError:
        assert crash_at is not None
    except QuotaNotEnoughError:
        pass
    repo.files.close()
    DIRECT_WRITES[direct_min] += files.direct_writes
    return switch.steps - before


@pytest.mark.parametrize("direct_min", [DIRECT_MIN_BYTES, 1], ids=["buffered", "direct"])
async def test_kills_at_random_steps_of_uploads_deletes_maintenance_and_compaction_keep_the_books(
    tmp_path: Path, direct_min: int
) -> None:
    """Also with every append written directly (``direct``): padding records and two-step direct writes."""
    rng = random.Random(13)
    kv, clock, root = MemoryKV(), FakeClock(), tmp_path / "store"
    datasets: dict[Cid, bytes] = {}
    killed: Counter[str] = Counter()
    for n in range(ROUNDS):
        # One operation that runs to its end (the store grows and changes), then one that is killed.
        grow = rng.choice(["upload", "upload", "put", *OPS])
        await _attempt(kv, root, clock, grow, rng.randrange(1 << 30), datasets, None, direct_min)
        op = rng.choice(OPS)
        seed = rng.randrange(1 << 30)
        dry = tmp_path / f"dry-{n}"
        if root.exists():
            shutil.copytree(root, dry)
        steps = await _attempt(_copy_kv(kv), dry, FakeClock(clock.now()), op, seed, dict(datasets), None, direct_min)
        shutil.rmtree(dry, ignore_errors=True)
        crash_at = rng.randrange(steps) if steps else None
        await _attempt(kv, root, clock, op, seed, datasets, crash_at, direct_min)
        if crash_at is not None:
            killed[op] += 1
        repo = _open(kv, BlockFiles(root, sync="none"), clock)  # the restart
        check_invariants(repo)
        for cid, _ in repo.manifests():
            data = b"".join([bytes(c) async for c in repo.iter_dataset(await repo.get_manifest(cid))])
            assert data == datasets[cid], f"round {n}: dataset {cid} reads back different bytes"
        repo.close()
    assert sum(killed.values()) >= 50
    assert (DIRECT_WRITES[direct_min] > 0) == (direct_min == 1)
    assert all(killed[op] >= 3 for op in OPS), killed
