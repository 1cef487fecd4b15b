"""The repo store: content-addressed blocks with quota, expiry and dataset references.

Block bytes live in pack files (``stores/blockfiles.py``); everything else lives in the shared LevelDB (``kv``):

=============================  ==============================================================================
``meta/ttl/<cid>``             the index entry, :class:`BlockMeta` ``{expiry, size, refCount, standalone, pack,
                               offset}``; a block exists iff this key exists
``meta/pack/<id>``             a pack's books, :class:`PackRecord` ``{size, count, live, maxExpiry}``
``meta/packs/next``            the id the next pack gets (ids are never reused)
``meta/quota/used``            the quota record ``{max, used, reserved}`` (``stores/quota.py``)
``meta/total``                 number of blocks
``meta/manifest/<cid>``        summary of a stored manifest (for ``GET /data`` without reading files)
``meta/release/<job>/<seq>``   block digests whose dataset reference must be dropped (an upload that has not
                               finished, or a dataset being deleted)
``meta/layout``                ``packs/1`` once the data dir holds pack files (``stores/migration.py``)
=============================  ==============================================================================

Invariants, kept by writing every multi-key change as ONE batch: ``quota.used`` is the sum of the sizes of the
blocks with an index entry and ``meta/total`` their number; every index entry points at its complete bytes in a
pack (the bytes are durable before the entry is written); a pack's record counts exactly the entries that point
into it and its ``size`` covers them all; every pack file has a record (the record is written before the file is
made, and removed after the file is unlinked). A pack whose count is 0 is deleted — at once when a deletion
empties it, and by start-up recovery after a kill. Start-up reads only the pack records and the release jobs —
never the whole index, nor a folder — and cuts each pack file back to its recorded size (a torn or uncommitted
tail), so start-up time does not grow with the number of blocks.

Putting a block: append to the open pack of its expiry bucket → flush → one batch with the entries, the pack
records, the quota and the count. Deleting: one batch removes the entries and updates the pack records; no file
is touched unless a pack became empty. A SIGKILL anywhere leaves a state recovery completes. Pack format and the
crash-safety argument: ``docs/packs.md``.

References: ``refCount`` counts the dataset references to a data block (an occurrence in a manifest, or in an
upload still running). ``standalone`` marks blocks stored on their own (``put_block``, e.g. slot data of a sale).
Dropping the last dataset reference deletes a block unless it is standalone; expiry deletes a block only when no
dataset references it — a referenced block goes with its dataset, whose manifest is stored last and so never
expires before its blocks. Raising a manifest's expiry therefore keeps the whole dataset.

Upload sessions (a dataset stored group by group) are in ``stores/uploads.py``; the records and their keys in
``stores/blockmeta.py``.

Threading: metadata is changed only under one lock, by short synchronous methods (quota, expiry, lookups) that
may be called from the event loop; everything touching files is ``async`` and runs in worker threads. Lock
order: the file layer's allocation lock, then the store lock (a new pack is recorded under both); the store never
calls the file layer while it holds its own lock.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TypeVar

import structlog
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from codex_node import metrics
from codex_node.clock import Clock
from codex_node.data.cid import DIGEST_SIZE, Cid, block_cid_from_digest, manifest_cid, parse_cid
from codex_node.data.manifest import Manifest, ManifestInfo
from codex_node.errors import BlockNotFoundError, CorruptBlockError, StoreError, ValidationError
from codex_node.stores import migration
from codex_node.stores.blockfiles import BlockFiles, Buffer, Location
from codex_node.stores.blockmeta import (
    LAYOUT_KEY,
    LAYOUT_PACKS,
    MANIFEST_PREFIX,
    NEXT_PACK_KEY,
    PACK_PREFIX,
    RELEASE_PREFIX,
    TOTAL_KEY,
    TTL_PREFIX,
    BlockMeta,
    MetaTx,
    PackRecord,
    pack_key,
)
from codex_node.stores.diskspace import disk_full, is_disk_full, warn_if_quota_exceeds_disk
from codex_node.stores.kv import KVStore, WriteBatch
from codex_node.stores.quota import QUOTA_KEY, Quota

log = structlog.get_logger(__name__)

CORRUPT_READS = Counter(
    "codex_repostore_corrupt_reads", "Blocks read from disk whose bytes did not match their CID (refused)"
)

# Digests per release record written when a dataset is deleted (32 KiB values).
_RELEASE_RECORD_DIGESTS = 1024
# Release records handled per metadata batch.
_RELEASE_RECORDS_PER_BATCH = 8
# Blocks per batch when many expiries change at once.
_EXPIRY_BATCH = 4096
# Reads retried when a block moved (compaction) while it was read.
_READ_ATTEMPTS = 3

_T = TypeVar("_T")

# What every stored manifest CID's text starts with (codec and hash are in its first bytes): tells a manifest from
# a data block without decoding the CID, when a pack's hundreds of thousands of records are walked.
_MANIFEST_TEXT = manifest_cid(b"").text[:9]


async def in_thread(fn: Callable[..., _T], *args: object) -> _T:
    """Run ``fn`` in a worker thread and, if cancelled, wait for the thread before re-raising.

    A thread cannot be stopped; letting the caller go on (e.g. to clean up an aborted upload) while the thread
    still commits would race with that clean-up.
    """
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


class RepoStore:
    """Blocks, quota and expiry over a :class:`BlockFiles` and the shared :class:`KVStore`.

    Construction runs crash recovery (bounded by what was in flight, not by the store size). ``kv`` is shared
    with other parts (sales) and is closed by its owner, not by :meth:`close`.
    """

    def __init__(
        self,
        kv: KVStore,
        files: BlockFiles,
        *,
        clock: Clock,
        quota_max: int,
        block_ttl: int,
        registry: CollectorRegistry | None = None,
        verify_reads: bool = False,
    ) -> None:
        self.kv = kv
        self.verify_reads = verify_reads  # hash every block a download reads too (--verify-reads), not only get_block
        self.files = files
        self.clock = clock
        self.block_ttl = block_ttl
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # A CID is handled by one put at a time (others wait), and never by a put and a deletion at once.
        self._busy: set[str] = set()  # CIDs a put is handling; deletions skip them
        self._packs: dict[int, PackRecord] = {}
        files.on_new_pack = self._new_pack
        self._inflight_bytes = 0
        raw = kv.get(QUOTA_KEY)
        quota = Quota(max=quota_max) if raw is None else Quota.decode(raw)
        if quota.max != quota_max or raw is None:
            if quota.total_used > quota_max:
                log.warning("quota below current usage", quota_max=quota_max, used=quota.used, reserved=quota.reserved)
            quota = Quota(quota_max, quota.used, quota.reserved)
            kv.put(QUOTA_KEY, quota.encode())
        self._quota = quota
        warn_if_quota_exceeds_disk(files.root, quota.max, quota.used)
        total = kv.get(TOTAL_KEY)
        self._total = 0 if total is None else int(total)
        self._recover()
        self._unregister = metrics.register(metrics.LiveCollector(self._metrics, _METRIC_NAMES), registry)

    # --- quota (sync: quick, callable from the event loop) -------------------------------------------------------

    def quota(self) -> Quota:
        return self._quota

    @property
    def total_blocks(self) -> int:
        return self._total

    def reserve(self, n: int) -> Quota:
        """Reserve ``n`` bytes (raises :class:`QuotaNotEnoughError`)."""
        return self.commit_with_quota(self.kv.batch(), n)

    def release(self, n: int) -> Quota:
        """Give back ``n`` reserved bytes (raises :class:`QuotaUnderflowError` if fewer are reserved)."""
        return self.commit_with_quota(self.kv.batch(), -n)

    def commit_with_quota(self, batch: WriteBatch, reserved_delta: int) -> Quota:
        """Write ``batch`` together with the quota changed by ``reserved_delta``, atomically; return the new quota.

        For callers whose own records must change with the reserved bytes (sales reservations). Raises
        :class:`QuotaNotEnoughError` or :class:`QuotaUnderflowError` and writes nothing when the change does not fit.
        """
        with self._lock:
            new = self._quota.change(reserved=reserved_delta)
            batch.put(QUOTA_KEY, new.encode())
            self.kv.write(batch)
            self._quota = new
            return new

    # --- lookups and expiry (sync) ------------------------------------------------------------------------------

    def has_block(self, cid: Cid) -> bool:
        return self.kv.get(TTL_PREFIX + cid.text) is not None

    def block_meta(self, cid: Cid) -> BlockMeta | None:
        raw = self.kv.get(TTL_PREFIX + cid.text)
        return None if raw is None else BlockMeta.decode(raw)

    def block_metas(self, cids: Sequence[Cid]) -> list[BlockMeta | None]:
        """:meth:`block_meta` of each CID, read as one group."""
        raws = self.kv.get_many([TTL_PREFIX + cid.text for cid in cids])
        return [None if raw is None else BlockMeta.decode(raw) for raw in raws]

    def block_sizes(self, cids: Sequence[Cid]) -> list[int | None]:
        """The stored size of each CID (``None``: not stored here), read as one group."""
        return [None if meta is None else meta.size for meta in self.block_metas(cids)]

    def ensure_expiry(self, cid: Cid, expiry: int) -> None:
        """Raise the block's expiry to at least ``expiry`` (never lowers). Raises :class:`BlockNotFoundError`."""
        if not self._change_expiry([cid], expiry, lower=False):
            raise BlockNotFoundError(f"block not found: {cid}")

    def set_expiry(self, cid: Cid, expiry: int) -> None:
        """Set the block's expiry, lowering it if needed (a sale that ended gives its blocks back).

        A block that a dataset references (``refCount > 0``) is never lowered: the dataset still needs it.
        Raises :class:`BlockNotFoundError`.
        """
        if not self._change_expiry([cid], expiry, lower=True):
            raise BlockNotFoundError(f"block not found: {cid}")

    async def ensure_expiry_many(self, cids: Iterable[Cid], expiry: int) -> int:
        """:meth:`ensure_expiry` for many blocks in few batches; missing blocks are skipped. Returns the count found."""
        return await in_thread(self._change_expiry, list(cids), expiry, False)

    async def set_expiry_many(self, cids: Iterable[Cid], expiry: int) -> int:
        """:meth:`set_expiry` for many blocks in few batches; missing blocks are skipped. Returns the count found."""
        return await in_thread(self._change_expiry, list(cids), expiry, True)

    def _change_expiry(self, cids: Sequence[Cid], expiry: int, lower: bool) -> int:
        found = 0
        for start in range(0, len(cids), _EXPIRY_BATCH):
            with self._lock:
                tx = MetaTx(self.kv)
                for cid in cids[start : start + _EXPIRY_BATCH]:
                    meta = tx.meta(cid.text)
                    if meta is None:
                        continue
                    found += 1
                    new = expiry if lower and meta.ref_count == 0 else max(meta.expiry, expiry)
                    if new != meta.expiry:
                        tx.update(cid.text, replace(meta, expiry=new))
                self._commit(tx)
        return found

    def expiry_page(self, start_after: str | None, limit: int) -> list[tuple[Cid, BlockMeta]]:
        """Up to ``limit`` blocks in key order after the CID text ``start_after`` (maintenance walks with this)."""
        after = None if start_after is None else TTL_PREFIX + start_after
        out = []
        for key, value in self.kv.iterate(TTL_PREFIX, start_after=after, limit=limit):
            out.append((parse_cid(key[len(TTL_PREFIX) :]), BlockMeta.decode(value)))
        return out

    def manifests(self) -> list[tuple[Cid, ManifestInfo]]:
        """Every stored manifest with its summary, in CID order."""
        return [
            (parse_cid(key[len(MANIFEST_PREFIX) :]), ManifestInfo.decode(value))
            for key, value in self.kv.iterate(MANIFEST_PREFIX)
        ]

    # --- putting blocks (async) ---------------------------------------------------------------------------------

    async def put_block(self, cid: Cid, data: Buffer, ttl: int | None = None) -> bool:
        """Store a standalone block; return whether it was new. An existing block keeps max(old, new) expiry.

        Raises :class:`CorruptBlockError` if ``data`` does not hash to ``cid``, :class:`QuotaNotEnoughError`.
        """
        added, _ = await in_thread(self._put_verified, [(cid, data)], ttl, None, 0)
        return added == 1

    async def put_blocks(
        self,
        blocks: Sequence[tuple[Cid, Buffer]],
        ttl: int | None = None,
        *,
        batch: WriteBatch | None = None,
        reserved_delta: int = 0,
        verified: bool = False,
    ) -> int:
        """Store several standalone blocks with one metadata batch; return how many bytes were new.

        ``verified``: the caller has just checked every block against its CID (the block fetcher does, before it
        hands a peer's block on), so the store does not hash them a second time.

        ``batch`` and ``reserved_delta`` are written atomically with the blocks' metadata: a sale storing slot
        data passes its reservation change and ``-(bytes of the blocks)`` so the bytes move from reserved to used
        in one step, which never needs free quota. ``batch`` is consumed (the store adds its own operations).
        Raises :class:`CorruptBlockError`, :class:`ValidationError`, :class:`QuotaNotEnoughError` (nothing stored,
        ``batch`` not written).
        """
        _, added_bytes = await in_thread(self._put_verified, list(blocks), ttl, batch, reserved_delta, verified)
        return added_bytes

    def _put_verified(
        self,
        blocks: list[tuple[Cid, Buffer]],
        ttl: int | None,
        batch: WriteBatch | None,
        reserved_delta: int,
        verified: bool = False,
    ) -> tuple[int, int]:
        for cid, data in blocks:
            if not cid.is_storable:
                raise ValidationError(f"cannot store {cid}: only raw and dag-json blocks under sha2-256")
            if not verified and not cid.matches(data):
                raise CorruptBlockError(f"data does not match {cid}")
        return self.write_blocks(
            blocks, ttl=ttl, ref=False, standalone=True, batch=batch, reserved_delta=reserved_delta
        )

    def write_blocks(
        self,
        blocks: Sequence[tuple[Cid, Buffer]],
        *,
        ttl: int | None,
        ref: bool,
        standalone: bool,
        extra: Callable[[MetaTx], None] | None = None,
        batch: WriteBatch | None = None,
        reserved_delta: int = 0,
    ) -> tuple[int, int]:
        """Store ``blocks``; return the number of new blocks and bytes. The module docstring lists the steps.

        The one write path of the store (blocking: call it from a worker thread). Each block gains a dataset
        reference if ``ref``, and is marked ``standalone`` if asked; ``extra`` adds its own operations to the same
        metadata batch, under the store lock, after the blocks' records are staged (an upload's reference records,
        ``stores/uploads.py``); ``batch`` and ``reserved_delta``: see :meth:`put_blocks`.
        """
        unique = {cid.text: (cid, data) for cid, data in reversed(blocks)}
        with self._cond:
            self._cond.wait_for(lambda: self._busy.isdisjoint(unique))
            # In the caller's order: a dataset's blocks then follow each other in their pack, and read back as
            # one sequential read.
            stored = self.kv.get_many([TTL_PREFIX + text for text in unique])
            held = {text for text, raw in zip(unique, stored, strict=True) if raw is not None}
            to_write = [(cid, data) for text, (cid, data) in reversed(unique.items()) if text not in held]
            new_bytes = sum(len(data) for _, data in to_write)
            if new_bytes:
                # Early refusal before any byte is written, counting other puts in flight; the commit below
                # checks again exactly.
                self._quota.change(used=new_bytes + self._inflight_bytes, reserved=reserved_delta)
            self._busy.update(unique)
            self._inflight_bytes += new_bytes
        committed = False
        placed: dict[str, Location] = {}
        expiry = self.clock.now() + (self.block_ttl if ttl is None else ttl)
        try:
            if to_write:
                try:
                    locations = self.files.append(expiry, to_write)
                except OSError as e:
                    if is_disk_full(e):  # the append was cut back off its pack
                        raise disk_full(self.files.root, new_bytes) from e
                    raise
                placed = {cid.text: loc for (cid, _), loc in zip(to_write, locations, strict=True)}
            with self._lock:
                tx = MetaTx(self.kv, batch)
                tx.reserved = reserved_delta
                tx.prefetch([cid.text for cid, _ in blocks])
                for cid, data in blocks:
                    meta = tx.meta(cid.text)
                    if meta is None:
                        loc = placed.get(cid.text)
                        if loc is None:  # cannot happen: a busy block is neither deleted nor written by another
                            raise StoreError(f"{cid} vanished while it was being stored")
                        tx.add(cid.text, BlockMeta(expiry, len(data), int(ref), standalone, loc.pack, loc.offset))
                    elif meta.size != len(data):
                        raise CorruptBlockError(f"{cid} is stored with {meta.size} bytes, not {len(data)}")
                    else:
                        tx.update(
                            cid.text,
                            replace(
                                meta,
                                expiry=max(meta.expiry, expiry),
                                ref_count=meta.ref_count + int(ref),
                                standalone=meta.standalone or standalone,
                            ),
                        )
                for loc in placed.values():
                    tx.pack_ends[loc.pack] = max(tx.pack_ends.get(loc.pack, 0), loc.offset + loc.length)
                if extra is not None:
                    extra(tx)
                self._commit(tx)
                committed = True
                return tx.blocks, tx.used
        finally:
            self._end_put(unique, new_bytes, {loc.pack for loc in placed.values()}, committed)

    def _end_put(self, unique: dict[str, tuple[Cid, Buffer]], new_bytes: int, packs: set[int], ok: bool) -> None:
        self.files.done(sorted(packs))
        with self._cond:
            self._busy.difference_update(unique)
            self._inflight_bytes -= new_bytes
            self._cond.notify_all()
        if not ok:
            # The bytes stay in their pack as dead bytes (no entry points at them); a pack left with no block goes
            # now — also one made for this put whose append failed (it is not in ``packs``).
            self._drop_empty(pid for pid, r in self.pack_records().items() if r.count == 0)

    # --- deleting (async) ---------------------------------------------------------------------------------------

    async def del_block(self, cid: Cid) -> None:
        """Delete a block, or a whole dataset when ``cid`` is a manifest.

        A data block that a dataset references is refused (:class:`ValidationError`): delete the dataset instead.
        Raises :class:`BlockNotFoundError`.
        """
        if not self.has_block(cid):
            raise BlockNotFoundError(f"block not found: {cid}")
        if cid.is_manifest:
            await in_thread(self._delete_manifest, cid, None)
        else:
            await in_thread(self._delete_blocks, [cid], None, True)

    async def delete_expired(self, cids: Sequence[Cid], now: int) -> int:
        """Delete those of ``cids`` whose expiry is at or before ``now``, except blocks a dataset references;
        an expired manifest goes with its dataset's references. Returns how many of ``cids`` were deleted."""
        return await in_thread(self._delete_expired, list(cids), now)

    def _delete_expired(self, cids: list[Cid], now: int) -> int:
        deleted = self._delete_blocks([c for c in cids if not c.is_manifest], now, False)
        for cid in cids:
            if cid.is_manifest:
                deleted += self._delete_manifest(cid, now)
        return deleted

    async def delete_expired_packs(self, now: int, limit: int = 64) -> tuple[int, int]:
        """Delete whole sealed packs whose blocks have all expired (none referenced by a dataset, no manifest): each
        pack's entries go in one batch, then its file. Returns (packs, blocks) deleted. Seals first the open packs
        of expiry buckets that have passed."""
        return await in_thread(self._delete_expired_packs, now, limit)

    def _delete_expired_packs(self, now: int, limit: int) -> tuple[int, int]:
        self.files.seal_before(self.files.bucket(now))
        with self._lock:
            candidates = [pid for pid, r in self._packs.items() if r.count and r.max_expiry <= now]
        packs = blocks = 0
        for pid in candidates:
            if packs >= limit:
                break
            if not self.files.is_sealed(pid):
                continue
            deleted = self._delete_pack_if_expired(pid, now)
            if deleted:
                packs += 1
                blocks += deleted
        if packs:
            log.info("expired packs deleted", packs=packs, blocks=blocks)
        return packs, blocks

    def _delete_pack_if_expired(self, pid: int, now: int) -> int:
        with self._lock:
            record = self._packs.get(pid)
        if record is None:
            return 0
        try:
            entries = list(self.files.walk(pid, record.size))
        except FileNotFoundError:
            log.exception("pack file of expired blocks is missing", pack=pid)
            return 0
        with self._lock:
            tx = MetaTx(self.kv)
            for text, loc in entries:
                meta = tx.meta(text)
                if meta is None or meta.location != loc:
                    continue  # deleted, or moved: dead bytes
                if meta.expiry > now or meta.ref_count > 0 or text in self._busy or text.startswith(_MANIFEST_TEXT):
                    return 0  # not all expired: the per-block pass and compaction handle this pack
                tx.remove(text, meta)
            emptied = self._commit(tx)
        self._drop_empty(emptied)
        return -tx.blocks

    # --- compaction (blocking: ``stores/compaction.py`` calls these from worker threads) -----------------------------

    def live_records(self, pid: int) -> list[tuple[str, Location]]:
        """The records of pack ``pid`` that an index entry points at, in pack order."""
        with self._lock:
            record = self._packs.get(pid)
        if record is None:
            return []
        live = []
        for text, loc in self.files.walk(pid, record.size):
            meta = self.block_meta_text(text)
            if meta is not None and meta.location == loc:
                live.append((text, loc))
        return live

    def move_blocks(self, records: Sequence[tuple[str, Location]]) -> int:
        """Copy these records to the open packs of their blocks' expiry buckets, then point their entries there in
        one batch; return the bytes moved. A block deleted or moved meanwhile keeps its state (the copy is dead)."""
        by_bucket: dict[int, list[tuple[Cid, Location, int, bytes]]] = {}
        for text, loc in records:
            meta = self.block_meta_text(text)
            if meta is None or meta.location != loc:
                continue
            cid = parse_cid(text)
            data = self.files.read(loc)
            if len(data) != loc.length or not cid.matches(data):
                log.error("block in a pack does not match its CID: left where it is", cid=text, pack=loc.pack)
                continue
            by_bucket.setdefault(self.files.bucket(meta.expiry), []).append((cid, loc, meta.expiry, data))
        placed: list[tuple[Cid, Location, Location]] = []
        packs: set[int] = set()
        try:
            for items in by_bucket.values():
                new = self.files.append(items[0][2], [(cid, data) for cid, _, _, data in items])
                packs.update(loc.pack for loc in new)
                placed += [(cid, old, loc) for (cid, old, _, _), loc in zip(items, new, strict=True)]
            with self._lock:
                tx = MetaTx(self.kv)
                moved = 0
                for cid, old, loc in placed:
                    tx.pack_ends[loc.pack] = max(tx.pack_ends.get(loc.pack, 0), loc.offset + loc.length)
                    meta = tx.meta(cid.text)
                    if meta is not None and meta.location == old:
                        tx.update(cid.text, replace(meta, pack=loc.pack, offset=loc.offset))
                        moved += loc.length
                emptied = self._commit(tx)
        finally:
            self.files.done(sorted(packs))
        self._drop_empty(emptied)
        return moved

    def drop_if_empty(self, pid: int) -> bool:
        """Delete pack ``pid`` if no block is left in it; return whether it is gone."""
        self._drop_empty([pid])
        with self._lock:
            return pid not in self._packs

    def _delete_blocks(self, cids: Sequence[Cid], expired_at: int | None, refuse_referenced: bool) -> int:
        with self._lock:
            tx = MetaTx(self.kv)
            removed = []
            for cid in cids:
                meta = tx.meta(cid.text)
                if meta is None or cid.text in self._busy:
                    continue
                if expired_at is not None and meta.expiry > expired_at:
                    continue
                if meta.ref_count > 0:
                    # The datasets holding it delete it with them (their manifests expire no earlier).
                    if refuse_referenced:
                        raise ValidationError(f"block {cid} is part of a dataset; delete the dataset instead")
                    continue
                tx.remove(cid.text, meta)
                removed.append(cid)
            emptied = self._commit(tx)
        self._drop_empty(emptied)
        if removed:
            log.debug("blocks deleted", count=len(removed))
        return len(removed)

    def _delete_manifest(self, cid: Cid, expired_at: int | None) -> int:
        try:
            manifest: Manifest | None = Manifest.decode(self._read(cid))
        except (BlockNotFoundError, CorruptBlockError) as e:
            # Its blocks keep their references until they expire; nothing else is lost.
            log.warning("manifest unreadable, deleting it without its references", cid=cid.text, error=str(e))
            manifest = None
        job = uuid.uuid4().hex
        with self._lock:
            tx = MetaTx(self.kv)
            meta = tx.meta(cid.text)
            if meta is None or cid.text in self._busy:
                return 0
            if expired_at is not None and meta.expiry > expired_at:
                return 0
            tx.remove(cid.text, meta)
            tx.batch.delete(MANIFEST_PREFIX + cid.text)
            if manifest is not None:
                step = _RELEASE_RECORD_DIGESTS * DIGEST_SIZE
                for seq, start in enumerate(range(0, len(manifest.block_digests), step)):
                    tx.batch.put(f"{RELEASE_PREFIX}{job}/{seq:010d}", manifest.block_digests[start : start + step])
            emptied = self._commit(tx)
        self._drop_empty(emptied)
        self.release_job(job)
        log.info("dataset deleted", cid=cid.text, blocks=0 if manifest is None else manifest.block_count)
        return 1

    def release_job(self, job: str) -> None:
        """Drop the references listed under ``meta/release/<job>/``, deleting blocks left unreferenced."""
        prefix = f"{RELEASE_PREFIX}{job}/"
        while True:
            with self._lock:
                records = list(self.kv.iterate(prefix, limit=_RELEASE_RECORDS_PER_BATCH))
                if not records:
                    return
                tx = MetaTx(self.kv)
                for key, value in records:
                    for i in range(0, len(value), DIGEST_SIZE):
                        cid = block_cid_from_digest(value[i : i + DIGEST_SIZE])
                        meta = tx.meta(cid.text)
                        if meta is None:
                            continue
                        meta = replace(meta, ref_count=max(0, meta.ref_count - 1))
                        if meta.ref_count == 0 and not meta.standalone and cid.text not in self._busy:
                            tx.remove(cid.text, meta)
                        else:
                            tx.update(cid.text, meta)
                    tx.batch.delete(key)
                emptied = self._commit(tx)
            self._drop_empty(emptied)

    # --- reading (async) ----------------------------------------------------------------------------------------

    async def get_block(self, cid: Cid) -> bytes:
        """The block's bytes, checked against its CID.

        Raises :class:`BlockNotFoundError`, :class:`CorruptBlockError`.
        """
        return await asyncio.to_thread(self._read_checked, cid)

    def read_block(self, cid: Cid) -> bytes:
        """:meth:`get_block`, blocking (for worker threads and offline tools)."""
        return self._read_checked(cid)

    def check_block(self, cid: Cid) -> str | None:
        """What is wrong with the stored block: ``None`` if its bytes match its CID (or it is gone), else why."""
        try:
            data = self._read(cid)
        except BlockNotFoundError:
            return None
        except CorruptBlockError as e:
            return str(e)
        if not cid.matches(data):
            return f"block {cid} on disk does not match its CID"
        return None

    def _read_checked(self, cid: Cid) -> bytes:
        data = self._read(cid)
        if not cid.matches(data):
            CORRUPT_READS.inc()
            raise CorruptBlockError(f"block {cid} on disk does not match its CID")
        return data

    def _read(self, cid: Cid) -> bytes:
        for _ in range(_READ_ATTEMPTS):
            meta = self.block_meta(cid)
            if meta is None:
                raise BlockNotFoundError(f"block not found: {cid}")
            try:
                data = self.files.read(meta.location)
            except FileNotFoundError:
                if self.block_meta(cid) != meta:
                    continue  # moved to another pack (compaction) or deleted while we read: look again
                raise CorruptBlockError(f"block {cid} has metadata but no file (pack {meta.pack:016x})") from None
            if len(data) != meta.size:
                raise CorruptBlockError(f"block {cid} has {len(data)} bytes on disk, its index says {meta.size}")
            return data
        raise CorruptBlockError(f"block {cid} kept moving while it was read")

    def read_blocks(self, cids: Sequence[Cid], *, check: bool = True) -> list[memoryview | None]:
        """The stored bytes of each CID (``None``: not stored here, or deleted while being read), as views of one
        buffer read with :meth:`read_blocks_into` (blocks that follow each other in a pack with one ``preadv``,
        not an open, a read and a close per block); with ``check`` each is hashed against its CID as
        :meth:`get_block` does (:class:`CorruptBlockError`). Blocking: call it from a worker thread."""
        metas = self.block_metas(cids)
        sizes = [None if meta is None else meta.size for meta in metas]
        buffer = memoryview(bytearray(sum(size or 0 for size in sizes)))
        views: list[memoryview] = []
        at = 0
        for size in sizes:
            views.append(buffer[at : at + (size or 0)])
            at += size or 0
        read = self.read_blocks_into(cids, views, metas=metas)
        out: list[memoryview | None] = []
        for cid, view, ok, size in zip(cids, views, read, sizes, strict=True):
            if not ok or size is None:
                out.append(None)
                continue
            if check and not cid.matches(view):
                CORRUPT_READS.inc()
                raise CorruptBlockError(f"block {cid} on disk does not match its CID")
            out.append(view)
        return out

    def read_blocks_into(
        self, cids: Sequence[Cid], dests: Sequence[memoryview], *, metas: Sequence[BlockMeta | None] | None = None
    ) -> list[bool]:
        """Read each CID's stored bytes into its view of ``dests``, NOT checked against the CID: for serving peers,
        who check every block themselves (``api/routes/blocks.py``). Per CID, whether it was read: False when it
        is not stored here, or is stored with another size than its view's (its view is then left as it was,
        unless the block was moved or deleted while it was being read: such a view holds no meaning). Blocking:
        call it from a worker thread.

        The index entries are read as one group, and blocks that follow each other in a pack with one ``preadv``
        (a peer asks for a dataset's blocks in order, and they were stored in order), straight into the caller's
        buffer. ``metas``: the caller's lookup of the same CIDs' entries, used for the first attempt (a read that
        finds a block moved looks them up again). It may be a little old: bytes in a pack never change while the
        pack exists (``docs/packs.md``, rule 7), so an old entry finds either its block's bytes or no file. Raises
        :class:`CorruptBlockError` when a block's bytes are missing or have the wrong size."""
        if len(cids) != len(dests):
            raise ValueError("one destination per CID")
        for attempt in range(_READ_ATTEMPTS):
            if attempt or metas is None:
                metas = self.block_metas(cids)
            found = [(k, m) for k, m in enumerate(metas) if m is not None and m.size == len(dests[k])]
            sizes = self.files.read_into([m.location for _, m in found], [dests[k] for k, _ in found])
            if not self._moved([(cids[k], m) for k, m in found], sizes):
                read = [False] * len(cids)
                for k, _ in found:
                    read[k] = True
                return read
        raise CorruptBlockError("blocks kept moving while they were read")

    async def get_manifest(self, cid: Cid) -> Manifest:
        """The manifest stored under ``cid``. Raises :class:`BlockNotFoundError`, :class:`ValidationError` (not a
        manifest CID), :class:`CorruptBlockError`."""
        if not cid.is_manifest:
            raise ValidationError(f"{cid} is not a manifest CID")
        return Manifest.decode(await self.get_block(cid))

    async def iter_dataset(self, manifest: Manifest, *, blocks_per_read: int = 64) -> AsyncIterator[memoryview]:
        """The dataset's bytes in chunks of ``blocks_per_read`` blocks, read in worker threads one chunk ahead.

        While the caller sends one chunk, the next is being read. Chunks are read straight into one buffer (no
        per-block copies) and handed over as memoryviews. Blocks are re-hashed only with ``verify_reads`` (it costs
        about half the download speed); :meth:`get_block` always checks them. Raises :class:`BlockNotFoundError`
        or :class:`CorruptBlockError` midway if a block went missing, does not have its size, or (``verify_reads``)
        does not match its CID.
        """
        info = manifest.info
        starts = range(0, manifest.block_count, blocks_per_read)

        def read(start: int) -> asyncio.Future[memoryview]:
            end = min(start + blocks_per_read, manifest.block_count)
            cids = [manifest.block_cid(i) for i in range(start, end)]
            length = min(end * info.block_size, info.dataset_size) - start * info.block_size
            return asyncio.ensure_future(asyncio.to_thread(self._read_run, cids, info.block_size, length))

        ahead = read(starts[0]) if starts else None
        try:
            for start in starts:
                assert ahead is not None
                chunk = await ahead
                ahead = read(start + blocks_per_read) if start + blocks_per_read < manifest.block_count else None
                yield chunk
        finally:
            if ahead is not None and not ahead.done():
                # The consumer stopped early (client gone): let the read finish instead of orphaning it.
                await asyncio.wait([ahead])
            if ahead is not None and not ahead.cancelled():
                ahead.exception()

    def _read_run(self, cids: Sequence[Cid], block_size: int, length: int) -> memoryview:
        """Consecutive blocks of ``block_size`` bytes (the last may be shorter), ``length`` bytes in all."""
        for _ in range(_READ_ATTEMPTS):
            metas: list[BlockMeta] = []
            for i, (cid, meta) in enumerate(zip(cids, self.block_metas(cids), strict=True)):
                if meta is None:
                    raise BlockNotFoundError(f"block not found: {cid}")
                expected = min((i + 1) * block_size, length) - i * block_size
                if meta.size != expected:
                    raise CorruptBlockError(f"block {cid} has {meta.size} bytes, the manifest says {expected}")
                metas.append(meta)
            view, sizes = self.files.read_run([m.location for m in metas], block_size, length)
            if not self._moved(list(zip(cids, metas, strict=True)), sizes):
                if self.verify_reads:
                    self._verify_run(cids, view, block_size)
                return view
        raise CorruptBlockError("blocks kept moving while they were read")

    def _moved(self, blocks: Sequence[tuple[Cid, BlockMeta]], sizes: Sequence[int | None]) -> bool:
        """Judge a read of ``blocks`` (with the index entries it used) that found ``sizes`` bytes: True if a block
        was moved (compaction) or deleted meanwhile, so the caller reads again; raises :class:`CorruptBlockError`
        if a block's bytes are missing or short although its entry is unchanged."""
        for (cid, meta), size in zip(blocks, sizes, strict=True):
            if size == meta.size:
                continue
            if self.block_meta(cid) != meta:
                return True
            if size is None:
                raise CorruptBlockError(f"block {cid} has metadata but no file (pack {meta.pack:016x})")
            raise CorruptBlockError(f"block {cid} has {size} bytes on disk, its index says {meta.size}")
        return False

    def _verify_run(self, cids: Sequence[Cid], view: memoryview, block_size: int) -> None:
        for i, cid in enumerate(cids):
            if not cid.matches(view[i * block_size : (i + 1) * block_size]):
                CORRUPT_READS.inc()
                log.error("corrupt block refused", cid=cid.text, meta=str(self.block_meta(cid)))
                raise CorruptBlockError(f"block {cid} on disk does not match its CID")

    # --- internals ----------------------------------------------------------------------------------------------

    def _commit(self, tx: MetaTx) -> list[int]:
        """Write ``tx`` with the quota, count and pack records it implies; caller holds the lock.

        Returns the packs this left without a block (the caller drops them once it let go of the lock). Nothing
        changes on error.
        """
        changed = tx.used or tx.reserved
        quota = self._quota.change(used=tx.used, reserved=tx.reserved) if changed else self._quota
        # Per pack: [count, live, max expiry, committed size] deltas and highs, folded into records once.
        deltas: dict[int, list[int]] = {}
        for text, meta in tx.metas.items():
            old = tx.original[text] if text in tx.original else self.block_meta_text(text)
            if old is not None and old.pack:
                d = deltas.setdefault(old.pack, [0, 0, 0, 0])
                d[0] -= 1
                d[1] -= old.size
            if meta is None:
                tx.batch.delete(TTL_PREFIX + text)
            else:
                tx.batch.put(TTL_PREFIX + text, meta.encode())
                if meta.pack:
                    d = deltas.setdefault(meta.pack, [0, 0, 0, 0])
                    d[0] += 1
                    d[1] += meta.size
                    d[2] = max(d[2], meta.expiry)
        for pid, end in tx.pack_ends.items():
            d = deltas.setdefault(pid, [0, 0, 0, 0])
            d[3] = max(d[3], end)
        packs: dict[int, PackRecord] = {}
        for pid, (count, live, expiry, end) in deltas.items():
            r = self._packs.get(pid) or PackRecord()
            packs[pid] = PackRecord(max(r.size, end), r.count + count, r.live + live, max(r.max_expiry, expiry))
        for pid, r in packs.items():
            tx.batch.put(pack_key(pid), r.encode())
        if changed:
            tx.batch.put(QUOTA_KEY, quota.encode())
        if tx.blocks:
            tx.batch.put(TOTAL_KEY, str(self._total + tx.blocks).encode())
        self.kv.write(tx.batch)
        self._quota = quota
        self._total += tx.blocks
        self._packs.update(packs)
        return [pid for pid, r in packs.items() if r.count == 0]

    def block_meta_text(self, text: str) -> BlockMeta | None:
        raw = self.kv.get(TTL_PREFIX + text)
        return None if raw is None else BlockMeta.decode(raw)

    # --- packs ----------------------------------------------------------------------------------------------------

    def _new_pack(self, pid: int) -> None:
        """Record a pack before its file is made (called by the file layer, under its allocation lock)."""
        with self._lock:
            batch = self.kv.batch()
            batch.put(pack_key(pid), PackRecord().encode())
            batch.put(NEXT_PACK_KEY, str(pid + 1).encode())
            self.kv.write(batch)
            self._packs[pid] = PackRecord()
        log.debug("pack opened", pack=pid)

    def pack_records(self) -> dict[int, PackRecord]:
        """Every pack's books (a copy)."""
        with self._lock:
            return dict(self._packs)

    def _drop_empty(self, pids: Iterable[int]) -> None:
        """Delete the packs of ``pids`` that hold no block and that nothing writes to: file first, then record."""
        for pid in pids:
            with self._lock:
                record = self._packs.get(pid)
                if record is None or record.count != 0:
                    continue
            if not self.files.retire(pid):
                continue  # an append is in flight; whoever finishes it drops the pack if it stays empty
            with self._lock:
                record = self._packs.get(pid)
                still_used = record is None or record.count != 0  # a put committed into it before it was retired
            if still_used:
                self.files.unretire(pid)  # outside the store lock: the file layer calls into it under its own
                continue
            self.files.delete_pack(pid)
            with self._lock:
                self.kv.delete(pack_key(pid))
                self._packs.pop(pid, None)
            log.debug("empty pack deleted", pack=pid)

    def _recover(self) -> None:
        """Finish what a crash interrupted: cut pack tails back to their records, drop empty packs, then finish
        release jobs. Reads the pack records and the jobs only, never the index."""
        self._packs = {
            int(key[len(PACK_PREFIX) :], 16): PackRecord.decode(value) for key, value in self.kv.iterate(PACK_PREFIX)
        }
        raw = self.kv.get(NEXT_PACK_KEY)
        self.files.start(max([int(raw) if raw else 1, *(pid + 1 for pid in self._packs)]))
        empty = [pid for pid, r in self._packs.items() if r.count == 0]
        cut = sum(self.files.truncate(pid, r.size) for pid, r in self._packs.items() if r.count)
        self._drop_empty(empty)
        if self.kv.get(LAYOUT_KEY) != LAYOUT_PACKS:
            if migration.needs_conversion(self):
                migration.convert(self)
            else:
                self.kv.put(LAYOUT_KEY, LAYOUT_PACKS)  # a new data dir
        jobs = 0
        while first := next(self.kv.iterate(RELEASE_PREFIX, limit=1), None):
            self.release_job(first[0][len(RELEASE_PREFIX) :].split("/", 1)[0])
            jobs += 1
        if empty or cut or jobs:
            log.info("repo recovered", empty_packs=len(empty), tail_bytes_cut=cut, release_jobs=jobs)

    def commit_staged(self, stage: Callable[[MetaTx], None]) -> None:
        """Run ``stage`` on a new transaction under the store lock and commit it (for the data dir conversion)."""
        with self._lock:
            tx = MetaTx(self.kv)
            stage(tx)
            emptied = self._commit(tx)
        self._drop_empty(emptied)

    def _metrics(self) -> Iterator[Metric]:
        q = self._quota
        yield GaugeMetricFamily("codex_repostore_blocks", "Blocks in the repo store", value=self._total)
        yield GaugeMetricFamily("codex_repostore_bytes_used", "Bytes of stored blocks", value=q.used)
        yield GaugeMetricFamily("codex_repostore_bytes_reserved", "Bytes reserved for sales", value=q.reserved)
        yield GaugeMetricFamily("codex_repostore_bytes_max", "Storage quota in bytes", value=q.max)
        packs = list(self.pack_records().values())
        yield GaugeMetricFamily("codex_repostore_packs", "Pack files holding blocks", value=len(packs))
        yield GaugeMetricFamily(
            "codex_repostore_pack_dead_bytes",
            "Bytes in pack files that no block uses (compaction reclaims them)",
            value=sum(r.dead for r in packs),
        )
        yield GaugeMetricFamily(
            "codex_repostore_direct_writes",
            "1 while groups of blocks are written with O_DIRECT, 0 once written through the page cache (turned off, "
            "or refused by the file system)",
            value=int(self.files.direct),
        )

    def close(self) -> None:
        """Stop exporting metrics and release file-layer threads. The shared ``kv`` stays open."""
        self._unregister()
        self.files.close()


_METRIC_NAMES = (
    "codex_repostore_blocks",
    "codex_repostore_bytes_used",
    "codex_repostore_bytes_reserved",
    "codex_repostore_bytes_max",
    "codex_repostore_packs",
    "codex_repostore_pack_dead_bytes",
    "codex_repostore_direct_writes",
)
