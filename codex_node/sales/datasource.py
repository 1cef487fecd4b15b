"""Where a sale's slot data comes from: the ``SlotDataSource`` port and its local implementation.

:class:`LocalSlotDataSource` serves the single-node case: the node already holds the dataset the request names.
``Content.cid`` is the manifest CID's binary form (``data/slots.py``); the slot's blocks are the dataset blocks
``s, s+n, s+2n, …`` of :class:`~codex_node.data.slots.SlotLayout`. Nothing is copied: securing a slot means
checking that the manifest and every data block of the slot are in the repo and raising their expiry.

Padding: the zero blocks at the end of a slot (``None`` in ``SlotLayout.block_indices``) and the zero padding of
the dataset's short last block are **not stored**; whoever reads the slot as 64 KiB blocks (the prover)
synthesizes them with ``pad_block`` / ``ZERO_BLOCK``, as the layout docstring describes the slot. They still count
as slot bytes in ``on_blocks``: the reservation sold ``slotSize = blocksPerSlot × 64 KiB`` and all of it is part
of the slot once the data blocks are secured (a fully secured slot leaves its reservation with ``size == 0``).

Expiry and holds. In the repo, a dataset's blocks live as long as its manifest (a referenced block is never
deleted by expiry and never lowered by ``set_expiry``), so what keeps the slot alive is the **manifest's** expiry;
the slot's blocks are raised too (cheap, and it keeps blocks that are also stored standalone). Several sales can
need the same manifest (every slot of a request, and other requests for the same content), and the manifest had
an expiry of its own before any sale (the uploader's TTL). So each sale records a *hold* in the shared KV:

=============================================  ====================================================================
``meta/sales/holds/<manifestCid>/<slotId>``    ``{"expiry": e}``: this sale needs the dataset until ``e``
``meta/sales/hold-base/<manifestCid>``         ``{"expiry": e}``: the manifest's expiry before the first hold
=============================================  ====================================================================

Lowering (the sale ended) drops the sale's hold and sets the manifest and the slot's blocks to
``max(expiry, every other hold of the manifest, the base)``: never below what another sale or the uploader
needs. Invariant: while a hold exists, the manifest's expiry is at least the hold's. Holds are written before any
expiry is raised and read under one lock with the lowering, so a raise and a lower never undercut each other.
A crash can leave a hold behind (e.g. a reservation deleted at start-up, whose sale never lowers): it only keeps
the dataset until that hold's expiry, a bounded time, and holds already past are dropped whenever the manifest's
holds are read. Blocks shared with *other* datasets (same content) are already kept by those datasets'
references, so holds are per manifest, not per block.

Protected datasets (``Content.cid`` a protected manifest CID, ``docs/storage-requests.md``): slot ``s`` is slot
manifest ``s`` of the protected manifest, a dataset manifest over the slot's 64 KiB blocks (parity included), so
its positions are the slot manifest's blocks in order, with no padding. The hold is on the slot manifest (it
keeps its blocks); the protected manifest block itself is only ever raised, never lowered (it is under 64 KiB and
every slot's sale needs it).

Deleting a dataset through the API while a sale holds it is refused (``DELETE /data/{cid}`` answers 409, see
:meth:`LocalSlotDataSource.held_until`): the sale would otherwise fail its proofs and lose its collateral.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Protocol

import structlog

from codex_node.data.cid import Cid
from codex_node.data.manifest import Manifest
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import BLOCK_SIZE, SlotLayout, cid_from_bytes
from codex_node.errors import CodexError, InvalidCidError, InvalidProtectedManifestError, SlotDataError
from codex_node.market.types import Request, slot_id
from codex_node.sales.context import OnBlocks
from codex_node.stores.repostore import RepoStore

log = structlog.get_logger(__name__)

HOLDS_PREFIX = "meta/sales/holds/"
HOLD_BASE_PREFIX = "meta/sales/hold-base/"
FETCH_BATCH_BLOCKS = 256
"""Slot positions per expiry batch and per ``on_blocks`` call (16 MiB of slot)."""


class SlotDataSource(Protocol):
    """Secures a slot's blocks in the local repo and manages their expiry for the sale."""

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        """Make every block of the slot present in the repo with an expiry of at least ``expiry``.

        Calls ``on_blocks(n)`` with the byte count of each batch of blocks that became part of the slot.
        """
        ...

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        """The sale goes on until ``expiry``: no block of the slot may expire earlier."""
        ...

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        """The sale ended: the slot's blocks need not outlive ``expiry`` on this sale's account."""
        ...


