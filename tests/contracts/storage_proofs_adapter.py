"""Datasets and storage proofs for the contract tests (format: docs/storage-proofs.md).

TEMPORARY: a direct reading of the format document, used until ``codex_node.proofs`` lands; then this module
only adapts that module's API to the ABI tuples the tests send.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

from eth_utils import keccak

BLOCK_SIZE = 65536
CELL_SIZE = 2048
ZERO = bytes(32)


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    size = 1
    while size < len(leaves):
        size *= 2
    level = leaves + [ZERO] * (size - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def merkle_root(leaves: list[bytes]) -> bytes:
    return _levels(leaves)[-1][0]


def merkle_path(leaves: list[bytes], index: int) -> list[bytes]:
    return [level[(index >> k) ^ 1] for k, level in enumerate(_levels(leaves)[:-1])]


@dataclass(frozen=True)
class Dataset:
    slots: tuple[bytes, ...]

    @staticmethod
    def random(slots: int, blocks_per_slot: int, seed: int) -> Dataset:
        rng = random.Random(seed)
        return Dataset(tuple(rng.randbytes(blocks_per_slot * BLOCK_SIZE) for _ in range(slots)))

    def cells(self, index: int) -> list[bytes]:
        data = self.slots[index]
        return [data[i : i + CELL_SIZE] for i in range(0, len(data), CELL_SIZE)]

    def slot_root(self, index: int) -> bytes:
        return merkle_root([keccak(cell) for cell in self.cells(index)])

    @cached_property
    def slot_roots(self) -> list[bytes]:
        return [self.slot_root(i) for i in range(len(self.slots))]

    @cached_property
    def root(self) -> bytes:
        return merkle_root(self.slot_roots)


def sample_index(challenge: bytes, slot_id: bytes, sample: int, cells_in_slot: int) -> int:
    return int.from_bytes(keccak(challenge + slot_id + sample.to_bytes(32, "big")), "big") % cells_in_slot


def build_proof(
    dataset: Dataset, index: int, challenge: bytes, slot_id: bytes, samples: int
) -> tuple[bytes, list[bytes], list[bytes], list[list[bytes]]]:
    """The ABI tuple ``(slotRoot, slotPath, cells, cellPaths)`` proving slot ``index`` for ``challenge``."""
    cells = dataset.cells(index)
    leaves = [keccak(cell) for cell in cells]
    picked = [sample_index(challenge, slot_id, i, len(cells)) for i in range(samples)]
    return (
        merkle_root(leaves),
        merkle_path(dataset.slot_roots, index),
        [cells[i] for i in picked],
        [merkle_path(leaves, i) for i in picked],
    )
