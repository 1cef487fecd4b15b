"""Assembling a storage proof from a slot's trees and its sampled cells (pure: no I/O).

:func:`build_proof` never produces a proof the verifier refuses without saying so: it checks that every cell
hashes to its leaf in the slot tree and that the slot tree's root is the dataset tree's leaf for the slot, and
raises :class:`ProofDataError` otherwise (the data read for the proof is not the data the trees were built from).
"""

from __future__ import annotations

from collections.abc import Sequence

from codex_node.data.merkle import Buffer, keccak256
from codex_node.data.proof import CELL_SIZE, StorageProof
from codex_node.errors import ProofDataError
from codex_node.proofs.sampling import sample_indices
from codex_node.proofs.trees import DatasetTree, SlotTree


def build_proof(
    slot_tree: SlotTree,
    dataset_tree: DatasetTree,
    slot_index: int,
    indices: Sequence[int],
    cells: Sequence[bytes],
) -> StorageProof:
    """The proof showing ``cells`` (cell ``indices[i]`` of slot ``slot_index`` is ``cells[i]``)."""
    if len(indices) != len(cells):
        raise ValueError(f"{len(indices)} indices but {len(cells)} cells")
    if dataset_tree.slot_root(slot_index) != slot_tree.root:
        raise ProofDataError(f"slot {slot_index}'s tree does not match its root in the dataset tree")
    for index, cell in zip(indices, cells, strict=True):
        if len(cell) != CELL_SIZE or keccak256(cell) != slot_tree.leaf(index):
            raise ProofDataError(f"cell {index} of slot {slot_index} does not match the slot tree")
    return StorageProof(
        slot_root=slot_tree.root,
        slot_path=dataset_tree.path(slot_index),
        cells=tuple(bytes(c) for c in cells),
        cell_paths=tuple(slot_tree.path(i) for i in indices),
    )


def cell_of(slot_data: Buffer, cell_index: int) -> bytes:
    """Cell ``cell_index`` of a slot held whole in memory."""
    start = cell_index * CELL_SIZE
    if not 0 <= start <= len(slot_data) - CELL_SIZE:
        raise IndexError(f"cell {cell_index} is outside a slot of {len(slot_data)} bytes")
    return bytes(memoryview(slot_data)[start : start + CELL_SIZE])


def prove_slot_data(
    slot_data: Buffer,
    dataset_tree: DatasetTree,
    slot_index: int,
    challenge: bytes,
    slot_id: bytes,
    samples: int,
    *,
    slot_tree: SlotTree | None = None,
) -> StorageProof:
    """The proof for ``challenge`` of a slot held whole in memory (tests, clients, tools; the node's
    :class:`~codex_node.proofs.prover.Prover` reads only the sampled blocks)."""
    tree = slot_tree if slot_tree is not None else SlotTree.from_bytes(slot_data)
    indices = sample_indices(challenge, slot_id, tree.cells, samples)
    return build_proof(tree, dataset_tree, slot_index, indices, [cell_of(slot_data, i) for i in indices])
