"""Random sequences of store operations, with crashes at random steps, never unbalance the books.

The randomized crash test of issue 13: uploads, puts, deletes, maintenance (whole expired packs and the page walk)
and compaction of small packs, each killed at a random step in 60 runs of up to 25 operations.

After every operation (crashed or not) the store is checked at rest — after a restart when it crashed — with
``repo_invariants.check_invariants``; a simple model also checks that every dataset the store still lists reads
back exactly, and that reserved bytes only change through reserve/release.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from crashsim import CrashingFiles, CrashingKV, CrashSwitch, SimulatedCrashError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repo_invariants import check_invariants

from codex_node.data.cid import Cid, block_cid
from codex_node.data.manifest import Manifest
from codex_node.errors import (
    BlockNotFoundError,
    QuotaNotEnoughError,
    QuotaUnderflowError,
    ValidationError,
)
from codex_node.stores.compaction import Compactor
from codex_node.stores.datasets import store_dataset
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

BS = 8
# A small pool so that datasets and standalone blocks share blocks often.
POOL = [bytes([i]) * BS for i in range(5)] + [b"tail"]
PACK_LIMIT = 120
QUOTA = 1500  # room for about five manifests (~280 bytes each) and their blocks

block_idx = st.integers(0, len(POOL) - 1)
ttl = st.sampled_from([5, 50, 500])
ops = st.one_of(
    st.tuples(st.just("put"), block_idx, ttl),
    st.tuples(st.just("upload"), st.lists(block_idx, max_size=8), ttl),
    st.tuples(st.just("del_block"), block_idx),
    st.tuples(st.just("del_dataset"), st.integers(0, 5)),
    st.tuples(st.just("advance"), st.integers(1, 200)),
    st.tuples(st.just("reserve"), st.integers(1, 10 * BS)),
    st.tuples(st.just("release"), st.integers(1, 10 * BS)),
    st.tuples(st.just("set_expiry"), block_idx, st.integers(-10, 100)),
    st.tuples(st.just("keep_dataset"), st.integers(0, 5), st.integers(0, 1000)),
    st.tuples(st.just("compact"), st.sampled_from([0.3, 0.6, 1.0])),
)
# Crash points reach past the end of most operations (a compaction of a few packs has dozens of steps).
step = st.tuples(ops, st.one_of(st.none(), st.integers(0, 40)))


async def _no_sleep(_: float) -> None:
    return None


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 5):
        yield data[i : i + 5]


def _expected_cid(data: bytes) -> Cid:
    digests = b"".join(block_cid(data[i : i + BS]).digest for i in range(0, len(data), BS))
    return Manifest.build(digests, dataset_size=len(data), block_size=BS).cid()


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.kv = MemoryKV()
        self.clock = FakeClock()
        self.switch = CrashSwitch()
        self.repo = self._open()
        self.reserved = 0
        self.datasets: dict[Cid, bytes] = {}

    def _open(self) -> RepoStore:
        self.switch = CrashSwitch()
        # Small packs: they seal often, so whole-pack expiry and compaction have work.
        files = CrashingFiles(self.root, self.switch, pack_limit=PACK_LIMIT, bucket_seconds=100)
        return RepoStore(
            CrashingKV(self.kv, self.switch), files, clock=self.clock, quota_max=QUOTA, block_ttl=100, registry=None
        )

    async def apply(self, op: tuple[object, ...], crash_at: int | None) -> None:
        if crash_at is not None:
            self.switch.arm(crash_at)
        try:
            await self._apply(op)
        except SimulatedCrashError:
            self.repo.files.close()
            self.repo = self._open()  # restart: recovery runs on what reached the disk
        except (QuotaNotEnoughError, QuotaUnderflowError, ValidationError, BlockNotFoundError):
            pass
        if crash_at is not None and not self.switch.tripped:
            self.switch.arm(1 << 30)  # the operation finished before the crash point: disarm
        check_invariants(self.repo)
        assert self.repo.quota().reserved == self.reserved
        stored = {cid for cid, _ in self.repo.manifests()}
        for cid in stored:
            data = b"".join([c async for c in self.repo.iter_dataset(await self.repo.get_manifest(cid))])
            assert data == self.datasets[cid]

    async def _apply(self, op: tuple[object, ...]) -> None:
        repo = self.repo
        match op:
            case ("put", int(i), int(t)):
                await repo.put_block(block_cid(POOL[i]), POOL[i], ttl=t)
            case ("upload", list(idx), int(t)):
                data = b"".join(POOL[i] for i in idx if POOL[i] != b"tail") + (b"tail" if 5 in idx else b"")
                # Known before storing: a crash right after the manifest commit still leaves a dataset to read.
                self.datasets[_expected_cid(data)] = data
                assert await store_dataset(repo, _chunks(data), ttl=t, block_size=BS, group_blocks=2) == (
                    _expected_cid(data)
                )
            case ("del_block", int(i)):
                await repo.del_block(block_cid(POOL[i]))
            case ("del_dataset", int(n)):
                stored = [cid for cid, _ in repo.manifests()]
                if stored:
                    await repo.del_block(stored[n % len(stored)])
            case ("advance", int(s)):
                self.clock.advance(s)
                await BlockMaintainer(repo, self.clock, batch_size=7, registry=None).run_pass()
            case ("reserve", int(n)):
                repo.reserve(n)
                self.reserved += n
            case ("release", int(n)):
                repo.release(n)
                self.reserved -= n
            case ("set_expiry", int(i), int(d)):
                repo.set_expiry(block_cid(POOL[i]), self.clock.now() + d)
            case ("keep_dataset", int(n), int(d)):
                stored = [cid for cid, _ in repo.manifests()]
                if stored:
                    repo.ensure_expiry(stored[n % len(stored)], self.clock.now() + d)
            case ("compact", float(threshold)):
                await Compactor(repo, threshold=threshold, sleep=_no_sleep).run_pass()
            case _:
                raise AssertionError(f"unknown op {op!r}")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=25))
def test_random_operations_with_crashes_keep_the_books_balanced(
    steps: list[tuple[tuple[object, ...], int | None]],
) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            h = Harness(Path(d))
            for op, crash_at in steps:
                await h.apply(op, crash_at)
            h.repo.close()

    asyncio.run(run())
