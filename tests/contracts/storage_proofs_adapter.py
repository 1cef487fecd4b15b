"""Datasets and storage proofs for the contract tests: a thin adapter over ``codex_node.proofs``.

It keeps a dataset's slots whole in memory (the tests' datasets are a few blocks) and hands proofs over as the
ABI tuples the tests send to ``fillSlot``/``submitProof``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from codex_node.data.slots import BLOCK_SIZE
from codex_node.proofs import AbiProof, DatasetTree, SlotTree, StorageProof, prove_slot_data

__all__ = ["BLOCK_SIZE", "Dataset", "build_proof", "build_storage_proof"]


@dataclass(frozen=True)
class Dataset:
    """The slots of a dataset, each a whole number of 64 KiB blocks, held in memory."""

    slots: tuple[bytes, ...]

    @staticmethod
    def random(slots: int, blocks_per_slot: int, seed: int) -> Dataset:
        rng = random.Random(seed)
        return Dataset(tuple(rng.randbytes(blocks_per_slot * BLOCK_SIZE) for _ in range(slots)))

    @cached_property
    def slot_trees(self) -> tuple[SlotTree, ...]:
        return tuple(SlotTree.from_bytes(data) for data in self.slots)

    @cached_property
    def tree(self) -> DatasetTree:
        return DatasetTree([t.root for t in self.slot_trees])

    @property
    def root(self) -> bytes:
        """The dataset root; bytes32(0) for no slots (requests the contract must refuse for other reasons)."""
        return self.tree.root if self.slots else bytes(32)


def build_storage_proof(dataset: Dataset, index: int, challenge: bytes, slot_id: bytes, samples: int) -> StorageProof:
    """The proof of slot ``index`` for ``challenge``."""
    return prove_slot_data(
        dataset.slots[index], dataset.tree, index, challenge, slot_id, samples, slot_tree=dataset.slot_trees[index]
    )


def build_proof(dataset: Dataset, index: int, challenge: bytes, slot_id: bytes, samples: int) -> AbiProof:
    """The ABI tuple ``(slotRoot, slotPath, cells, cellPaths)`` proving slot ``index`` for ``challenge``."""
    return build_storage_proof(dataset, index, challenge, slot_id, samples).to_abi()
