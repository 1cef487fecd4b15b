"""Opening stored blocks for a zero-copy send: the regions of pack files that hold them, not their bytes.

A server that offers ASGI's zero-copy send (``api/zerocopy.py``) hands those regions to ``sendfile`` and the
bytes never enter the process. The checks are those of a positioned read (``RepoStore._read_run``): every block
has an index entry of the size the manifest implies, and its pack file holds that many bytes at its place; a
block that compaction moved while it was opened is looked up again. The bytes are not hashed (they are never
read here): a node whose ``--verify-reads`` asks for that serves with positioned reads instead.

Everything here blocks (``open``, ``fstat``); call it from a worker thread. It never changes the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from codex_node.data.cid import Cid
from codex_node.data.manifest import Manifest
from codex_node.errors import BlockNotFoundError, CorruptBlockError
from codex_node.stores.blockfiles import Spans
from codex_node.stores.blockmeta import BlockMeta
from codex_node.stores.repostore import RepoStore

_ATTEMPTS = 3


def open_run(repo: RepoStore, cids: Sequence[Cid], block_size: int, length: int) -> Spans:
    """Open consecutive blocks of ``block_size`` bytes (the last may be shorter), ``length`` bytes in all.

    Raises :class:`BlockNotFoundError` or :class:`CorruptBlockError` (wrong size, no pack file, a cut pack).
    """
    expected = [min((i + 1) * block_size, length) - i * block_size for i in range(len(cids))]
    return _open(repo, cids, expected)


def open_block(repo: RepoStore, cid: Cid) -> Spans:
    """Open one whole block. Raises :class:`BlockNotFoundError`, :class:`CorruptBlockError`."""
    meta = repo.block_meta(cid)
    if meta is None:
        raise BlockNotFoundError(f"block not found: {cid}")
    return _open(repo, [cid], [meta.size])


def _open(repo: RepoStore, cids: Sequence[Cid], expected: Sequence[int]) -> Spans:
    for _ in range(_ATTEMPTS):
        metas: list[BlockMeta] = []
        for cid, size in zip(cids, expected, strict=True):
            meta = repo.block_meta(cid)
            if meta is None:
                raise BlockNotFoundError(f"block not found: {cid}")
            if meta.size != size:
                raise CorruptBlockError(f"block {cid} has {meta.size} bytes, {size} expected")
            metas.append(meta)
        spans, found = repo.files.open_spans([m.location for m in metas])
        try:
            moved = _judge(repo, cids, metas, found)
        except BaseException:
            spans.close()
            raise
        if not moved:
            return spans
        spans.close()
    raise CorruptBlockError("blocks kept moving while they were opened")


def _judge(repo: RepoStore, cids: Sequence[Cid], metas: Sequence[BlockMeta], found: Sequence[int | None]) -> bool:
    """Whether a block moved while it was opened (look again); raises if one is missing or short on disk."""
    for cid, meta, got in zip(cids, metas, found, strict=True):
        if got == meta.size:
            continue
        if repo.block_meta(cid) != meta:
            return True  # compaction moved it, or it was deleted, while we opened it
        if got is None:
            raise CorruptBlockError(f"block {cid} has metadata but no file (pack {meta.pack:016x})")
        raise CorruptBlockError(f"block {cid} has {got} bytes on disk, its index says {meta.size}")
    return False


async def iter_dataset_spans(repo: RepoStore, manifest: Manifest, *, blocks_per_open: int) -> AsyncIterator[Spans]:
    """The dataset's blocks, ``blocks_per_open`` at a time, opened in worker threads. The caller closes each."""
    info = manifest.info
    for start in range(0, manifest.block_count, blocks_per_open):
        end = min(start + blocks_per_open, manifest.block_count)
        cids = [manifest.block_cid(i) for i in range(start, end)]
        length = min(end * info.block_size, info.dataset_size) - start * info.block_size
        yield await asyncio.to_thread(open_run, repo, cids, info.block_size, length)
