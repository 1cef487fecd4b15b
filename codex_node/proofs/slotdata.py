"""Reading a dataset's slots from the block store to build slot trees, dataset trees and proof cells.

The thin async shell around the pure trees: it reads blocks through the narrow :class:`BlockReader` port
(``RepoStore`` implements it; every block read is checked against its CID) and hashes them in worker threads:
a slot tree's blocks are read, checked and hashed :data:`READ_BATCH` at a time in one thread hop, two hops at
once (two cores), so the event loop never runs keccak or sha256 over slot data. Memory use while building a slot
tree is two batches of blocks plus the tree (1/32 of the slot size).

Missing or corrupt blocks become :class:`ProofDataError` naming the slot and block: a proof needs the hosted
slot's blocks, and the dataset root needs every slot's (in the single-node case the node holds the whole dataset).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from codex_node.data.cellhash import HASH_THREADS
from codex_node.data.cid import Cid
from codex_node.data.manifest import Manifest
from codex_node.data.merkle import Buffer
from codex_node.data.proof import CELL_SIZE, CELLS_PER_BLOCK
from codex_node.data.protected import ProtectedManifest
from codex_node.data.slots import BLOCK_SIZE, SlotLayout, cid_bytes, pad_block
from codex_node.errors import BlockNotFoundError, CorruptBlockError, InvalidProtectedManifestError, ProofDataError
from codex_node.market.types import Content
from codex_node.proofs.trees import DatasetTree, SlotTree, block_leaves

READ_BATCH = 64
"""Blocks read, checked and hashed in one worker-thread hop while a slot tree is built (4 MiB)."""
HOPS_IN_FLIGHT = HASH_THREADS
"""Such hops run at once, one per core the cell hashing uses (the GIL is released while blocks are hashed)."""


class BlockReader(Protocol):
    """The part of the block store a prover reads (``stores.repostore.RepoStore`` implements it)."""

    async def get_manifest(self, cid: Cid) -> Manifest: ...

    async def get_block(self, cid: Cid) -> bytes: ...

    def read_blocks(self, cids: Sequence[Cid], *, check: bool = True) -> Sequence[Buffer | None]:
        """The bytes of each CID (``None``: not here), checked against it (``CorruptBlockError``); blocking (called
        in worker threads), blocks that follow each other on disk read at once."""
        ...


@dataclass(frozen=True, slots=True)
class SlottedDataset:
    """A stored dataset cut into ``layout.slots`` slots: which block CID sits at each position of each slot."""

    cid: Cid
    manifest: Manifest
    layout: SlotLayout
    slot_manifests: Mapping[int, Manifest] = field(default_factory=dict)
    """A protected dataset's slot manifests (``data/protected.py``) that were opened: slot ``s`` is the blocks of
    slot manifest ``s``. A host opens only the one of the slot it hosts (the others are on other hosts)."""
    slot_roots: tuple[bytes, ...] = ()
    """A protected dataset's slot roots as its manifest commits to them (their tree's root is the dataset root,
    checked when the manifest was parsed): the dataset tree without reading any other slot."""

    @property
    def protected(self) -> bool:
        return bool(self.slot_roots)

    def block_cid(self, slot_index: int, position: int) -> Cid | None:
        """The CID of the block at ``position`` in the slot, ``None`` for a zero padding block."""
        if self.protected:
            manifest = self.slot_manifests.get(slot_index)
            if manifest is None:
                raise ProofDataError(f"slot manifest {slot_index} of {self.cid} was not opened here")
            return manifest.block_cid(position)
        index = slot_index + position * self.layout.slots
        return self.manifest.block_cid(index) if index < self.layout.dataset_blocks else None

    def slot_cids(self, slot_index: int) -> list[Cid | None]:
        return [self.block_cid(slot_index, p) for p in range(self.layout.blocks_per_slot)]


async def open_dataset(reader: BlockReader, cid: Cid, slots: int, *, only_slot: int | None = None) -> SlottedDataset:
    """The dataset whose manifest is ``cid``, cut into ``slots`` slots. Raises :class:`ProofDataError` if the
    manifest is not here or its blocks are not 64 KiB (the slot layout and the contract assume they are).
    A protected manifest CID opens its slot manifests instead (every slot is one, blocks in order, no padding):
    all of them, or with ``only_slot`` just that one (a host holds only its own slot)."""
    if cid.is_protected_manifest:
        return await _open_protected(reader, cid, slots, only_slot)
    try:
        manifest = await reader.get_manifest(cid)
    except (BlockNotFoundError, CorruptBlockError) as e:
        raise ProofDataError(f"manifest {cid} is not readable here: {e}") from e
    if manifest.info.block_size != BLOCK_SIZE:
        raise ProofDataError(f"dataset {cid} has {manifest.info.block_size}-byte blocks; slots need {BLOCK_SIZE}")
    if manifest.block_count == 0:
        raise ProofDataError(f"dataset {cid} is empty and cannot be cut into slots")
    return SlottedDataset(cid, manifest, SlotLayout(manifest.block_count, slots))


async def _open_protected(reader: BlockReader, cid: Cid, slots: int, only_slot: int | None) -> SlottedDataset:
    try:
        protected = ProtectedManifest.from_block(cid, await reader.get_block(cid))
    except (BlockNotFoundError, CorruptBlockError, InvalidProtectedManifestError) as e:
        raise ProofDataError(f"protected dataset {cid} is not readable here: {e}") from e
    if protected.params.slots != slots:
        raise ProofDataError(f"protected dataset {cid} has {protected.params.slots} slots, not {slots}")
    if only_slot is not None and not 0 <= only_slot < slots:
        raise ProofDataError(f"protected dataset {cid} has no slot {only_slot}")
    wanted = range(slots) if only_slot is None else (only_slot,)
    try:
        manifests = {i: await reader.get_manifest(protected.slot_manifests[i]) for i in wanted}
    except (BlockNotFoundError, CorruptBlockError) as e:
        raise ProofDataError(f"a slot manifest of protected dataset {cid} is not readable here: {e}") from e
    rows = protected.blocks_per_slot
    if any(m.block_count != rows or m.info.block_size != BLOCK_SIZE for m in manifests.values()):
        raise ProofDataError(f"a slot manifest of {cid} does not list its slot's {rows} blocks")
    first = next(iter(manifests.values()))
    return SlottedDataset(cid, first, SlotLayout(rows * slots, slots), manifests, protected.slot_roots)


@contextmanager
def _as_proof_data_error(dataset: SlottedDataset, slot_index: int, cid: Cid) -> Iterator[None]:
    """A block of the slot missing or corrupt, as the :class:`ProofDataError` naming the slot and block."""
    try:
        yield
    except BlockNotFoundError as e:
        raise _not_here(dataset, slot_index, cid) from e
    except CorruptBlockError as e:
        raise ProofDataError(f"block {cid} of slot {slot_index} of dataset {dataset.cid} is corrupt: {e}") from e


def _not_here(dataset: SlottedDataset, slot_index: int, cid: Cid) -> ProofDataError:
    return ProofDataError(f"block {cid} of slot {slot_index} of dataset {dataset.cid} is not here")


async def _read(reader: BlockReader, dataset: SlottedDataset, slot_index: int, cid: Cid | None) -> bytes | None:
    if cid is None:
        return None
    with _as_proof_data_error(dataset, slot_index, cid):
        return await reader.get_block(cid)


def _read_and_hash(reader: BlockReader, dataset: SlottedDataset, slot_index: int, cids: Sequence[Cid | None]) -> bytes:
    """The cell leaves of the blocks of ``cids`` (``None``: a zero padding block), read and checked here: blocking,
    for a worker thread. The blocks are read with one call (one positioned read per run of a pack: a slot's blocks
    were stored in order, so a batch is one or two reads even when they come from the disk, not the page cache)."""
    stored = [cid for cid in cids if cid is not None]
    try:
        read = iter(reader.read_blocks(stored))
    except CorruptBlockError as e:
        raise ProofDataError(f"a block of slot {slot_index} of dataset {dataset.cid} is corrupt: {e}") from e
    leaves = []
    for cid in cids:
        if cid is None:
            leaves.append(block_leaves(None))
            continue
        block = next(read)
        if block is None:
            raise _not_here(dataset, slot_index, cid)
        leaves.append(block_leaves(block))
    return b"".join(leaves)


async def slot_tree(reader: BlockReader, dataset: SlottedDataset, slot_index: int) -> SlotTree:
    """Read slot ``slot_index`` and build its tree: :data:`READ_BATCH` blocks read, checked and hashed per worker
    thread hop, :data:`HOPS_IN_FLIGHT` hops at once, their leaves joined in slot order."""
    cids = dataset.slot_cids(slot_index)
    leaves = bytearray()
    pending: deque[asyncio.Future[bytes]] = deque()
    try:
        for start in range(0, len(cids), READ_BATCH):
            batch = cids[start : start + READ_BATCH]
            pending.append(asyncio.ensure_future(asyncio.to_thread(_read_and_hash, reader, dataset, slot_index, batch)))
            if len(pending) >= HOPS_IN_FLIGHT:
                leaves += await pending.popleft()
        while pending:
            leaves += await pending.popleft()
    finally:
        for hop in pending:  # a read failed or we were cancelled: the hops not awaited yet are not wanted
            hop.cancel()
    return await asyncio.to_thread(SlotTree, leaves)


async def dataset_tree(
    reader: BlockReader, dataset: SlottedDataset, *, first: int = 0
) -> tuple[DatasetTree, list[SlotTree]]:
    """The dataset tree over every slot's root, and every slot's tree (in slot order). Slot ``first`` is read
    first, so that missing blocks of the slot a node hosts are reported before missing blocks of its siblings."""
    slots = dataset.layout.slots
    trees: dict[int, SlotTree] = {}
    for index in [first, *(i for i in range(slots) if i != first)]:
        trees[index] = await slot_tree(reader, dataset, index)
    ordered = [trees[i] for i in range(slots)]
    return DatasetTree([t.root for t in ordered]), ordered


async def read_cells(
    reader: BlockReader, dataset: SlottedDataset, slot_index: int, indices: Sequence[int]
) -> list[bytes]:
    """Cells ``indices`` of the slot, reading each block they fall in once."""
    positions = sorted({i // CELLS_PER_BLOCK for i in indices})
    blocks = await asyncio.gather(
        *(_read(reader, dataset, slot_index, dataset.block_cid(slot_index, p)) for p in positions)
    )
    padded = {p: pad_block(b) if b is not None else None for p, b in zip(positions, blocks, strict=True)}
    out = []
    for i in indices:
        block = padded[i // CELLS_PER_BLOCK]
        start = (i % CELLS_PER_BLOCK) * CELL_SIZE
        out.append(bytes(CELL_SIZE) if block is None else block[start : start + CELL_SIZE])
    return out


@dataclass(frozen=True, slots=True)
class DatasetCommitment:
    """What a storage request commits to for a stored dataset cut into ``slots`` slots."""

    cid: bytes
    """``Content.cid``: the manifest CID's binary form."""
    merkle_root: bytes
    """``Content.merkleRoot``: the dataset root."""
    slots: int
    slot_size: int
    """``Ask.slotSize``: whole 64 KiB blocks."""

    @property
    def content(self) -> Content:
        return Content(cid=self.cid, merkle_root=self.merkle_root)


async def dataset_commitment(reader: BlockReader, cid: Cid, slots: int) -> DatasetCommitment:
    """Hash the stored dataset ``cid`` into the ``Content`` and slot size a request over ``slots`` slots needs.

    Reads and hashes the whole dataset (about 0.3 s per 64 MiB). Raises :class:`ProofDataError` if a block is
    missing or corrupt.
    """
    dataset = await open_dataset(reader, cid, slots)
    tree, _ = await dataset_tree(reader, dataset)
    return DatasetCommitment(cid_bytes(cid), tree.root, slots, dataset.layout.slot_size)