def hold_key(manifest: Cid, request: Request, slot_index: int) -> str:
    return f"{holds_prefix(manifest)}{slot_id(request.id, slot_index).hex()}"


def holds_prefix(manifest: Cid) -> str:
    return f"{HOLDS_PREFIX}{manifest.text}/"


def hold_base_key(manifest: Cid) -> str:
    return f"{HOLD_BASE_PREFIX}{manifest.text}"


def lowered_expiry(expiry: int, other_holds: Sequence[int], base: int | None) -> int:
    """The expiry a dataset may be lowered to when one sale ends at ``expiry`` (pure; see module docstring)."""
    return max(expiry, *other_holds, 0 if base is None else base)


def _encode(expiry: int) -> bytes:
    return json.dumps({"expiry": expiry}, separators=(",", ":")).encode()


def _decode(raw: bytes) -> int:
    try:
        return int(json.loads(raw)["expiry"])
    except (ValueError, KeyError, TypeError) as e:
        raise SlotDataError(f"corrupt slot hold record: {e}") from e


def content_cid(request: Request) -> Cid:
    """The request's content CID: a dataset manifest or a protected manifest (raises :class:`SlotDataError`)."""
    try:
        cid = cid_from_bytes(request.content.cid)
    except (InvalidCidError, ValueError) as e:
        raise SlotDataError(f"the request's content CID is not a CID: {e}") from e
    if not (cid.is_manifest or cid.is_protected_manifest):
        raise SlotDataError(f"the request's content CID {cid} is not a manifest CID")
    return cid


def slot_positions(request: Request, slot_index: int, manifest: Manifest) -> list[int | None]:
    """The dataset block at each position of a plain dataset's slot (``None``: a zero block), checked against the
    ask (raises :class:`SlotDataError`)."""
    ask = request.ask
    if manifest.info.block_size != BLOCK_SIZE:
        raise SlotDataError(f"the dataset has {manifest.info.block_size}-byte blocks, slots need {BLOCK_SIZE}")
    try:
        layout = SlotLayout(manifest.block_count, ask.slots)
        positions = layout.block_indices(slot_index)
    except (ValueError, IndexError) as e:
        raise SlotDataError(f"slot {slot_index} of the dataset cannot be laid out: {e}") from e
    if layout.slot_size != ask.slot_size:
        raise SlotDataError(
            f"the request asks for {ask.slot_size}-byte slots; the dataset's {manifest.block_count} blocks in "
            f"{ask.slots} slots make {layout.slot_size}-byte slots"
        )
    return positions


