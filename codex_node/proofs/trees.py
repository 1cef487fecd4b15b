"""The two trees of a storage proof: a slot's cell tree and a dataset's tree of slot roots (pure: no I/O).

- :class:`SlotTree`: leaves are ``keccak256(cell)`` for every 2 KiB cell of the slot in order; its root is the
  slot root. A slot is a whole number of cells (the contract's slots are whole 64 KiB blocks).
- :class:`DatasetTree`: leaves are the slot roots themselves, in slot order; its root is ``Content.merkleRoot``.

Both pad their leaf count to a power of two with ``bytes32(0)`` (see ``data/merkle.py``). Building a slot tree
hashes every byte of the slot (about 0.3 s per 64 MiB): callers in async code run it in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from codex_node.data.merkle import Buffer, MerkleTree, hash_chunks
from codex_node.data.proof import CELL_SIZE
from codex_node.data.slots import BLOCK_SIZE, ZERO_BLOCK, pad_block


def cell_leaves(data: Buffer) -> bytes:
    """``keccak256`` of every cell of ``data`` (a whole number of cells), concatenated."""
    return hash_chunks(data, CELL_SIZE)


ZERO_BLOCK_LEAVES = cell_leaves(ZERO_BLOCK)
"""The cell leaves of a zero block (the padding blocks at the end of a slot)."""


def block_leaves(block: Buffer | None) -> bytes:
    """The cell leaves of one slot block: ``block`` zero-padded to 64 KiB, or a zero block for ``None``."""
    if block is None:
        return ZERO_BLOCK_LEAVES
    return cell_leaves(block if len(block) == BLOCK_SIZE else pad_block(bytes(block)))


class SlotTree:
    """The Merkle tree over a slot's cell leaves."""

    __slots__ = ("_tree",)

    def __init__(self, leaves: Buffer) -> None:
        """``leaves``: the slot's cell leaves, concatenated (see :func:`cell_leaves`)."""
        self._tree = MerkleTree(leaves)

    @classmethod
    def from_bytes(cls, data: Buffer) -> SlotTree:
        """The tree of a slot held whole in memory (``len(data)`` a positive multiple of the cell size)."""
        size = memoryview(data).nbytes
        if not size or size % CELL_SIZE:
            raise ValueError(f"a slot is a positive whole number of {CELL_SIZE}-byte cells, got {size} bytes")
        return cls(cell_leaves(data))

    @classmethod
    def from_blocks(cls, blocks: Iterable[bytes | None]) -> SlotTree:
        """The tree of a slot given block by block (each zero-padded to 64 KiB; ``None`` is a zero block)."""
        return cls(b"".join(block_leaves(b) for b in blocks))

    @property
    def cells(self) -> int:
        """``cellsInSlot``: the number of (unpadded) cells."""
        return self._tree.leaf_count

    @property
    def root(self) -> bytes:
        return self._tree.root

    @property
    def depth(self) -> int:
        return self._tree.depth

    @property
    def nbytes(self) -> int:
        return self._tree.nbytes

    def leaf(self, cell_index: int) -> bytes:
        return self._tree.leaf(cell_index)

    def path(self, cell_index: int) -> tuple[bytes, ...]:
        return self._tree.path(cell_index)


class DatasetTree:
    """The Merkle tree over a dataset's slot roots; its root is the request's ``Content.merkleRoot``."""

    __slots__ = ("_tree",)

    def __init__(self, slot_roots: Sequence[bytes]) -> None:
        self._tree = MerkleTree.from_leaves(slot_roots)

    @property
    def slots(self) -> int:
        return self._tree.leaf_count

    @property
    def root(self) -> bytes:
        return self._tree.root

    @property
    def depth(self) -> int:
        return self._tree.depth

    def slot_root(self, slot_index: int) -> bytes:
        return self._tree.leaf(slot_index)

    def path(self, slot_index: int) -> tuple[bytes, ...]:
        return self._tree.path(slot_index)
