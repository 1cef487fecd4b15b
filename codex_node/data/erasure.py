"""Erasure coding a dataset into K+M slots with zfec, and decoding it back from any K of them (pure: no I/O).

Layout (MARKETPLACE.md §2): the dataset's 64 KiB blocks (the last one zero-padded to 64 KiB) are grouped in rows
of K; the last row is filled up with zero blocks. Each row is encoded with zfec (systematic Reed–Solomon) into
K+M blocks: the K data blocks themselves, then M parity blocks. Slot ``s`` holds block ``s`` of every row, so
data slot ``s < K`` holds dataset blocks ``s, s+K, s+2K, …`` and every slot is ``rows`` blocks long
(``slotSize = rows × 64 KiB``). Any K slots give back every row, hence the dataset.

Parameters (anchor §6): ``K = nodes - tolerance``, ``M = tolerance``; ``tolerance ≥ 1``, ``tolerance ≤ nodes``
and ``1 < K ≥ M``; and zfec's own limit ``K + M ≤ 256``.

Streaming: :func:`encode_rows` pulls K dataset blocks, yields their row of K+M blocks and forgets it, so memory
is one row plus whatever the caller keeps. :class:`ErasureEncoder` wraps it and computes the slot roots **in
the same pass**, from each encoded block while it is in memory: a second pass would read the whole encoded
dataset ((K+M)/K × its size) back from the store just to hash it, and the parity blocks exist nowhere else
before they are stored. Each slot root is a :class:`~codex_node.data.merkle.Frontier` over the slot's block
subtree roots (``log2(rows)`` hashes per slot), not a list of leaves, so the encoder's memory does not grow with
the dataset. :func:`decode_dataset` reads one block from each of K slots per row, gives back the row's data
bytes (the padding cut off with the original size) and, by default, checks each slot it read against its slot
root as it goes (the verdict comes after the last byte: a caller commits what it wrote only once the generator
has finished without error).

The roots are exactly those of the storage proofs (``proofs/trees.py``, docs/storage-proofs.md): a slot tree over
``keccak256`` of every 2 KiB cell, padded to a power of two with zero leaves, and the dataset tree over the slot
roots. The protected manifest that records them is ``data/protected.py``.

This module never does I/O: blocks come in through iterables or callables and go out as values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import zfec

from codex_node.data.cellhash import hash_blocks
from codex_node.data.merkle import Buffer, Frontier, MerkleTree, hash_chunks
from codex_node.data.proof import CELL_SIZE
from codex_node.data.slots import BLOCK_SIZE, ZERO_BLOCK
from codex_node.errors import (
    ErasureDataError,
    ErasureError,
    ErasureParamsError,
    InsufficientBlocksError,
    SlotRootMismatchError,
)

BLOCK_LEVEL = (BLOCK_SIZE // CELL_SIZE).bit_length() - 1
"""The slot-tree level of a block's subtree root: a 64 KiB block is 32 = 2**5 cells."""
MAX_SLOTS = 256
"""zfec's limit on K + M (its Galois field has 256 elements)."""

BlockSource = Iterable[Buffer] | Callable[[int], Buffer]
"""Where the dataset's blocks come from: an iterable of them in order, or a function of the block index."""


@dataclass(frozen=True, slots=True)
class ErasureParams:
    """K data blocks and M parity blocks per row; K + M slots."""

    k: int
    m: int

    def __post_init__(self) -> None:
        if self.m < 1:
            raise ErasureParamsError(f"tolerance (M) must be at least 1, got {self.m}")
        if self.k <= 1 or self.k < self.m:
            raise ErasureParamsError(
                f"K = nodes - tolerance = {self.k} and M = tolerance = {self.m} break the rule 1 < K >= M: "
                "use more nodes or a smaller tolerance"
            )
        if self.k + self.m > MAX_SLOTS:
            raise ErasureParamsError(f"nodes = K + M = {self.k + self.m} exceeds the erasure coder's {MAX_SLOTS}")

    @classmethod
    def from_request(cls, nodes: int, tolerance: int) -> ErasureParams:
        """The parameters of a storage request over ``nodes`` slots that survives losing ``tolerance``."""
        if tolerance < 1:
            raise ErasureParamsError(f"tolerance must be at least 1, got {tolerance}")
        if tolerance > nodes:
            raise ErasureParamsError(f"tolerance ({tolerance}) cannot exceed nodes ({nodes})")
        return cls(nodes - tolerance, tolerance)

    @property
    def slots(self) -> int:
        return self.k + self.m