class LocalSlotDataSource:
    """:class:`SlotDataSource` over a :class:`RepoStore` that already holds the request's dataset."""

    def __init__(self, repo: RepoStore, *, batch_blocks: int = FETCH_BATCH_BLOCKS) -> None:
        if batch_blocks < 1:
            raise ValueError("batch_blocks must be at least 1")
        self._repo = repo
        self._batch_blocks = batch_blocks
        # Serialises hold records with the expiry changes they justify (see the module docstring).
        self._lock = asyncio.Lock()

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        manifest_cid, manifest, positions = await self._slot(request, slot_index, expiry)
        await self._hold(manifest_cid, request, slot_index, expiry)
        for start in range(0, len(positions), self._batch_blocks):
            batch = positions[start : start + self._batch_blocks]
            await self._ensure_blocks(manifest, batch, expiry)
            await on_blocks(len(batch) * BLOCK_SIZE)
        log.info(
            "slot secured from local dataset",
            manifest=manifest_cid.text,
            slot_index=slot_index,
            blocks=sum(i is not None for i in positions),
            padding=sum(i is None for i in positions),
            expiry=expiry,
            repairing=is_repairing,
        )

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        manifest_cid, manifest, positions = await self._slot(request, slot_index, expiry)
        await self._hold(manifest_cid, request, slot_index, expiry)
        await self._ensure_blocks(manifest, positions, expiry)

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        try:
            manifest_cid = await self._hold_cid(request, slot_index)
        except SlotDataError as e:
            log.info("slot dataset not readable while lowering its expiry", error=repr(e))
            return  # a protected dataset whose manifest is gone: nothing of it is left to lower
        key = hold_key(manifest_cid, request, slot_index)
        repo = self._repo
        async with self._lock:
            if repo.kv.get(key) is None:
                return  # this sale never raised anything
            others = self._other_holds(manifest_cid, key)
            base_raw = repo.kv.get(hold_base_key(manifest_cid))
            base = None if base_raw is None else _decode(base_raw)
            target = lowered_expiry(expiry, others, base)
            cids: list[Cid] = [manifest_cid]
            try:
                manifest = await repo.get_manifest(manifest_cid)
                if self._content_cid(request).is_protected_manifest:
                    positions: list[int | None] = list(range(manifest.block_count))
                else:
                    positions = self._positions(request, slot_index, manifest)
                cids.extend(manifest.block_cid(i) for i in positions if i is not None)
            except CodexError as e:
                # The dataset is gone (deleted or expired): only the record is left to drop.
                log.info("slot dataset not readable while lowering its expiry", error=repr(e))
            await repo.set_expiry_many(cids, target)
            batch = repo.kv.batch()
            batch.delete(key)
            if not others:
                batch.delete(hold_base_key(manifest_cid))
            repo.kv.write(batch)
        log.info("slot expiry lowered", manifest=manifest_cid.text, slot_index=slot_index, expiry=target)

    def held_until(self, cid: Cid) -> int | None:
        """The latest time a sale still holds the dataset ``cid`` to (``None``: no sale needs it now)."""
        if not cid.is_manifest:
            return None
        now = self._repo.clock.now()
        expiries = [_decode(raw) for _, raw in self._repo.kv.iterate(holds_prefix(cid))]
        live = [e for e in expiries if e > now]
        return max(live) if live else None

    # --- internals ----------------------------------------------------------------------------------------------

    def _content_cid(self, request: Request) -> Cid:
        return content_cid(request)

    def _manifest_cid(self, request: Request) -> Cid:
        cid = self._content_cid(request)
        if not cid.is_manifest:
            raise SlotDataError(f"the request's content CID {cid} is not a dataset manifest CID")
        return cid

    async def _hold_cid(self, request: Request, slot_index: int) -> Cid:
        """The manifest whose hold keeps the slot: the dataset's, or the slot manifest of a protected dataset."""
        cid = self._content_cid(request)
        if cid.is_manifest:
            return cid
        return (await self._protected(request, cid)).slot_manifests[slot_index]

    async def _protected(self, request: Request, cid: Cid) -> ProtectedManifest:
        try:
            protected = ProtectedManifest.from_block(cid, await self._repo.get_block(cid))
        except (CodexError, InvalidProtectedManifestError) as e:
            raise SlotDataError(f"the protected dataset {cid} is not readable here: {e}") from e
        ask = request.ask
        if protected.params.slots != ask.slots or protected.slot_size != ask.slot_size:
            raise SlotDataError(
                f"the request asks for {ask.slots} slots of {ask.slot_size} bytes; the protected dataset {cid} has "
                f"{protected.params.slots} of {protected.slot_size}"
            )
        return protected

    async def _slot(self, request: Request, slot_index: int, expiry: int) -> tuple[Cid, Manifest, list[int | None]]:
        """The manifest holding the slot, the manifest read, and the manifest block at each slot position."""
        cid = self._content_cid(request)
        if cid.is_manifest:
            manifest_cid, manifest = await self._manifest(request)
            return manifest_cid, manifest, self._positions(request, slot_index, manifest)
        protected = await self._protected(request, cid)
        if not 0 <= slot_index < protected.params.slots:
            raise SlotDataError(f"slot {slot_index} out of range 0..{protected.params.slots - 1}")
        await self._repo.ensure_expiry_many([cid], expiry)  # raised only (see the module docstring)
        slot_cid = protected.slot_manifests[slot_index]
        try:
            manifest = await self._repo.get_manifest(slot_cid)
        except CodexError as e:
            raise SlotDataError(f"slot manifest {slot_cid} of {cid} is not in the repo: {e}") from e
        if manifest.block_count != protected.blocks_per_slot or manifest.info.block_size != BLOCK_SIZE:
            raise SlotDataError(f"slot manifest {slot_cid} does not list the slot's {protected.blocks_per_slot} blocks")
        return slot_cid, manifest, list(range(manifest.block_count))

    async def _manifest(self, request: Request) -> tuple[Cid, Manifest]:
        cid = self._manifest_cid(request)
        try:
            return cid, await self._repo.get_manifest(cid)
        except CodexError as e:
            raise SlotDataError(f"the dataset {cid} is not in the repo: {e}") from e

    def _positions(self, request: Request, slot_index: int, manifest: Manifest) -> list[int | None]:
        return slot_positions(request, slot_index, manifest)

    async def _hold(self, manifest_cid: Cid, request: Request, slot_index: int, expiry: int) -> None:
        """Record that this sale needs the dataset until ``expiry`` and raise the manifest's expiry to match."""
        repo = self._repo
        key = hold_key(manifest_cid, request, slot_index)
        async with self._lock:
            batch = repo.kv.batch()
            raw = repo.kv.get(key)
            held = expiry if raw is None else max(expiry, _decode(raw))
            batch.put(key, _encode(held))
            if repo.kv.get(hold_base_key(manifest_cid)) is None:
                meta = repo.block_meta(manifest_cid)
                if meta is None:
                    raise SlotDataError(f"the dataset {manifest_cid} is not in the repo")
                batch.put(hold_base_key(manifest_cid), _encode(meta.expiry))
            repo.kv.write(batch)
            if await repo.ensure_expiry_many([manifest_cid], held) != 1:
                raise SlotDataError(f"the dataset {manifest_cid} left the repo")

    async def _ensure_blocks(self, manifest: Manifest, positions: Sequence[int | None], expiry: int) -> None:
        cids = [manifest.block_cid(i) for i in positions if i is not None]
        found = await self._repo.ensure_expiry_many(cids, expiry)
        if found == len(cids):
            return
        for index, cid in zip((i for i in positions if i is not None), cids, strict=True):
            if not self._repo.has_block(cid):
                raise SlotDataError(f"block {index} of the dataset ({cid}) is not in the repo")
        raise SlotDataError("a block of the slot left the repo while its expiry was raised")

    def _other_holds(self, manifest_cid: Cid, own_key: str) -> list[int]:
        """The expiries other sales hold the dataset to; drops holds already past (see the module docstring)."""
        now = self._repo.clock.now()
        kv = self._repo.kv
        out: list[int] = []
        stale = kv.batch()
        any_stale = False
        for key, raw in kv.iterate(holds_prefix(manifest_cid)):
            if key == own_key:
                continue
            expiry = _decode(raw)
            if expiry <= now:
                stale.delete(key)
                any_stale = True
            else:
                out.append(expiry)
        if any_stale:
            kv.write(stale)
        return out
