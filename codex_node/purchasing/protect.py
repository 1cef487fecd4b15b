"""Erasure-coding a stored dataset into its slots and storing them: the slow half of ``POST /storage/request``.

:func:`protect_dataset` reads the dataset's blocks from the repo a group of rows at a time, encodes the group in a
worker thread (zfec and the slot-root hashing of ``data/erasure.py``; the event loop never runs either), and
stores each slot's share of the group through one :class:`~codex_node.stores.uploads.UploadSession` per slot.
When every row is stored, each slot's session is finished with its **slot manifest** (a dataset manifest over the
slot's blocks, ``docs/storage-requests.md``) and the protected manifest listing them is stored as a block.

Memory: one group of rows, read and encoded (``group_rows × (2K + M)`` blocks, at most about 12 MiB), plus
32 bytes per stored block for the slot manifests' digest lists.

Nothing half written: if anything fails or the caller is cancelled (its client went away), every session is
aborted and every slot manifest and protected manifest this call created is deleted again, so the repo holds what
it held before. What already existed (the same dataset protected with the same parameters before) is left alone.
A crash midway is cleaned up by the repo's start-up recovery (the sessions' release jobs), except finished slot
manifests, which expire with the repo's default TTL like any dataset nobody holds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from codex_node.data.cid import Cid
from codex_node.data.erasure import EncodedRow, ErasureEncoder, ErasureParams
from codex_node.data.manifest import Manifest
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import ErasureDataError
from codex_node.stores.repostore import RepoStore
from codex_node.stores.uploads import UploadSession

log = structlog.get_logger(__name__)

GROUP_BYTES = 4 * 1024 * 1024
"""Encoded bytes per group of rows (one thread hop, one store batch per slot)."""
PROGRESS_EVERY = 5.0
"""Seconds between progress log lines."""


@dataclass(frozen=True, slots=True)
class ProtectedDataset:
    """A dataset erasure-coded and stored: its protected manifest, its CID and what this call created."""

    cid: Cid
    manifest: ProtectedManifest
    created: tuple[Cid, ...]
    """Slot manifests and protected manifest that did not exist before (what :func:`release` deletes)."""


async def protect_dataset(
    repo: RepoStore, original: Cid, manifest: Manifest, params: ErasureParams, *, ttl: int | None = None
) -> ProtectedDataset:
    """Erasure-code the stored dataset ``original`` with ``params`` and store its slots (module docstring)."""
    encoder = ErasureEncoder(params, manifest.info.dataset_size)
    layout = encoder.layout
    rows = layout.rows
    group_rows = max(1, GROUP_BYTES // (params.slots * BLOCK_SIZE))
    sessions = [UploadSession(repo) for _ in range(params.slots)]
    digests = [bytearray() for _ in range(params.slots)]
    created: list[Cid] = []
    blocks: dict[int, bytes] = {}
    pending_rows = encoder.rows(blocks.pop)  # pulls block i as blocks.pop(i): filled before each thread hop
    started = last_log = time.monotonic()
    done = False
    log.info(
        "erasure coding started",
        cid=original.text,
        k=params.k,
        m=params.m,
        rows=rows,
        dataset_bytes=layout.dataset_size,
        encoded_bytes=rows * params.slots * BLOCK_SIZE,
    )
    try:
        for first in range(0, rows, group_rows):
            count = min(group_rows, rows - first)
            indices = range(first * params.k, min((first + count) * params.k, layout.block_count))
            read = await asyncio.gather(*(repo.get_block(manifest.block_cid(i)) for i in indices))
            blocks.update(zip(indices, read, strict=True))
            encoded = await asyncio.to_thread(_pull, pending_rows, count)
            for s in range(params.slots):
                share = b"".join(row.blocks[s] for row in encoded)
                digests[s] += await sessions[s].put_group(first, share, BLOCK_SIZE, ttl)
            now = time.monotonic()
            if now - last_log >= PROGRESS_EVERY:
                last_log = now
                encoded_rows = first + count
                log.info(
                    "erasure coding progress",
                    cid=original.text,
                    rows_done=encoded_rows,
                    rows=rows,
                    percent=round(100 * encoded_rows / rows, 1),
                    mib_per_s=round(encoded_rows * params.k * BLOCK_SIZE / 2**20 / max(now - started, 1e-9), 1),
                )
        # The generator's last check (no block left over) and the slot roots need it to run to its end.
        await asyncio.to_thread(_pull, pending_rows, 0, finish=True)
        slot_manifests: list[Cid] = []
        for s in range(params.slots):
            slot = Manifest.build(bytes(digests[s]), dataset_size=rows * BLOCK_SIZE)
            cid = slot.cid()
            existed = repo.has_block(cid)
            await sessions[s].finish(slot, ttl)
            if not existed:
                created.append(cid)
            slot_manifests.append(cid)
        protected = ProtectedManifest.from_encoder(encoder, original, slot_manifests)
        pcid = protected.cid()
        if await repo.put_block(pcid, protected.encode(), ttl):
            created.append(pcid)
        done = True
    finally:
        if not done:
            await asyncio.shield(_undo(repo, sessions, created))
    elapsed = time.monotonic() - started
    log.info(
        "erasure coding finished",
        cid=original.text,
        protected=pcid.text,
        seconds=round(elapsed, 3),
        mib_per_s=round(layout.dataset_size / 2**20 / max(elapsed, 1e-9), 1),
        slot_size=protected.slot_size,
    )
    return ProtectedDataset(pcid, protected, tuple(created))


def _pull(rows: Iterator[EncodedRow], count: int, *, finish: bool = False) -> list[EncodedRow]:
    """The next ``count`` rows (in a worker thread); with ``finish``, run the generator to its end."""
    out = [next(rows) for _ in range(count)]
    if finish and next(rows, None) is not None:
        raise ErasureDataError("the encoder gave more rows than the layout has")
    return out


async def release(repo: RepoStore, dataset: ProtectedDataset) -> None:
    """Delete what :func:`protect_dataset` created (a request that failed to post)."""
    await _undo(repo, [], list(dataset.created))


async def _undo(repo: RepoStore, sessions: list[UploadSession], created: list[Cid]) -> None:
    for session in sessions:
        await session.abort()
    for cid in reversed(created):
        if repo.has_block(cid):
            await repo.del_block(cid)
    log.info("protected dataset released", deleted=len(created))
