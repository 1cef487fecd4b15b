"""Slot repair: rebuilding a lost slot into the local repo from K other slots (the :class:`SlotRepairer` port).

A host that fills a slot in ``Repair`` (its previous host was slashed out) has nowhere to download that slot
from: it rebuilds it with the erasure code (``data/repair.py``, pure) from blocks of K other slots, which the
:class:`~codex_node.blockexchange.port.BlockGetter` finds in the local repo or at peers.

Steps: read the protected manifest (already in the repo: the network slot source secures it first); get slot
``s``'s own slot manifest if anyone still has it (local or via the getter; it may have been lost with its host);
take the other slots' manifests in :func:`~codex_node.data.repair.source_order` (local ones first, data slots
before parity) until K are had; then, batch of rows by batch of rows (``BATCH_BYTES`` of source blocks): fetch
the K sources' blocks through the getter (``hint`` = the protected manifest), rebuild the batch in a worker
thread, store the rebuilt blocks, and report their bytes with ``on_blocks``; the next batch is fetched and the
previous one stored while a batch is rebuilt. A source slot whose blocks cannot be had
(:class:`~codex_node.errors.BlocksUnavailableError`) or that gives blocks which are not its own is dropped for the
rest of the repair and the next slot takes its place; with fewer than K left, the repair fails. At the end the
rebuilt slot is checked against its slot root and its slot manifest (rebuilt if it was lost) against the
protected manifest's CID for it, and only then stored: until that moment nothing in the repo claims to be slot
``s``.

Bytes and the reservation: each batch's bytes are reported with ``on_blocks(n)`` just before the batch is written,
as the sales data sources do (``Downloading`` releases them from the reservation, so the quota's reserved bytes
make room first and the write then counts them as used: a node whose quota is all reserved can still repair, and a
crash in between loses no quota; a batch that then fails to store ends the sale, whose clean-up returns the bytes
the reservation no longer holds through ``returningSize``).

What a failed repair leaves behind: rebuilt blocks checked against slot ``s``'s manifest are kept (they are the
slot's true blocks, content-addressed and expiring with ``expiry``; a retry stores nothing twice). Blocks rebuilt
while slot ``s``'s manifest was unknown were checked only by their sources' digests; if the slot root or the
manifest CID then does not match, those this repair added are deleted again. The slot manifest is never stored
for a slot that failed.

The slot tree: the rebuild hashes every rebuilt cell for the slot root anyway, so with ``on_slot_leaves`` (the
prover's :meth:`~codex_node.proofs.prover.Prover.offer_slot_leaves`) a repaired slot's cell leaves (1/64 of its
bytes, kept for slots of at most ``keep_leaves_max`` bytes of leaves) are handed over once the slot passed its
checks, and InitialProving does not read and hash the same slot again right after.

Metrics (on the node's registry): ``codex_slot_repairs_total{outcome}`` (succeeded, failed),
``codex_slot_repair_rebuilt_bytes_total``, ``codex_slot_repair_source_switches_total`` (a source slot dropped for
missing or wrong blocks).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry, Counter

from codex_node.blockexchange.port import BlockGetter
from codex_node.data.cid import DIGEST_SIZE, Cid
from codex_node.data.manifest import Manifest
from codex_node.data.merkle import HASH_SIZE, Buffer
from codex_node.data.proof import CELLS_PER_BLOCK
from codex_node.data.protected import ProtectedManifest
from codex_node.data.repair import BATCH_BYTES, RebuiltRows, SlotRebuilder, batch_rows, source_order
from codex_node.data.slots import BLOCK_SIZE, cid_from_bytes
from codex_node.errors import (
    BlockNotFoundError,
    BlocksUnavailableError,
    CodexError,
    CorruptBlockError,
    InvalidCidError,
    RepairError,
    ValidationError,
)
from codex_node.market.types import Request
from codex_node.sales.context import OnBlocks
from codex_node.stores.repostore import RepoStore, in_thread

log = structlog.get_logger(__name__)

LEAF_BYTES_PER_BLOCK = CELLS_PER_BLOCK * HASH_SIZE

PROGRESS_EVERY = 5.0
"""Seconds between progress log lines."""
KEEP_LEAVES_MAX = 64 * 1024 * 1024
"""Cell leaves kept for the prover at most (those of a 4 GiB slot); a larger slot is hashed again when proven."""

OnSlotLeaves = Callable[[Request, int, bytes], None]
"""Called with a repaired slot's request, index and cell leaves, once the slot is checked and stored."""