@dataclass(frozen=True, slots=True)
class ErasureLayout:
    """Where each block of a ``dataset_size``-byte dataset goes when it is coded with ``params``."""

    params: ErasureParams
    dataset_size: int

    def __post_init__(self) -> None:
        if self.dataset_size < 1:
            raise InsufficientBlocksError("an empty dataset has no block to erasure-code")

    @property
    def block_count(self) -> int:
        """Blocks of the original dataset."""
        return -(-self.dataset_size // BLOCK_SIZE)

    @property
    def rows(self) -> int:
        """Rows of K blocks, which is also the number of blocks in every slot."""
        return -(-self.block_count // self.params.k)

    @property
    def slot_size(self) -> int:
        """``Ask.slotSize``: every slot is ``rows`` whole blocks."""
        return self.rows * BLOCK_SIZE

    def block_length(self, index: int) -> int:
        """Bytes of dataset block ``index`` (only the last block may be short)."""
        if not 0 <= index < self.block_count:
            raise IndexError(f"block {index} out of range 0..{self.block_count - 1}")
        return min(BLOCK_SIZE, self.dataset_size - index * BLOCK_SIZE)

    def dataset_block(self, slot_index: int, position: int) -> int | None:
        """The dataset block at ``position`` of data slot ``slot_index``; ``None`` for a padding zero block."""
        if not 0 <= slot_index < self.params.k:
            raise IndexError(f"slot {slot_index} is not a data slot (0..{self.params.k - 1})")
        if not 0 <= position < self.rows:
            raise IndexError(f"position {position} out of range 0..{self.rows - 1}")
        index = position * self.params.k + slot_index
        return index if index < self.block_count else None


@dataclass(frozen=True, slots=True)
class EncodedRow:
    """Row ``index`` of the encoding: ``blocks[s]`` (64 KiB, ``bytes``) is the block at position ``index`` of slot
    ``s``; the first K are the row's data blocks, the last M its parity blocks."""

    index: int
    blocks: tuple[bytes, ...]


def block_root(block: Buffer) -> bytes:
    """The slot-tree node over one 64 KiB block: the root of its 32 cell leaves (level :data:`BLOCK_LEVEL`)."""
    return MerkleTree(hash_chunks(block, CELL_SIZE)).root


class SlotRootBuilder:
    """A slot root computed block by block (see the module docstring); memory ``O(log2(blocks))``, plus the
    slot's cell leaves (1/64 of its bytes) with ``keep_leaves``: the slot tree's bottom level, for a prover."""

    __slots__ = ("_frontier", "_leaves")

    def __init__(self, *, keep_leaves: bool = False) -> None:
        self._frontier = Frontier(BLOCK_LEVEL)
        self._leaves: bytearray | None = bytearray() if keep_leaves else None

    @property
    def blocks(self) -> int:
        return self._frontier.count

    def add(self, block: Buffer) -> None:
        self.add_many((block,), threads=1)

    def add_many(self, blocks: Sequence[Buffer], *, threads: int | None = None) -> None:
        """Add the next ``blocks`` in order, their cells hashed on up to ``threads`` threads (default: one per core,
        ``data/cellhash.py``)."""
        self.add_hashed(*hash_blocks(blocks, threads=threads))

    def add_hashed(self, leaves: Buffer, roots: Sequence[bytes]) -> None:
        """Add the next blocks by their hashes: their cell leaves (concatenated, 32 per block) and each block's
        subtree root, as :func:`~codex_node.data.cellhash.block_hashes` gives them."""
        push = self._frontier.push
        for node in roots:
            push(node)
        if self._leaves is not None:
            self._leaves += leaves

    def root(self) -> bytes:
        return self._frontier.root()

    def leaves(self) -> bytes | None:
        """The cell leaves of every block added so far, concatenated; ``None`` unless built with ``keep_leaves``."""
        return None if self._leaves is None else bytes(self._leaves)


def slot_root(blocks: Iterable[Buffer]) -> bytes:
    """The slot root of a slot given as its 64 KiB blocks in order."""
    builder = SlotRootBuilder()
    for block in blocks:
        builder.add(block)
    return builder.root()


def dataset_root(slot_roots: Iterable[bytes]) -> bytes:
    """``Content.merkleRoot``: the root of the tree over the slot roots in slot order."""
    return MerkleTree.from_leaves(list(slot_roots)).root


def _blocks(source: BlockSource, count: int) -> Iterator[Buffer]:
    if callable(source):
        return (source(i) for i in range(count))
    return iter(source)


def _as_bytes(block: Buffer) -> bytes:
    # Rows hand their blocks to the caller (and zfec returns the data blocks themselves): a mutable buffer could
    # change under them after the source reuses it, so only immutable bytes go out.
    return block if isinstance(block, bytes) else bytes(block)


def encode_rows(layout: ErasureLayout, source: BlockSource) -> Iterator[EncodedRow]:
    """The rows of the encoding, one at a time (memory: one row).

    ``source`` yields exactly the dataset's blocks: ``block_count - 1`` blocks of 64 KiB and a last one of the
    rest. Anything else raises :class:`ErasureDataError` (the dataset is not the one ``layout`` describes).
    """
    k, m = layout.params.k, layout.params.slots
    encoder = zfec.Encoder(k, m)
    parity_ids = tuple(range(k, m))
    count = layout.block_count
    last = count - 1
    last_length = layout.block_length(last)
    blocks = _blocks(source, count)
    index = 0
    for row in range(layout.rows):
        data: list[bytes] = []
        for _ in range(k):
            if index > last:
                data.append(ZERO_BLOCK)
                continue
            block = next(blocks, None)
            if block is None:
                raise ErasureDataError(
                    f"the dataset ended after {index} blocks; {layout.dataset_size} bytes need {count}"
                )
            size = len(block) if type(block) is bytes else memoryview(block).nbytes
            expected = BLOCK_SIZE if index < last else last_length
            if size != expected:
                raise ErasureDataError(f"dataset block {index} has {size} bytes, expected {expected}")
            data.append(_as_bytes(block) if size == BLOCK_SIZE else bytes(block) + bytes(BLOCK_SIZE - size))
            index += 1
        primary = tuple(data)
        yield EncodedRow(row, (*primary, *encoder.encode(primary, parity_ids)))
    if next(blocks, None) is not None:
        raise ErasureDataError(f"the dataset has more than the {count} blocks {layout.dataset_size} bytes make")


class ErasureEncoder:
    """Encodes a dataset row by row and computes its slot roots on the way (see the module docstring).

    ::

        encoder = ErasureEncoder(ErasureParams.from_request(nodes, tolerance), dataset_size)
        for row in encoder.rows(blocks):
            store(row)                     # row.blocks[s] goes to slot s
        roots = encoder.slot_roots()       # once every row has been pulled
    """

    def __init__(self, params: ErasureParams, dataset_size: int) -> None:
        self.layout = ErasureLayout(params, dataset_size)
        self._builders = [SlotRootBuilder() for _ in range(params.slots)]
        self._finished = False
        self._started = False

    def rows(self, source: BlockSource) -> Iterator[EncodedRow]:
        """The encoded rows; each row's blocks are hashed into the slot roots before it is yielded."""
        if self._started:
            raise ErasureError("an encoder encodes one dataset once")
        self._started = True
        return self._rows(source)

    def _rows(self, source: BlockSource) -> Iterator[EncodedRow]:
        builders = self._builders
        for row in encode_rows(self.layout, source):
            for builder, block in zip(builders, row.blocks, strict=True):
                builder.add(block)
            yield row
        self._finished = True

    def slot_roots(self) -> tuple[bytes, ...]:
        """Every slot's root, in slot order; only after :meth:`rows` has been exhausted."""
        if not self._finished:
            raise ErasureError("the slot roots are known only once every row has been encoded")
        return tuple(builder.root() for builder in self._builders)


def _next_block(blocks: Iterator[Buffer], slot_index: int, position: int) -> Buffer:
    block = next(blocks, None)
    if block is None:
        raise ErasureDataError(f"slot {slot_index} ended after {position} blocks")
    size = memoryview(block).nbytes
    if size != BLOCK_SIZE:
        raise ErasureDataError(f"block {position} of slot {slot_index} has {size} bytes, not {BLOCK_SIZE}")
    return block


def decode_dataset(
    layout: ErasureLayout,
    slots: Mapping[int, Iterable[Buffer]],
    *,
    slot_roots: tuple[bytes, ...] | None = None,
) -> Iterator[bytes]:
    """The original dataset's bytes, in pieces of at most 64 KiB, from any K of the K+M slots.

    ``slots`` maps slot indices to their blocks in position order (iterables are pulled lazily, one block per
    row; pass generators that read from the store). When more than K slots are given, the lowest K are read
    (data slots first: no decoding work while they are all there). With ``slot_roots`` (the protected
    manifest's), each slot read is hashed on the way and a mismatch raises :class:`SlotRootMismatchError` after
    the last piece. Memory: one row.
    """
    params = layout.params
    k, n = params.k, params.slots
    bad = sorted(s for s in slots if not 0 <= s < n)
    if bad:
        raise ErasureDataError(f"slot indices {bad} out of range 0..{n - 1}")
    if len(slots) < k:
        raise ErasureDataError(f"decoding needs {k} of the {n} slots, got {len(slots)}: {sorted(slots)}")
    if slot_roots is not None and len(slot_roots) != n:
        raise ErasureDataError(f"{len(slot_roots)} slot roots given for {n} slots")
    chosen = tuple(sorted(slots)[:k])
    readers = {s: iter(slots[s]) for s in chosen}
    builders = {s: SlotRootBuilder() for s in chosen} if slot_roots is not None else {}
    systematic = chosen == tuple(range(k))
    decoder = None if systematic else zfec.Decoder(k, n)
    count = layout.block_count
    for row in range(layout.rows):
        blocks = tuple(_next_block(readers[s], s, row) for s in chosen)
        for s, block in zip(chosen, blocks, strict=True):
            if builders:
                builders[s].add(block)
        data = blocks if decoder is None else decoder.decode(blocks, chosen)
        for j, block in enumerate(data):
            index = row * k + j
            if index >= count:
                break
            length = layout.block_length(index)
            piece = block if length == BLOCK_SIZE else memoryview(block)[:length]
            yield _as_bytes(piece)
    for s in chosen:
        if next(readers[s], None) is not None:
            raise ErasureDataError(f"slot {s} has more than the {layout.rows} blocks of this dataset")
    if slot_roots is not None:
        for s in chosen:
            if builders[s].root() != slot_roots[s]:
                raise SlotRootMismatchError(f"slot {s} does not hash to its slot root: its data is corrupt")
