"""Keccak positional Merkle trees (data/merkle.py) against a naive reading of docs/storage-proofs.md."""

from __future__ import annotations

import os

import pytest
from eth_hash.auto import keccak as reference_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.data.merkle import (
    ZERO_HASH,
    ZERO_SUBTREES,
    Frontier,
    MerkleTree,
    hash_chunks,
    keccak256,
    root_from_path,
    tree_depth,
    verify,
)


def naive_levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The padded tree exactly as the format document words it: pad the leaves with zeros, hash pairs up."""
    size = 1
    while size < len(leaves):
        size *= 2
    level = leaves + [ZERO_HASH] * (size - len(leaves))
    levels = [level]
    while len(level) > 1:
        level = [reference_keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
        levels.append(level)
    return levels


def naive_path(leaves: list[bytes], index: int) -> list[bytes]:
    return [level[(index >> k) ^ 1] for k, level in enumerate(naive_levels(leaves)[:-1])]


def random_leaves(n: int) -> list[bytes]:
    return [os.urandom(32) for _ in range(n)]


def flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1 :]


def test_keccak256_is_ethereum_keccak_not_sha3() -> None:
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    data = os.urandom(5000)
    assert keccak256(data) == keccak256(bytearray(data)) == keccak256(memoryview(data)) == reference_keccak(data)


def test_hash_chunks_hashes_each_chunk_in_order() -> None:
    data = os.urandom(4 * 2048)
    assert hash_chunks(data, 2048) == b"".join(reference_keccak(data[i : i + 2048]) for i in range(0, len(data), 2048))


def test_hash_chunks_refuses_a_partial_chunk() -> None:
    with pytest.raises(ValueError, match="whole number"):
        hash_chunks(bytes(2049), 2048)


@pytest.mark.parametrize(("leaves", "depth"), [(0, 0), (1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (1024, 10), (1025, 11)])
def test_tree_depth_is_ceil_log2(leaves: int, depth: int) -> None:
    assert tree_depth(leaves) == depth


def test_zero_subtrees_are_roots_of_all_zero_trees() -> None:
    for k in range(6):
        assert ZERO_SUBTREES[k] == naive_levels([ZERO_HASH] * 2**k)[-1][0]


def test_one_leaf_is_its_own_root_with_an_empty_path() -> None:
    leaf = os.urandom(32)
    tree = MerkleTree(leaf)
    assert (tree.root, tree.depth, tree.path(0)) == (leaf, 0, ())


def test_three_leaves_pad_with_a_zero_leaf() -> None:
    a, b, c = random_leaves(3)
    tree = MerkleTree.from_leaves([a, b, c])
    assert tree.root == keccak256(keccak256(a + b) + keccak256(c + ZERO_HASH))
    assert tree.path(2) == (ZERO_HASH, keccak256(a + b))


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_root_and_paths_match_the_padded_tree(n: int, data: st.DataObject) -> None:
    leaves = random_leaves(n)
    tree = MerkleTree.from_leaves(leaves)
    assert tree.root == naive_levels(leaves)[-1][0]
    assert tree.depth == tree_depth(n)
    assert tree.leaves() == b"".join(leaves)
    index = data.draw(st.integers(0, n - 1))
    path = tree.path(index)
    assert list(path) == naive_path(leaves, index)
    assert verify(leaves[index], index, path, tree.root)
    assert tree.leaf(index) == leaves[index]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 100), data=st.data())
def test_a_changed_leaf_index_or_sibling_does_not_verify(n: int, data: st.DataObject) -> None:
    leaves = random_leaves(n)
    tree = MerkleTree.from_leaves(leaves)
    index = data.draw(st.integers(0, n - 1))
    path = list(tree.path(index))
    assert not verify(flip(leaves[index]), index, path, tree.root)
    other = data.draw(st.integers(0, n - 1).filter(lambda i: i != index))
    assert not verify(leaves[index], other, path, tree.root)
    level = data.draw(st.integers(0, len(path) - 1))
    assert not verify(leaves[index], index, [*path[:level], flip(path[level]), *path[level + 1 :]], tree.root)
    assert not verify(leaves[index], index, path, flip(tree.root))


def test_root_from_path_reads_only_as_many_index_bits_as_the_path_has() -> None:
    # The contract's rootFromPath ignores higher bits of the index; so does ours (the verifier checks lengths).
    leaves = random_leaves(4)
    tree = MerkleTree.from_leaves(leaves)
    assert root_from_path(leaves[1], 1 + 4 * 7, tree.path(1)) == tree.root


def test_nbytes_counts_only_nodes_over_real_leaves() -> None:
    # 5 leaves: levels of 5, 3, 2, 1 nodes (the padding subtrees are not stored).
    assert MerkleTree.from_leaves(random_leaves(5)).nbytes == (5 + 3 + 2 + 1) * 32


@pytest.mark.parametrize("raw", [b"", bytes(31), bytes(33)])
def test_leaves_must_be_a_nonempty_run_of_hashes(raw: bytes) -> None:
    with pytest.raises(ValueError, match="32-byte"):
        MerkleTree(raw)


def test_from_leaves_refuses_a_short_leaf() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        MerkleTree.from_leaves([bytes(32), bytes(31), bytes(33)])


@pytest.mark.parametrize("index", [-1, 3])
def test_path_of_a_leaf_out_of_range_raises(index: int) -> None:
    with pytest.raises(IndexError):
        MerkleTree.from_leaves(random_leaves(3)).path(index)


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 300))
def test_frontier_root_equals_the_tree_root(n: int) -> None:
    leaves = random_leaves(n)
    frontier = Frontier()
    for leaf in leaves:
        frontier.push(leaf)
    assert frontier.count == n
    assert frontier.root() == MerkleTree.from_leaves(leaves).root


@settings(max_examples=40, deadline=None)
@given(groups=st.integers(1, 40), base=st.integers(0, 3))
def test_frontier_over_aligned_subtree_roots_equals_the_tree_over_their_leaves(groups: int, base: int) -> None:
    leaves = random_leaves(groups << base)
    frontier = Frontier(base)
    for g in range(groups):
        frontier.push(MerkleTree.from_leaves(leaves[g << base : (g + 1) << base]).root)
    assert frontier.root() == MerkleTree.from_leaves(leaves).root


def test_frontier_root_can_be_read_midway_and_pushing_goes_on() -> None:
    leaves = random_leaves(7)
    frontier = Frontier()
    for i, leaf in enumerate(leaves, 1):
        frontier.push(leaf)
        assert frontier.root() == MerkleTree.from_leaves(leaves[:i]).root


def test_frontier_refuses_an_empty_tree_and_a_short_node() -> None:
    frontier = Frontier()
    with pytest.raises(ValueError, match="at least one"):
        frontier.root()
    with pytest.raises(ValueError, match="32 bytes"):
        frontier.push(bytes(31))
