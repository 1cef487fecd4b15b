"""Whole datasets from the network, for the ``/data/{cid}/network…`` routes: the manifest, a background download
into the repo, and a stream while fetching.

All three start with the dataset's manifest, verified against its CID (from the repo if it is here). The
background download (``POST /data/{cid}/network``) stores the dataset exactly as an upload would: batch by batch
as the fetcher's parallel workers verify them, through an :class:`~codex_node.stores.uploads.UploadSession`, then
the manifest, so a download that fails or is stopped leaves nothing behind, and a finished one is listed by
``GET /data`` and read by ``GET /data/{cid}``. One download per dataset runs at a time; the tasks are owned here
and cancelled when the node stops. The stream (``GET …/network/stream``) fetches window by window in order, one
window ahead, and stores nothing: its memory is two windows (:data:`WINDOW_BLOCKS` blocks each) whatever the
dataset's size.

This module never serves HTTP (``api/routes/network.py`` does) and never reads a block it has not verified
(:class:`~codex_node.blockexchange.fetcher.BlockFetcher` checks each against its CID).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import structlog

from codex_node.blockexchange.fetcher import BlockFetcher, Payload
from codex_node.data.cid import Cid
from codex_node.data.manifest import Manifest
from codex_node.data.merkle import Buffer
from codex_node.errors import CodexError, CorruptBlockError, PeerError, ValidationError
from codex_node.stores.repostore import RepoStore
from codex_node.stores.uploads import UploadSession
from codex_node.utils.trackedtasks import TrackedTasks

log = structlog.get_logger(__name__)

WINDOW_BLOCKS = 128
"""Blocks fetched per window of a stream (and read per group of blocks a download finds here): 8 MiB of 64 KiB
blocks."""
SEGMENT_BLOCKS = 4096
"""The most blocks a download hands the fetcher at a time (256 MiB of 64 KiB blocks): their CIDs (and the next
segment's) are all the download holds in memory besides the fetcher's batches in flight."""
FIRST_SEGMENT_BLOCKS = 256
"""The first segment is short, so the first requests go out once its few CIDs are made (making 4,096 takes 20-35
ms, more while a fetch runs beside it); each next one is twice as long as the one before, up to
:data:`SEGMENT_BLOCKS`, and made in a worker thread while the one before is fetched: it is ready before the
workers run out of the one before (making 512 CIDs takes less than fetching 256 blocks)."""


def segment_bounds(block_count: int, first: int, largest: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each segment of a dataset of ``block_count`` blocks: ``first`` blocks, then each twice
    as long as the one before, up to ``largest``; one empty segment for an empty dataset."""
    bounds: list[tuple[int, int]] = []
    start, size = 0, first
    while start < block_count or not bounds:
        end = min(start + size, block_count)
        bounds.append((start, end))
        start, size = end, min(2 * size, largest)
    return bounds


@dataclass(frozen=True, slots=True)
class _Segment:
    uses: Counter[str]
    held: list[Cid]
    missing: list[Cid]


class NetworkDatasets:
    """Datasets fetched from peers (see the module docstring). A node part: :meth:`stop` cancels downloads."""

    def __init__(self, repo: RepoStore, fetcher: BlockFetcher, *, window_blocks: int = WINDOW_BLOCKS) -> None:
        if window_blocks < 1:
            raise ValueError("window_blocks must be at least 1")
        self._repo = repo
        self._fetcher = fetcher
        self._window = window_blocks
        self._tasks = TrackedTasks("network downloads")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._seq = 0  # the next upload-session group number (unique per node run is enough)

    async def start(self) -> None:
        self._tasks.reopen()

    async def stop(self) -> None:
        await self._tasks.cancel_all()

    async def manifest(self, cid: Cid) -> Manifest:
        """The dataset manifest ``cid``, verified against its CID: from the repo, else from a peer."""
        if not cid.is_manifest:
            raise ValidationError(f"{cid} is not a dataset manifest CID (a block or a protected manifest)")
        raw = await self._fetcher.get_manifest_block(cid)
        try:
            manifest = Manifest.decode(raw)
        except CorruptBlockError as e:
            raise PeerError(f"the manifest {cid} matches its CID but is not a dataset manifest: {e}") from e
        if manifest.cid() != cid:  # stored, it would be re-encoded under another CID
            raise PeerError(f"the manifest {cid} is not in canonical form")
        return manifest

    async def download(self, cid: Cid) -> Manifest:
        """Start fetching the dataset ``cid`` into the repo in the background (unless it is here or on its way)."""
        manifest = await self.manifest(cid)
        if self._repo.has_block(cid) or cid.text in self._running:
            return manifest
        task = self._tasks.spawn(self._download(cid, manifest), name=f"network download {cid.text}")
        self._running[cid.text] = task
        task.add_done_callback(lambda _: self._running.pop(cid.text, None))
        return manifest

    def downloading(self, cid: Cid) -> bool:
        return cid.text in self._running

    async def wait(self, cid: Cid) -> None:
        """Return once no download of ``cid`` runs (at once if none does)."""
        task = self._running.get(cid.text)
        if task is not None:
            await asyncio.wait([task])

    async def stream(self, cid: Cid, manifest: Manifest) -> AsyncIterator[bytes]:
        """The dataset's bytes in order, window by window, fetched one window ahead."""
        windows = range(0, manifest.block_count, self._window)
        current: asyncio.Future[bytes] | None = None
        ahead: asyncio.Future[bytes] | None = None
        try:
            for start in windows:
                current = ahead or asyncio.ensure_future(self._window_bytes(cid, manifest, start))
                following = start + self._window
                ahead = None
                if following < manifest.block_count:
                    ahead = asyncio.ensure_future(self._window_bytes(cid, manifest, following))
                yield await current
        finally:
            left = [f for f in (current, ahead) if f is not None and not f.done()]
            for f in left:
                f.cancel()
            if left:
                await asyncio.wait(left)

    async def _window_bytes(self, cid: Cid, manifest: Manifest, start: int) -> bytes:
        end = min(start + self._window, manifest.block_count)
        blocks = await self._fetcher.get_blocks([manifest.block_cid(i) for i in range(start, end)], hint=cid)
        return b"".join(blocks)

    async def _download(self, cid: Cid, manifest: Manifest) -> None:
        session = UploadSession(self._repo)
        info = manifest.info
        log.info("network download started", cid=cid.text, blocks=manifest.block_count, bytes=info.dataset_size)
        # Positions still owed a copy of each block on its way: its uses in every segment that found it missing.
        # The first copy to land stores them all; a copy fetched again for a later segment then stores none.
        owed: Counter[str] = Counter()

        async def store(blocks: list[tuple[Cid, Payload]]) -> None:
            items = [(c, data) for c, data in blocks for _ in range(owed.pop(c.text, 0))]
            if items:
                await self._store(session, items)

        try:
            await self._fetcher.fetch_parts(self._segments(session, cid, manifest, owed), hint=cid, on_verified=store)
            stored = await session.finish(manifest, None)
        except CodexError as e:
            await asyncio.shield(session.abort())
            log.warning("network download failed", cid=cid.text, error=str(e))
            return
        except BaseException:
            await asyncio.shield(session.abort())
            raise
        assert stored == cid  # manifest() accepted only the canonical form
        log.info("network download finished", cid=cid.text, blocks=manifest.block_count, bytes=info.dataset_size)

    async def _store(self, session: UploadSession, items: Sequence[tuple[Cid, Buffer]]) -> None:
        seq, self._seq = self._seq, self._seq + 1
        await session.put_verified(seq, items, None)

    async def _segments(
        self, session: UploadSession, key: Cid, manifest: Manifest, owed: Counter[str]
    ) -> AsyncIterator[list[Cid]]:
        """The blocks to fetch, segment by segment, for one fetch that runs across them all.

        Each segment's CIDs are made (and looked up here) in a worker thread while the one before is fetched; the
        blocks a segment finds here are read and referenced before its missing ones are given out (module
        docstring: only the fetcher's batches and two segments' CIDs are ever in memory).
        """
        bounds = segment_bounds(manifest.block_count, FIRST_SEGMENT_BLOCKS, SEGMENT_BLOCKS)
        ahead: asyncio.Future[_Segment] | None = asyncio.ensure_future(
            asyncio.to_thread(self._prepare, manifest, *bounds[0])
        )
        try:
            for i in range(len(bounds)):
                assert ahead is not None
                segment = await ahead
                ahead = None
                if i + 1 < len(bounds):  # made while this segment is fetched
                    ahead = asyncio.ensure_future(asyncio.to_thread(self._prepare, manifest, *bounds[i + 1]))
                held = segment.held
                for at in range(0, len(held), self._window):
                    group = held[at : at + self._window]
                    blocks = await self._fetcher.get_blocks(group, hint=key)
                    await self._store(
                        session,
                        [(c, data) for c, data in zip(group, blocks, strict=True) for _ in range(segment.uses[c.text])],
                    )
                owed.update({c.text: segment.uses[c.text] for c in segment.missing})
                yield segment.missing
        finally:
            if ahead is not None and not ahead.done():
                await asyncio.wait([ahead])  # a thread cannot be cancelled: let it finish

    def _prepare(self, manifest: Manifest, start: int, end: int) -> _Segment:
        """Blocks ``start…end`` of the dataset: how often each occurs, those here and those to fetch. Blocking (a
        worker thread); what it finds here may change before the segment is stored, which costs at most a fetch
        of a block that was here (stored once more, as a reference) or a read of one that is gone (fetched)."""
        cids = [manifest.block_cid(i) for i in range(start, end)]
        uses = Counter(c.text for c in cids)
        unique = list({c.text: c for c in cids}.values())
        sizes = self._repo.block_sizes(unique)
        held = [c for c, size in zip(unique, sizes, strict=True) if size is not None]
        missing = [c for c, size in zip(unique, sizes, strict=True) if size is None]
        return _Segment(uses, held, missing)
