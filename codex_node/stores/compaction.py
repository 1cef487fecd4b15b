"""Compaction: rewrite the sealed packs whose live fraction fell under a threshold, with bounded I/O.

A pack loses live bytes when single blocks are deleted (only the index changes) or when a put fails after its
append. Once a sealed pack's live bytes fall under ``threshold`` of its size, its live records are copied, a chunk
at a time, to the open packs of their blocks' expiry buckets, and each chunk's index entries are pointed at their
new places in one batch (``RepoStore.move_blocks``); when none is left, the pack file goes. Every step is one of
the store's ordinary steps — an append made durable before the index names it, a batch, a file unlinked after its
last entry moved — so a kill at any instant leaves a state the next start completes (``docs/packs.md``).

The copying is paced to ``rate`` bytes per second (an injected ``sleep`` and ``timer``), so uploads and proofs are
not starved of the disk. A moved block's bytes are checked against its CID on the way (a scrub of what moves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from codex_node.stores.blockfiles import Location
from codex_node.stores.repostore import RepoStore, in_thread

log = structlog.get_logger(__name__)

DEFAULT_THRESHOLD = 0.5
DEFAULT_RATE = 64 << 20
DEFAULT_CHUNK = 4 << 20


class Pacer:
    """Sleeps so that the bytes reported to :meth:`spent` flow at no more than ``rate`` bytes per second."""

    def __init__(
        self,
        rate: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate
        self._sleep = sleep
        self._timer = timer
        self._start = timer()
        self._bytes = 0

    async def spent(self, n: int) -> None:
        self._bytes += n
        ahead = self._bytes / self.rate - (self._timer() - self._start)
        if ahead > 0:
            await self._sleep(ahead)


class Compactor:
    """Finds and compacts sparse packs of ``repo`` (see the module docstring)."""

    def __init__(
        self,
        repo: RepoStore,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        rate: float = DEFAULT_RATE,
        chunk_bytes: int = DEFAULT_CHUNK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < threshold <= 1 or chunk_bytes <= 0:
            raise ValueError(f"threshold ({threshold}) must be in (0, 1] and chunk_bytes ({chunk_bytes}) positive")
        self.repo = repo
        self.threshold = threshold
        self.chunk_bytes = chunk_bytes
        self.rate = rate
        self._sleep = sleep
        self._timer = timer
        self.packs_compacted = 0
        self.bytes_moved = 0

    def candidates(self) -> list[int]:
        """Sealed packs with blocks whose live fraction is under the threshold, sparsest first."""
        out = []
        for pid, r in self.repo.pack_records().items():
            if r.count and r.size and r.live < self.threshold * r.size and self.repo.files.is_sealed(pid):
                out.append((r.live / r.size, pid))
        return [pid for _, pid in sorted(out)]

    async def run_pass(self, limit: int = 4) -> int:
        """Compact up to ``limit`` candidate packs; return how many were compacted."""
        done = 0
        for pid in self.candidates()[:limit]:
            if await self.compact(pid):
                done += 1
        return done

    async def compact(self, pid: int) -> bool:
        """Move the live blocks of pack ``pid`` elsewhere and delete it; return whether it is gone."""
        pacer = Pacer(self.rate, sleep=self._sleep, timer=self._timer)
        records = await in_thread(self.repo.live_records, pid)
        moved = 0
        chunk: list[tuple[str, Location]] = []
        size = 0
        for record in [*records, None]:
            if record is not None:
                chunk.append(record)
                size += record[1].length
            if chunk and (record is None or size >= self.chunk_bytes):
                moved += await in_thread(self.repo.move_blocks, list(chunk))
                await pacer.spent(size)
                chunk, size = [], 0
        gone = await in_thread(self.repo.drop_if_empty, pid)
        self.bytes_moved += moved
        if gone:
            self.packs_compacted += 1
        log.info("pack compacted", pack=pid, blocks=len(records), bytes_moved=moved, deleted=gone)
        return gone
