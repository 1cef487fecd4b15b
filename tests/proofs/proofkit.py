"""Small in-memory datasets, targets and proof mutations shared by the proof tests."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import TypeVar

from codex_node.data.slots import BLOCK_SIZE
from codex_node.proofs import DatasetTree, SlotTree, StorageProof, prove_slot_data
from codex_node.testing.mockledger import ProofTarget

T = TypeVar("T")


@dataclass(frozen=True)
class MemDataset:
    slots: tuple[bytes, ...]

    @staticmethod
    def random(slots: int, blocks_per_slot: int, seed: int = 0) -> MemDataset:
        rng = random.Random(seed)
        return MemDataset(tuple(rng.randbytes(blocks_per_slot * BLOCK_SIZE) for _ in range(slots)))

    @cached_property
    def trees(self) -> tuple[SlotTree, ...]:
        return tuple(SlotTree.from_bytes(s) for s in self.slots)

    @cached_property
    def tree(self) -> DatasetTree:
        return DatasetTree([t.root for t in self.trees])

    def target(self, slot_index: int, challenge: bytes, slot_id: bytes, samples: int = 5) -> ProofTarget:
        return ProofTarget(
            challenge=challenge,
            slot_id=slot_id,  # type: ignore[arg-type]
            slot_index=slot_index,
            slots=len(self.slots),
            slot_size=len(self.slots[0]),
            dataset_root=self.tree.root,
            samples=samples,
        )

    def proof(self, slot_index: int, challenge: bytes, slot_id: bytes, samples: int = 5) -> StorageProof:
        return prove_slot_data(
            self.slots[slot_index], self.tree, slot_index, challenge, slot_id, samples, slot_tree=self.trees[slot_index]
        )


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def with_item(items: tuple[T, ...], index: int, value: T) -> tuple[T, ...]:
    changed = list(items)
    changed[index] = value
    return tuple(changed)


def rotate(items: tuple[T, ...]) -> tuple[T, ...]:
    return items[1:] + items[:1]


Mutation = Callable[[StorageProof], StorageProof]


def _sibling_flipped(p: StorageProof, sample: int) -> StorageProof:
    path = p.cell_paths[sample]
    return replace(p, cell_paths=with_item(p.cell_paths, sample, with_item(path, 0, flip(path[0]))))


# The contract tests' forgeries (tests/contracts/test_storage_proofs.py) with the revert each must cause; they
# assume 5 samples, a slot tree of depth >= 1 and a dataset tree of depth >= 1.
MUTATIONS: list[tuple[str, Mutation, str]] = [
    ("one fewer cell", lambda p: replace(p, cells=p.cells[:-1]), "InvalidProofShape"),
    ("one fewer cell path", lambda p: replace(p, cell_paths=p.cell_paths[:-1]), "InvalidProofShape"),
    (
        "one sample too many",
        lambda p: replace(p, cells=(*p.cells, p.cells[0]), cell_paths=(*p.cell_paths, p.cell_paths[0])),
        "InvalidProofShape",
    ),
    ("short cell", lambda p: replace(p, cells=with_item(p.cells, 0, p.cells[0][:-1])), "InvalidProofShape"),
    ("long cell", lambda p: replace(p, cells=with_item(p.cells, -1, p.cells[-1] + b"\0")), "InvalidProofShape"),
    (
        "wrong cell content",
        lambda p: replace(p, cells=with_item(p.cells, 2, flip(p.cells[2], 100))),
        "InvalidCellProof",
    ),
    (
        "cells out of order",
        lambda p: replace(p, cells=rotate(p.cells), cell_paths=rotate(p.cell_paths)),
        "InvalidCellProof",
    ),
    ("wrong cell path sibling", lambda p: _sibling_flipped(p, 3), "InvalidCellProof"),
    (
        "cell path too short",
        lambda p: replace(p, cell_paths=with_item(p.cell_paths, 0, p.cell_paths[0][:-1])),
        "InvalidCellProof",
    ),
    (
        "cell path too long",
        lambda p: replace(p, cell_paths=with_item(p.cell_paths, 4, (*p.cell_paths[4], bytes(32)))),
        "InvalidCellProof",
    ),
    ("wrong slot root", lambda p: replace(p, slot_root=flip(p.slot_root)), "InvalidCellProof"),
    (
        "wrong slot path sibling",
        lambda p: replace(p, slot_path=with_item(p.slot_path, 0, flip(p.slot_path[0]))),
        "InvalidSlotProof",
    ),
    ("slot path too short", lambda p: replace(p, slot_path=p.slot_path[:-1]), "InvalidSlotProof"),
    ("slot path too long", lambda p: replace(p, slot_path=(*p.slot_path, bytes(32))), "InvalidSlotProof"),
]
