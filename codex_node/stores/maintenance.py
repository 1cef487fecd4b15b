"""The block maintainer: deletes expired blocks, whole packs first, then one page of the store per interval.

Each pass first deletes the sealed pack files whose blocks have all expired, each in one step (one batch for its
index entries, then the file: ``RepoStore.delete_expired_packs``), and then walks a page of the index for the
blocks left (in open packs, referenced by expired datasets, or with a lowered expiry).

Every ``interval`` seconds (from the injected :class:`~codex_node.clock.Clock`) the page walk looks at the next
``batch_size`` blocks in key order and deletes those whose expiry has come (``expiry <= now``; an expired
manifest takes its dataset's references with it). The place in the key space is kept in LevelDB
(``meta/maintenance/cursor``) so a restart resumes where the last pass stopped instead of starting over; a short
page means the end of the key space was reached, and the next pass starts a new cycle from the beginning.

It never decides what is expired on its own: the block metadata says so. Beside it, on the same interval, a second
task compacts sparse packs (``stores/compaction.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import structlog
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from codex_node import metrics
from codex_node.clock import Clock
from codex_node.errors import StoreError
from codex_node.stores.compaction import Compactor
from codex_node.stores.repostore import RepoStore
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

CURSOR_KEY = "meta/maintenance/cursor"
DEFAULT_INTERVAL = 10 * 60
DEFAULT_BATCH_SIZE = 1000


class BlockMaintainer:
    """Owns one background task that runs :meth:`run_pass` every ``interval`` seconds."""

    def __init__(
        self,
        repo: RepoStore,
        clock: Clock,
        *,
        interval: int = DEFAULT_INTERVAL,
        batch_size: int = DEFAULT_BATCH_SIZE,
        registry: CollectorRegistry | None = None,
        compactor: Compactor | None = None,
    ) -> None:
        if interval <= 0 or batch_size <= 0:
            raise ValueError(f"interval ({interval}) and batch size ({batch_size}) must be positive")
        self.repo = repo
        self.clock = clock
        self.interval = interval
        self.batch_size = batch_size
        self.passes = 0
        self.deleted = 0
        self.cycles = 0
        self.deleted_packs = 0
        self.compactor = Compactor(repo) if compactor is None else compactor
        self._tasks = TrackedTasks("block maintainer")
        self._unregister = metrics.register(
            metrics.LiveCollector(
                self._metrics,
                (
                    "codex_maintenance_passes",
                    "codex_maintenance_deleted_blocks",
                    "codex_maintenance_deleted_packs",
                    "codex_compaction_packs",
                    "codex_compaction_bytes_moved",
                ),
            ),
            registry,
        )

    @property
    def cursor(self) -> str | None:
        """The CID text the next pass starts after, or None at the start of a cycle."""
        raw = self.repo.kv.get(CURSOR_KEY)
        return None if raw is None else raw.decode()

    async def run_pass(self) -> int:
        """Look at the next page of blocks and delete the expired ones; return how many were deleted."""
        now = self.clock.now()
        packs, in_packs = await self.repo.delete_expired_packs(now)
        self.deleted_packs += packs
        self.deleted += in_packs
        page = await asyncio.to_thread(self.repo.expiry_page, self.cursor, self.batch_size)
        expired = [cid for cid, meta in page if meta.expiry <= now]
        deleted = await self.repo.delete_expired(expired, now) if expired else 0
        if len(page) < self.batch_size:
            self.repo.kv.delete(CURSOR_KEY)
            self.cycles += 1
            log.debug("maintenance cycle completed", cycles=self.cycles)
        else:
            self.repo.kv.put(CURSOR_KEY, page[-1][0].text.encode())
        self.passes += 1
        self.deleted += deleted
        if deleted:
            log.info("expired blocks deleted", deleted=deleted, examined=len(page))
        return deleted + in_packs

    async def start(self) -> None:
        self._tasks.reopen()
        self._tasks.spawn(self._loop(), name="block-maintainer")
        self._tasks.spawn(self._compact_loop(), name="pack-compactor")

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    def close(self) -> None:
        self._unregister()

    async def _loop(self) -> None:
        while True:
            await self.clock.wait_until(self.clock.now() + self.interval)
            try:
                await self.run_pass()
            except (StoreError, OSError):
                # A failed pass (disk, LevelDB) is retried at the next interval; every step of a deletion is
                # atomic or recorded, so the store stays consistent.
                log.exception("maintenance pass failed")

    async def _compact_loop(self) -> None:
        while True:
            await self.clock.wait_until(self.clock.now() + self.interval)
            try:
                await self.compactor.run_pass()
            except (StoreError, OSError):
                log.exception("compaction pass failed")  # every step is crash-safe; retried next interval

    def _metrics(self) -> Iterator[Metric]:
        yield CounterMetricFamily("codex_maintenance_passes", "Block maintenance passes run", value=self.passes)
        yield CounterMetricFamily(
            "codex_maintenance_deleted_blocks", "Expired blocks deleted by maintenance", value=self.deleted
        )
        yield CounterMetricFamily(
            "codex_maintenance_deleted_packs",
            "Sealed pack files deleted whole because all their blocks expired",
            value=self.deleted_packs,
        )
        yield CounterMetricFamily(
            "codex_compaction_packs", "Sparse pack files rewritten and deleted", value=self.compactor.packs_compacted
        )
        yield CounterMetricFamily(
            "codex_compaction_bytes_moved", "Live block bytes copied by compaction", value=self.compactor.bytes_moved
        )
