"""Slot and dataset trees: cells → leaves → slot root, slot roots → dataset root, with zero padding."""

from __future__ import annotations

import os

import pytest
from eth_hash.auto import keccak

from codex_node.data.merkle import MerkleTree
from codex_node.data.slots import BLOCK_SIZE
from codex_node.proofs import CELL_SIZE, DatasetTree, SlotTree, cell_leaves
from codex_node.proofs.trees import ZERO_BLOCK_LEAVES, block_leaves


def test_slot_leaves_are_the_keccak_of_each_cell() -> None:
    data = os.urandom(3 * CELL_SIZE)
    tree = SlotTree.from_bytes(data)
    assert tree.cells == 3
    assert [tree.leaf(i) for i in range(3)] == [keccak(data[i * CELL_SIZE : (i + 1) * CELL_SIZE]) for i in range(3)]
    assert tree.root == MerkleTree.from_leaves([tree.leaf(i) for i in range(3)]).root


def test_one_block_slot_has_32_cells_and_depth_5() -> None:
    tree = SlotTree.from_bytes(os.urandom(BLOCK_SIZE))
    assert (tree.cells, tree.depth, len(tree.path(31))) == (32, 5, 5)


def test_blocks_are_zero_padded_and_none_is_a_zero_block() -> None:
    short = os.urandom(1000)
    full = os.urandom(BLOCK_SIZE)
    by_blocks = SlotTree.from_blocks([full, short, None])
    whole = SlotTree.from_bytes(full + short + bytes(BLOCK_SIZE - len(short)) + bytes(BLOCK_SIZE))
    assert by_blocks.root == whole.root
    assert by_blocks.cells == 96
    assert block_leaves(None) == ZERO_BLOCK_LEAVES == cell_leaves(bytes(BLOCK_SIZE))


def test_a_zero_block_is_not_the_zero_leaf() -> None:
    # Padding *blocks* inside a slot hash their cells; only the power-of-two padding uses bytes32(0) leaves.
    assert SlotTree.from_blocks([None]).root != bytes(32)


@pytest.mark.parametrize("size", [0, CELL_SIZE - 1, CELL_SIZE + 1])
def test_slot_bytes_must_be_whole_cells(size: int) -> None:
    with pytest.raises(ValueError, match="cell"):
        SlotTree.from_bytes(bytes(size))


def test_dataset_leaves_are_the_slot_roots_themselves() -> None:
    roots = [os.urandom(32) for _ in range(5)]
    tree = DatasetTree(roots)
    assert tree.slots == 5
    assert tree.depth == 3
    assert [tree.slot_root(i) for i in range(5)] == roots
    assert tree.root == MerkleTree.from_leaves(roots).root


def test_single_slot_dataset_root_is_the_slot_root() -> None:
    root = os.urandom(32)
    tree = DatasetTree([root])
    assert (tree.root, tree.path(0)) == (root, ())
