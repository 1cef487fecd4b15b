"""Storing a byte stream as a dataset: blocks plus a manifest, with nothing left behind on failure.

The stream is cut into groups of ``group_blocks`` blocks (:func:`~codex_node.data.chunker.rechunk`). While a
few groups are hashed, written, flushed and committed in worker threads, the next one is read from the stream,
so network, hashing and disk overlap. Each group is one metadata batch that also records the upload's references
(:class:`~codex_node.stores.uploads.UploadSession`); the manifest is stored last, and only then do the references
become the dataset's. If anything fails before that — quota, a client that disconnects, cancellation, a crash — the
upload's references are dropped and blocks nobody else holds are deleted, now or at the next start.

Memory use is bounded by ``groups_in_flight + 1`` groups (4 MiB each by default) plus 32 bytes per block for the
manifest.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator

import structlog

from codex_node.data.chunker import rechunk
from codex_node.data.cid import Cid
from codex_node.data.manifest import BLOCK_SIZE, Manifest
from codex_node.stores.repostore import RepoStore
from codex_node.stores.uploads import UploadSession

log = structlog.get_logger(__name__)

GROUP_BLOCKS = 64
GROUPS_IN_FLIGHT = 3


async def store_dataset(
    repo: RepoStore,
    stream: AsyncIterable[bytes],
    *,
    filename: str | None = None,
    mimetype: str | None = None,
    ttl: int | None = None,
    block_size: int = BLOCK_SIZE,
    group_blocks: int = GROUP_BLOCKS,
    groups_in_flight: int = GROUPS_IN_FLIGHT,
) -> Cid:
    """Store ``stream`` as a dataset and return its manifest CID.

    Up to ``groups_in_flight`` groups are written at once (in worker threads), so one group's flush overlaps the
    next one's hashing. Raises whatever stopped the upload (e.g. :class:`~codex_node.errors.QuotaNotEnoughError`)
    after removing its blocks.
    """
    upload = UploadSession(repo)
    digests = bytearray()
    received = 0  # bytes read from the stream, whole groups or not: what an aborted upload reports
    size = 0
    seq = 0
    pending: deque[asyncio.Task[bytes]] = deque()
    finished = False
    stopped_by: BaseException | None = None

    async def counted() -> AsyncIterator[bytes]:
        nonlocal received
        async for piece in stream:
            received += len(piece)
            yield piece

    try:
        async for group in rechunk(counted(), block_size * group_blocks):
            if len(pending) >= groups_in_flight:
                digests += await pending.popleft()
            pending.append(asyncio.create_task(upload.put_group(seq, group, block_size, ttl)))
            size += len(group)
            seq += 1
        while pending:
            digests += await pending.popleft()
        manifest = Manifest.build(
            bytes(digests), dataset_size=size, block_size=block_size, filename=filename, mimetype=mimetype
        )
        cid = await upload.finish(manifest, ttl)
        finished = True
    except BaseException as e:  # noted for the log line, then re-raised as it is
        stopped_by = e
        raise
    finally:
        if not finished:
            if pending:
                # Let groups still in their worker threads commit (or fail) before their references are dropped.
                await asyncio.wait(pending)
                for task in pending:
                    if not task.cancelled():
                        task.exception()  # retrieved here; the error that stopped the upload propagates instead
            await upload.abort()
            log.info("upload aborted", bytes_received=received, reason=type(stopped_by).__name__)
    log.info("dataset stored", cid=cid.text, size=size, blocks=manifest.block_count)
    return cid
