"""The pure-Python storage proof verifier: the contract's ``StorageProofs.verify``, check for check (pure).

:func:`check_proof` runs the contract's checks in the contract's order and raises the error class matching the
revert the contract would raise for the same proof and target (``.contract_error`` holds its name):

1. ``cells`` and ``cellPaths`` both hold ``samples`` entries, and every cell is 2048 bytes
   → :class:`InvalidProofShapeError` (the whole shape is checked before any hashing);
2. for each sample in order, its path has the slot tree's depth and leads from ``keccak256(cell)`` at the sampled
   index to ``slotRoot`` → :class:`InvalidCellProofError`;
3. ``slotPath`` has the dataset tree's depth and leads from ``slotRoot`` at ``slotIndex`` to the dataset root
   → :class:`InvalidSlotProofError`.

One case cannot agree: a target whose slot is smaller than one cell (``slotSize < 2048``) with ``samples > 0``
makes the contract panic (division by zero) once the first path length matches; here that is an
:class:`InvalidProofShapeError`. The chain never produces such a target: ``requestStorage`` refuses slot sizes
that are not whole 64 KiB blocks.

:func:`verify_proof` is the boolean form that fits ``codex_node.testing.mockledger.ProofVerifier``.
"""

from __future__ import annotations

from typing import Protocol

from codex_node.data.merkle import keccak256, root_from_path, tree_depth
from codex_node.data.proof import CELL_SIZE, StorageProof
from codex_node.errors import InvalidCellProofError, InvalidProofError, InvalidProofShapeError, InvalidSlotProofError
from codex_node.proofs.sampling import sample_index


class ProofTargetLike(Protocol):
    """What a proof is checked against: the contract's ``ProofTarget`` (``mockledger.ProofTarget`` is one)."""

    @property
    def challenge(self) -> bytes: ...
    @property
    def slot_id(self) -> bytes: ...
    @property
    def slot_index(self) -> int: ...
    @property
    def slots(self) -> int: ...
    @property
    def slot_size(self) -> int: ...
    @property
    def dataset_root(self) -> bytes: ...
    @property
    def samples(self) -> int: ...


def check_proof(proof: StorageProof, target: ProofTargetLike) -> None:
    """Return if ``proof`` proves ``target``; else raise the :class:`InvalidProofError` the contract would."""
    samples = target.samples
    if len(proof.cells) != samples or len(proof.cell_paths) != samples:
        raise InvalidProofShapeError(
            f"{len(proof.cells)} cells and {len(proof.cell_paths)} cell paths for {samples} samples"
        )
    for i, cell in enumerate(proof.cells):
        if len(cell) != CELL_SIZE:
            raise InvalidProofShapeError(f"cell {i} is {len(cell)} bytes, not {CELL_SIZE}")

    cells_in_slot = target.slot_size // CELL_SIZE
    cell_depth = tree_depth(cells_in_slot)
    for i, (cell, path) in enumerate(zip(proof.cells, proof.cell_paths, strict=True)):
        if len(path) != cell_depth:
            raise InvalidCellProofError(f"cell path {i} has {len(path)} siblings, the slot tree is {cell_depth} deep")
        if cells_in_slot == 0:
            raise InvalidProofShapeError(f"a slot of {target.slot_size} bytes holds no cell to sample")
        index = sample_index(target.challenge, target.slot_id, i, cells_in_slot)
        if root_from_path(keccak256(cell), index, path) != proof.slot_root:
            raise InvalidCellProofError(f"sample {i} (cell {index}) does not lead to the slot root")

    slot_depth = tree_depth(target.slots)
    if len(proof.slot_path) != slot_depth:
        raise InvalidSlotProofError(
            f"slot path has {len(proof.slot_path)} siblings, the dataset tree is {slot_depth} deep"
        )
    if root_from_path(proof.slot_root, target.slot_index, proof.slot_path) != target.dataset_root:
        raise InvalidSlotProofError(f"slot root and path of slot {target.slot_index} do not lead to the dataset root")


def verify_proof(proof: StorageProof, target: ProofTargetLike) -> bool:
    """Whether ``proof`` proves ``target`` (see :func:`check_proof` for which check failed)."""
    try:
        check_proof(proof, target)
    except InvalidProofError:
        return False
    return True