class RepairMetrics:
    """What an operator watches of repairs (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.repairs = Counter("codex_slot_repairs", "Slot repairs by outcome", ["outcome"], registry=registry)
        self.rebuilt_bytes = Counter(
            "codex_slot_repair_rebuilt_bytes", "Bytes of slot blocks rebuilt and stored by repairs", registry=registry
        )
        self.switches = Counter(
            "codex_slot_repair_source_switches",
            "Source slots a repair dropped because their blocks could not be had or were wrong",
            registry=registry,
        )


class RepoSlotRepairer:
    """:class:`~codex_node.blockexchange.port.SlotRepairer` over the local repo and a ``BlockGetter``."""

    def __init__(
        self,
        repo: RepoStore,
        getter: BlockGetter,
        *,
        registry: CollectorRegistry | None = None,
        batch_bytes: int = BATCH_BYTES,
        monotonic: Callable[[], float] = time.monotonic,
        on_slot_leaves: OnSlotLeaves | None = None,
        keep_leaves_max: int = KEEP_LEAVES_MAX,
    ) -> None:
        if batch_bytes < BLOCK_SIZE:
            raise ValueError(f"batch_bytes must be at least one block ({BLOCK_SIZE})")
        self._repo = repo
        self._getter = getter
        self._batch_bytes = batch_bytes
        self._monotonic = monotonic
        self._on_slot_leaves = on_slot_leaves
        self._keep_leaves_max = keep_leaves_max
        self.metrics = RepairMetrics(registry)

    async def repair(self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks) -> None:
        started = self._monotonic()
        try:
            job = await self._start(request, slot_index)
            await job.run(expiry, on_blocks)
        except RepairError as e:
            self._failed(request, slot_index, e)
            raise
        except CodexError as e:  # the slot root (ErasureError), the store (quota, disk): the port promises one type
            self._failed(request, slot_index, e)
            raise RepairError(f"repairing slot {slot_index} failed: {e}") from e
        self.metrics.repairs.labels(outcome="succeeded").inc()
        leaves = job.rebuilder.leaves()
        if self._on_slot_leaves is not None and leaves is not None:
            self._on_slot_leaves(request, slot_index, leaves)
        elapsed = self._monotonic() - started
        log.info(
            "slot repaired",
            request_id=request.id.hex(),
            slot_index=slot_index,
            rows=job.rebuilder.rows,
            mib=round(job.rebuilder.rows * BLOCK_SIZE / 2**20, 1),
            seconds=round(elapsed, 3),
            mib_per_s=round(job.rebuilder.rows * BLOCK_SIZE / 2**20 / max(elapsed, 1e-9), 1),
            sources=sorted(job.active),
        )

    def _failed(self, request: Request, slot_index: int, error: CodexError) -> None:
        self.metrics.repairs.labels(outcome="failed").inc()
        log.warning("slot repair failed", request_id=request.id.hex(), slot_index=slot_index, error=str(error))

    async def _start(self, request: Request, slot_index: int) -> _Repair:
        try:
            cid = cid_from_bytes(request.content.cid)
        except (InvalidCidError, ValueError) as e:
            raise RepairError(f"the request's content CID is not a CID: {e}") from e
        if not cid.is_protected_manifest:
            raise RepairError(f"{cid} is not a protected (erasure-coded) dataset: there is nothing to rebuild from")
        try:
            protected = ProtectedManifest.from_block(cid, await self._repo.get_block(cid))
        except CodexError as e:
            raise RepairError(f"the protected manifest {cid} is not readable in the repo: {e}") from e
        ask = request.ask
        if protected.params.slots != ask.slots or protected.slot_size != ask.slot_size:
            raise RepairError(
                f"the request asks for {ask.slots} slots of {ask.slot_size} bytes; the protected dataset {cid} has "
                f"{protected.params.slots} of {protected.slot_size}"
            )
        if not 0 <= slot_index < protected.params.slots:
            raise RepairError(f"slot {slot_index} out of range 0..{protected.params.slots - 1}")
        job = _Repair(
            self._repo,
            self._getter,
            self.metrics,
            self._batch_bytes,
            self._monotonic,
            request,
            cid,
            protected,
            slot_index,
        )
        own = await job.manifest(slot_index)
        leaf_bytes = protected.blocks_per_slot * LEAF_BYTES_PER_BLOCK
        keep = self._on_slot_leaves is not None and leaf_bytes <= self._keep_leaves_max
        job.rebuilder = SlotRebuilder(protected, slot_index, slot_manifest=own, keep_leaves=keep)
        local = [j for j in range(protected.params.slots) if self._repo.has_block(protected.slot_manifests[j])]
        job.candidates = source_order(protected, slot_index, local)
        log.info(
            "slot repair started",
            request_id=request.id.hex(),
            slot_index=slot_index,
            protected=cid.text,
            k=protected.params.k,
            m=protected.params.m,
            rows=protected.blocks_per_slot,
            own_manifest_found=own is not None,
            local_slots=[j for j in local if j != slot_index],
        )
        return job


@dataclass
class _Repair:
    """One repair in progress (see the module docstring for the steps)."""

    repo: RepoStore
    getter: BlockGetter
    metrics: RepairMetrics
    batch_bytes: int
    monotonic: Callable[[], float]
    request: Request
    cid: Cid
    protected: ProtectedManifest
    slot_index: int
    rebuilder: SlotRebuilder = field(init=False)
    candidates: list[int] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    manifests: dict[int, Manifest] = field(default_factory=dict)
    added_unchecked: list[Cid] = field(default_factory=list)
    """Blocks this repair added that no slot manifest vouched for (deleted again if the slot fails its root)."""

    async def run(self, expiry: int, on_blocks: OnBlocks) -> None:
        done = False
        try:
            await self._rebuild(expiry, on_blocks)
            manifest = await in_thread(self.rebuilder.finish)
            await self._store_manifest(manifest, expiry)
            done = True
        finally:
            if not done and self.added_unchecked:
                await asyncio.shield(self._discard())

    async def _rebuild(self, expiry: int, on_blocks: OnBlocks) -> None:
        # One batch is stored while the next is rebuilt and the one after it fetched: the reads and writes (worker
        # threads) overlap the hashing, and memory stays at three batches.
        storing: asyncio.Future[None] | None = None
        try:
            async for rows in self._batches():
                if storing is not None:
                    await storing
                storing = asyncio.ensure_future(self._store(rows, expiry, on_blocks))
            if storing is not None:
                await storing
        finally:
            if storing is not None and not storing.done():
                storing.cancel()
                await asyncio.wait([storing])

    async def _batches(self) -> AsyncIterator[RebuiltRows]:
        """The slot's rebuilt rows, batch by batch, each from K sources that gave their own blocks.

        The next batch's blocks are fetched while this one is rebuilt. Either may drop a source slot meanwhile:
        :meth:`_complete` then brings a batch's blocks back to exactly the slots in use.
        """
        rebuilder = self.rebuilder
        k = self.protected.params.k
        per_batch = batch_rows(k, self.batch_bytes)
        started = last_log = self.monotonic()
        while len(self.active) < k:
            self.active.append(await self._next_source())
        rows_total = rebuilder.rows
        fetching = asyncio.ensure_future(self._fetch(self.active, 0, min(per_batch, rows_total)))
        try:
            while rebuilder.next_row < rows_total:
                first = rebuilder.next_row
                count = min(per_batch, rows_total - first)
                sources = await self._complete(await fetching, first, count)
                after = first + count
                if after < rows_total:
                    fetching = asyncio.ensure_future(
                        self._fetch(self.active, after, min(per_batch, rows_total - after))
                    )
                while True:
                    digests = {j: self._digests(j, first, count) for j in sources}
                    rows = await in_thread(rebuilder.rebuild, sources, digests)
                    if not rows.corrupt_sources:
                        break
                    for j in rows.corrupt_sources:
                        del sources[j]
                        await self._drop(j, f"its blocks at rows {first}..{first + count - 1} are not its own")
                    sources = await self._complete(sources, first, count)
                yield rows
                now = self.monotonic()
                if now - last_log >= PROGRESS_EVERY:
                    last_log = now
                    done = rebuilder.next_row
                    log.info(
                        "slot repair progress",
                        request_id=self.request.id.hex(),
                        slot_index=self.slot_index,
                        rows_done=done,
                        rows=rows_total,
                        mib=round(done * BLOCK_SIZE / 2**20, 1),
                        mib_per_s=round(done * BLOCK_SIZE / 2**20 / max(now - started, 1e-9), 1),
                    )
        finally:
            if not fetching.done():
                fetching.cancel()
            await asyncio.wait([fetching])
            if not fetching.cancelled():
                fetching.exception()  # retrieved: an error of a batch never reached is not news

    async def _complete(
        self, sources: dict[int, Sequence[Buffer]], first: int, count: int
    ) -> dict[int, Sequence[Buffer]]:
        """``sources`` (blocks ``first …`` of some slots) for exactly the slots in use now."""
        while True:
            kept = {j: blocks for j, blocks in sources.items() if j in self.active}
            missing = [j for j in self.active if j not in kept]
            if not missing:
                return kept
            kept.update(await self._fetch(missing, first, count))
            sources = kept

    async def _fetch(self, slots: list[int], first: int, count: int) -> dict[int, Sequence[Buffer]]:
        """Blocks ``first …`` of each of ``slots``; a slot that cannot give them is replaced by the next one."""
        out: dict[int, Sequence[Buffer]] = {}
        todo = list(slots)
        while todo:
            results = await asyncio.gather(*(self._get(j, first, count) for j in todo), return_exceptions=True)
            replaced: list[int | None] = []
            for j, result in zip(todo, results, strict=True):
                if isinstance(result, BlocksUnavailableError):
                    replaced.append(await self._drop(j, f"blocks unavailable: {result}"))
                elif isinstance(result, BaseException):
                    raise result
                elif len(result) != count:
                    replaced.append(await self._drop(j, f"the getter gave {len(result)} blocks for {count}"))
                else:
                    out[j] = result
            todo = [j for j in replaced if j is not None]
        return out

    async def _get(self, j: int, first: int, count: int) -> Sequence[Buffer]:
        manifest = self.manifests[j]
        cids = [manifest.block_cid(i) for i in range(first, first + count)]
        # Local source blocks are not hashed on the way in: the rebuilder checks what it builds from them.
        return await self.getter.get_blocks(cids, hint=self.cid, check_local=False)

    async def _drop(self, j: int, reason: str) -> int | None:
        """Stop using source slot ``j``; return the slot that replaces it (``None``: ``j`` was dropped already, by
        the fetch of another batch)."""
        if j not in self.active:
            return None
        self.active.remove(j)
        self.metrics.switches.inc()
        log.warning(
            "repair source slot dropped",
            request_id=self.request.id.hex(),
            slot_index=self.slot_index,
            source=j,
            reason=reason,
        )
        replacement = await self._next_source()
        self.active.append(replacement)
        return replacement

    async def _next_source(self) -> int:
        """The next candidate slot whose manifest can be had (local or from peers)."""
        while self.candidates:
            j = self.candidates.pop(0)
            if await self.manifest(j) is not None:
                return j
        used = sorted(self.active)
        raise RepairError(
            f"slot {self.slot_index} needs K = {self.protected.params.k} other slots; only {used} could be had"
        )

    async def manifest(self, j: int) -> Manifest | None:
        """Slot ``j``'s manifest, checked against the protected manifest; ``None`` if nobody could give it."""
        if j in self.manifests:
            return self.manifests[j]
        cid = self.protected.slot_manifests[j]
        raw = await self._manifest_bytes(cid)
        manifest = None if raw is None else _decode_manifest(cid, raw)
        if manifest is None:
            log.info("slot manifest not available", slot=j, manifest=cid.text)
            return None
        if manifest.block_count != self.protected.blocks_per_slot or manifest.info.block_size != BLOCK_SIZE:
            raise RepairError(
                f"slot manifest {cid} does not describe a slot of {self.protected.blocks_per_slot} blocks"
            )
        self.manifests[j] = manifest
        return manifest

    async def _manifest_bytes(self, cid: Cid) -> bytes | None:
        if self.repo.has_block(cid):
            try:
                return await self.repo.get_block(cid)
            except (BlockNotFoundError, CorruptBlockError) as e:
                log.warning("local slot manifest unreadable, asking peers", manifest=cid.text, error=str(e))
        try:
            got = await self.getter.get_blocks([cid], hint=self.cid)
        except BlocksUnavailableError:
            return None
        return bytes(got[0]) if len(got) == 1 else None

    def _digests(self, j: int, first: int, count: int) -> bytes:
        return self.manifests[j].block_digests[first * DIGEST_SIZE : (first + count) * DIGEST_SIZE]

    async def _store(self, rows: RebuiltRows, expiry: int, on_blocks: OnBlocks) -> None:
        repo = self.repo
        cids = rows.cids()
        if not self.rebuilder.checks_each_block:
            self.added_unchecked.extend(cid for cid in cids if not repo.has_block(cid))
        await on_blocks(rows.nbytes)  # reserved bytes make room first (module docstring)
        ttl = max(0, expiry - repo.clock.now())
        write = functools.partial(
            repo.write_blocks, list(zip(cids, rows.blocks, strict=True)), ttl=ttl, ref=False, standalone=True
        )
        await in_thread(write)
        await repo.ensure_expiry_many(cids, expiry)
        self.metrics.rebuilt_bytes.inc(rows.nbytes)

    async def _store_manifest(self, manifest: Manifest, expiry: int) -> None:
        cid = self.protected.slot_manifests[self.slot_index]
        await self.repo.put_block(cid, manifest.encode(), ttl=max(0, expiry - self.repo.clock.now()))
        await self.repo.ensure_expiry_many([cid], expiry)

    async def _discard(self) -> None:
        deleted = 0
        for cid in self.added_unchecked:
            try:
                await self.repo.del_block(cid)
                deleted += 1
            except (BlockNotFoundError, ValidationError):
                pass  # gone already, or a dataset stored since references it
        log.info("unverified rebuilt blocks deleted", slot_index=self.slot_index, deleted=deleted)


def _decode_manifest(cid: Cid, raw: bytes) -> Manifest | None:
    """The slot manifest ``raw`` if it is the one ``cid`` names (peers' bytes are hostile until checked)."""
    if not cid.matches(raw):
        return None
    try:
        return Manifest.decode(raw)
    except CorruptBlockError:
        return None
