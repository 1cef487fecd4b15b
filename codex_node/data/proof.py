"""The storage proof value and its ABI form (format: docs/storage-proofs.md; pure: no I/O).

Invariant: every hash in a :class:`StorageProof` (the slot root and every path element) is exactly 32 bytes, so
a proof always encodes as the contract's ``StorageProof`` struct without the ABI encoder padding a short value
into a different one. Cells may have any length: a wrong length is something the verifier must see and refuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codex_node.data.merkle import HASH_SIZE
from codex_node.data.slots import BLOCK_SIZE
from codex_node.errors import InvalidProofShapeError

CELL_SIZE = 2048
"""Bytes per cell, the unit a proof samples."""
CELLS_PER_BLOCK = BLOCK_SIZE // CELL_SIZE

STORAGE_PROOF_ABI_TYPE = "(bytes32,bytes32[],bytes[],bytes32[][])"
"""The contract's ``StorageProof`` struct as an ABI type (the ``proof`` argument of fillSlot and submitProof)."""

AbiProof = tuple[bytes, list[bytes], list[bytes], list[list[bytes]]]
"""``(slotRoot, slotPath, cells, cellPaths)`` as web3 takes it."""


def _as_bytes(value: object) -> bytes:
    # bytes(int) would make that many zero bytes out of a number: only bytes-like values are bytes here.
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return bytes(value)


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise InvalidProofShapeError(f"{what} holds a {len(h)}-byte hash; hashes are {HASH_SIZE} bytes")


@dataclass(frozen=True, slots=True)
class StorageProof:
    """Possession of ``len(cells)`` sampled cells of one slot, and of that slot's place in the dataset.

    Raises :class:`InvalidProofShapeError` at construction if a hash is not 32 bytes long.
    """

    slot_root: bytes
    slot_path: tuple[bytes, ...]
    """Siblings of ``slot_root`` in the dataset tree, leaf level first."""
    cells: tuple[bytes, ...]
    """The sampled cells, in sample order."""
    cell_paths: tuple[tuple[bytes, ...], ...]
    """For each sample, the siblings of ``keccak256(cell)`` in the slot tree, leaf level first."""

    def __post_init__(self) -> None:
        _check_hashes("slot root", (self.slot_root,))
        _check_hashes("slot path", self.slot_path)
        for path in self.cell_paths:
            _check_hashes("cell path", path)

    def to_abi(self) -> AbiProof:
        """The ABI tuple the contract's ``fillSlot``/``submitProof`` take."""
        return (
            self.slot_root,
            list(self.slot_path),
            list(self.cells),
            [list(path) for path in self.cell_paths],
        )

    @classmethod
    def from_abi(cls, value: Sequence[Any]) -> StorageProof:
        """The proof in an ABI tuple (as built by :meth:`to_abi` or decoded by web3: lists or tuples, HexBytes).

        Raises :class:`InvalidProofShapeError` if ``value`` is not a 4-tuple of the struct's field types.
        """
        try:
            slot_root, slot_path, cells, cell_paths = value
            return cls(
                slot_root=_as_bytes(slot_root),
                slot_path=tuple(_as_bytes(h) for h in slot_path),
                cells=tuple(_as_bytes(c) for c in cells),
                cell_paths=tuple(tuple(_as_bytes(h) for h in path) for path in cell_paths),
            )
        except (TypeError, ValueError) as e:
            raise InvalidProofShapeError(f"not a StorageProof ABI tuple: {e}") from e
