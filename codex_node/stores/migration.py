"""Conversion of a data dir from the file-per-block layout (``stores/legacyblocks.py``) to pack files.

It runs at the first start of a new node on an old data dir, before the repo serves, and is resumable: each page of
blocks is appended to packs and its index entries rewritten (with a cursor, ``meta/migrate/cursor``) in one batch,
and only then are the page's old files unlinked. A kill at any point leaves either the old entry pointing at its
old file, or the new entry pointing at its durable pack bytes; the next start goes on from the cursor (bytes
appended but not committed are cut off or stay dead, like any uncommitted append). When every entry is converted
the ``blocks/`` folder goes (with any file a kill left there) and ``meta/layout`` says ``packs/1``.

Progress is logged every page (``converting data dir to pack files``, with ``converted`` and ``total``).
"""

from __future__ import annotations

import shutil
import time
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from codex_node.data.cid import Cid, parse_cid
from codex_node.stores.blockfiles import Buffer, Location
from codex_node.stores.blockmeta import (
    LAYOUT_KEY,
    LAYOUT_PACKS,
    PENDING_PREFIX,
    TOTAL_KEY,
    TTL_PREFIX,
    BlockMeta,
    MetaTx,
)
from codex_node.stores.legacyblocks import LegacyBlockFiles

if TYPE_CHECKING:
    from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)

CURSOR_KEY = "meta/migrate/cursor"
LEGACY_DIR = "blocks"
PAGE_BLOCKS = 512


def needs_conversion(repo: RepoStore) -> bool:
    """Whether the data dir holds (part of) the old layout: its folder, a conversion cursor or its pending markers."""
    kv = repo.kv
    return (
        (repo.files.root / LEGACY_DIR).is_dir()
        or kv.get(CURSOR_KEY) is not None
        or next(kv.iterate(PENDING_PREFIX, limit=1), None) is not None
    )


def convert(repo: RepoStore) -> int:
    """Convert the data dir (see the module docstring); return how many blocks were moved into packs."""
    kv = repo.kv
    legacy = LegacyBlockFiles(repo.files.root, sync="none" if repo.files.sync == "none" else "fsync")
    try:
        _finish_pending(repo, legacy)
        raw_total = kv.get(TOTAL_KEY)
        total = 0 if raw_total is None else int(raw_total)
        raw_cursor = kv.get(CURSOR_KEY)
        cursor = None if raw_cursor is None else raw_cursor.decode()
        converted = 0
        started = time.monotonic()
        resumed = cursor is not None
        log.info("converting data dir to pack files", root=str(repo.files.root), total=total, resumed=resumed)
        while True:
            after = None if cursor is None else TTL_PREFIX + cursor
            page = list(kv.iterate(TTL_PREFIX, start_after=after, limit=PAGE_BLOCKS))
            if not page:
                break
            cursor = page[-1][0][len(TTL_PREFIX) :]
            converted += _convert_page(repo, legacy, page, cursor)
            log.info("converting data dir to pack files", converted=converted, total=total, cursor=cursor)
        legacy.close()
        shutil.rmtree(repo.files.root / LEGACY_DIR, ignore_errors=True)
        batch = kv.batch()
        batch.put(LAYOUT_KEY, LAYOUT_PACKS)
        batch.delete(CURSOR_KEY)
        kv.write(batch)
        log.info(
            "data dir converted to pack files",
            blocks=converted,
            seconds=round(time.monotonic() - started, 1),
            packs=len(repo.pack_records()),
        )
        return converted
    finally:
        legacy.close()


def _finish_pending(repo: RepoStore, legacy: LegacyBlockFiles) -> None:
    """What the old layout's recovery did: unlink files under pending markers that have no entry, then the markers."""
    markers = [key[len(PENDING_PREFIX) :] for key, _ in repo.kv.iterate(PENDING_PREFIX)]
    if not markers:
        return
    legacy.remove([parse_cid(text) for text in markers if repo.kv.get(TTL_PREFIX + text) is None])
    legacy.remove_temps([parse_cid(text) for text in markers])
    batch = repo.kv.batch()
    for text in markers:
        batch.delete(PENDING_PREFIX + text)
    repo.kv.write(batch)


def _convert_page(repo: RepoStore, legacy: LegacyBlockFiles, page: list[tuple[str, bytes]], cursor: str) -> int:
    by_bucket: dict[int, list[tuple[Cid, BlockMeta, Buffer]]] = defaultdict(list)
    missing: list[tuple[Cid, BlockMeta]] = []
    for key, raw in page:
        meta = BlockMeta.decode(raw)
        if meta.pack:
            continue  # converted before a kill
        cid = parse_cid(key[len(TTL_PREFIX) :])
        try:
            data = legacy.read(cid)
        except FileNotFoundError:
            missing.append((cid, meta))
            continue
        if len(data) != meta.size:
            missing.append((cid, meta))
            continue
        by_bucket[repo.files.bucket(meta.expiry)].append((cid, meta, data))
    placed: list[tuple[Cid, BlockMeta, Location]] = []
    packs: set[int] = set()
    try:
        for items in by_bucket.values():
            locations = repo.files.append(items[0][1].expiry, [(cid, data) for cid, _, data in items])
            packs.update(loc.pack for loc in locations)
            placed += [(cid, meta, loc) for (cid, meta, _), loc in zip(items, locations, strict=True)]

        def stage(tx: MetaTx) -> None:
            for cid, meta, loc in placed:
                if tx.meta(cid.text) == meta:  # unchanged since it was read
                    tx.update(cid.text, replace(meta, pack=loc.pack, offset=loc.offset))
                    tx.pack_ends[loc.pack] = max(tx.pack_ends.get(loc.pack, 0), loc.offset + loc.length)
            for cid, meta in missing:
                if tx.meta(cid.text) == meta:
                    tx.remove(cid.text, meta)
            tx.batch.put(CURSOR_KEY, cursor.encode())

        repo.commit_staged(stage)
    finally:
        repo.files.done(sorted(packs))
    for cid, _ in missing:
        log.warning("block of the old layout has no file (or a cut one): dropped from the index", cid=cid.text)
    legacy.remove([cid for cid, _, _ in placed])
    return len(placed)
