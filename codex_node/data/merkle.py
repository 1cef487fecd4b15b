"""Keccak-256 positional Merkle trees, as the storage proofs use them (pure: no I/O).

The format is docs/storage-proofs.md: ``H = keccak256``; the leaf count is padded up to a power of two with the
zero leaf ``bytes32(0)``; an inner node is ``H(left ‖ right)`` (positional, not sorted); one leaf is its own root;
a path lists the siblings from the leaf level up to, not including, the root, and at level ``k`` bit ``k`` of the
leaf index says whether the running node is the right child. ``contracts/contracts/StorageProofs.sol`` computes
the same function.

Invariants and representation:

- Hashes are ``bytes`` of exactly 32 bytes. A tree keeps each level as one ``bytes`` object of concatenated
  hashes (32 bytes per node, no per-node Python objects), built once at construction.
- Padding is not stored: level ``k`` keeps only the nodes that cover at least one real leaf; any node to their
  right is the root of an all-zero subtree, ``ZERO_SUBTREES[k]``. This gives exactly the padded tree's nodes at
  about half the memory and time for leaf counts just above a power of two.

Many equal-sized inputs at once (a block's cells, a level's node pairs) are hashed by the compiled
``codex_node.data._keccak`` (``_keccak.c``): 8 hashes side by side with AVX-512, 4 with AVX2, else one at a time;
on the reference machine 1.1 µs per 2 KiB cell and 0.09 µs per 64-byte node, against 7.4 and 1.1 µs one by one
through ``safe-pysha3``. Single hashes, and everything where the extension could not be compiled at install, use
``safe-pysha3`` (C, about 10× faster per node than pycryptodome through ``eth_hash``; pycryptodome is the last
fallback). Both give the same bytes: only the speed differs (:func:`batch_implementation` tells which runs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

Buffer = bytes | bytearray | memoryview


class _Hash(Protocol):
    def digest(self) -> bytes: ...


def _hash_constructor() -> Callable[[Buffer], _Hash]:
    try:
        import sha3  # type: ignore[import-untyped]  # safe-pysha3 ships no type information
    except ImportError:  # pragma: no cover - no safe-pysha3 wheel for this interpreter
        from Crypto.Hash import keccak

        return lambda data: keccak.new(data=data, digest_bits=256)
    constructor: Callable[[Buffer], _Hash] = sha3.keccak_256
    return constructor


_new = _hash_constructor()

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)


def keccak256(data: Buffer) -> bytes:
    """keccak256 of any bytes-like object."""
    return _new(data).digest()


def _zero_subtrees(levels: int) -> tuple[bytes, ...]:
    out = [ZERO_HASH]
    for _ in range(levels):
        out.append(keccak256(out[-1] + out[-1]))
    return tuple(out)


ZERO_SUBTREES = _zero_subtrees(64)
"""``ZERO_SUBTREES[k]``: the root of a subtree of ``2**k`` zero leaves."""


def tree_depth(leaf_count: int) -> int:
    """``ceil(log2(leaf_count))``, 0 for 0 or 1 leaves (OpenZeppelin's ``Math.log2(x, Ceil)``)."""
    return max(leaf_count - 1, 0).bit_length()


def hash_chunks_one_by_one(data: Buffer, size: int) -> bytes:
    """:func:`hash_chunks` through ``safe-pysha3``, one chunk after the other (where ``_keccak`` is missing)."""
    view = memoryview(data).cast("B")
    if size <= 0:
        raise ValueError(f"chunk size must be positive, got {size}")
    if len(view) % size:
        raise ValueError(f"{len(view)} bytes are not a whole number of {size}-byte chunks")
    new = _new
    return b"".join([new(view[i : i + size]).digest() for i in range(0, len(view), size)])


def _batch_hasher() -> tuple[Callable[[Buffer, int], bytes], str]:
    try:
        from codex_node.data import _keccak
    except ImportError:  # pragma: no cover - the extension was not compiled at install (no C compiler)
        return hash_chunks_one_by_one, "safe-pysha3, one by one (the compiled _keccak is missing)"
    return _keccak.hash_chunks, f"_keccak {_keccak.implementations()[0]}"


hash_chunks, _batch_name = _batch_hasher()
"""``hash_chunks(data, size)``: keccak256 of each consecutive ``size``-byte chunk of ``data``, concatenated
(``ValueError`` unless ``len(data)`` is a whole number of chunks). Releases the GIL on large inputs."""


def batch_implementation() -> str:
    """Which implementation :func:`hash_chunks` runs on this machine (for the node's start line)."""
    return _batch_name


def _next_level(level: bytes, k: int) -> bytes:
    """The parents of ``level`` (level ``k``, unpadded); an odd last node pairs with ``ZERO_SUBTREES[k]``."""
    if len(level) % (2 * HASH_SIZE):
        level = level + ZERO_SUBTREES[k]
    return hash_chunks(level, 2 * HASH_SIZE)


class MerkleTree:
    """A tree over ``leaf_count`` 32-byte leaves; every level computed once at construction."""

    __slots__ = ("_levels", "leaf_count")

    def __init__(self, leaves: Buffer) -> None:
        """``leaves``: the leaf hashes concatenated (32 bytes each, at least one)."""
        level = bytes(leaves)
        if not level or len(level) % HASH_SIZE:
            raise ValueError(f"leaves must be a non-empty run of 32-byte hashes, got {len(level)} bytes")
        self.leaf_count = len(level) // HASH_SIZE
        levels = [level]
        for k in range(tree_depth(self.leaf_count)):
            level = _next_level(level, k)
            levels.append(level)
        self._levels: tuple[bytes, ...] = tuple(levels)

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise ValueError(f"a leaf must be {HASH_SIZE} bytes, got {len(leaf)}")
        return cls(b"".join(leaves))

    @property
    def depth(self) -> int:
        return len(self._levels) - 1

    @property
    def root(self) -> bytes:
        return self._levels[-1][:HASH_SIZE]

    @property
    def nbytes(self) -> int:
        """Bytes held by the levels (what a cache of trees should count)."""
        return sum(len(level) for level in self._levels)

    def leaf(self, index: int) -> bytes:
        self._check(index)
        return self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def leaves(self) -> bytes:
        """All leaves, concatenated."""
        return self._levels[0]

    def path(self, index: int) -> tuple[bytes, ...]:
        """The siblings of leaf ``index`` from the leaf level up (``depth`` of them)."""
        self._check(index)
        out = []
        for k, level in enumerate(self._levels[:-1]):
            at = ((index >> k) ^ 1) * HASH_SIZE
            out.append(level[at : at + HASH_SIZE] if at < len(level) else ZERO_SUBTREES[k])
        return tuple(out)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.leaf_count:
            raise IndexError(f"leaf {index} out of range 0..{self.leaf_count - 1}")


def root_from_path(leaf: bytes, index: int, path: Sequence[bytes]) -> bytes:
    """The root that ``leaf`` at ``index`` and its ``path`` lead to (the contract's ``rootFromPath``).

    Only the low ``len(path)`` bits of ``index`` are read, as on chain.
    """
    node = leaf
    for level, sibling in enumerate(path):
        node = keccak256(sibling + node) if (index >> level) & 1 else keccak256(node + sibling)
    return node


def verify(leaf: bytes, index: int, path: Sequence[bytes], root: bytes) -> bool:
    """Whether ``leaf`` at ``index`` with ``path`` leads to ``root``. The caller checks ``len(path)`` against the
    tree depth it expects (the contract does, before hashing)."""
    return root_from_path(leaf, index, path) == root


class Frontier:
    """The root of a tree whose nodes at level ``base`` arrive one by one, holding only ``O(log n)`` hashes.

    Pushing the roots of consecutive aligned ``2**base``-leaf subtrees (e.g. one 64 KiB block's 32 cell leaves,
    ``base = 5``) gives at the end exactly the root :class:`MerkleTree` computes over all their leaves, padding
    included: a missing right subtree at level ``k`` is ``ZERO_SUBTREES[k]``. This is how a slot root is computed
    while the slot's blocks stream past, without keeping the slot's leaves.
    """

    __slots__ = ("_base", "_pending", "count")

    def __init__(self, base: int = 0) -> None:
        if not 0 <= base < len(ZERO_SUBTREES):
            raise ValueError(f"base level must be in 0..{len(ZERO_SUBTREES) - 1}, got {base}")
        self._base = base
        # _pending[j]: a complete left node at level base + j still waiting for its right sibling.
        self._pending: list[bytes | None] = []
        self.count = 0

    def push(self, node: bytes) -> None:
        """Add the next node at the base level (32 bytes)."""
        if len(node) != HASH_SIZE:
            raise ValueError(f"a node must be {HASH_SIZE} bytes, got {len(node)}")
        pending = self._pending
        j = 0
        while j < len(pending):
            left = pending[j]
            if left is None:
                break
            node = _new(left + node).digest()
            pending[j] = None
            j += 1
        if j == len(pending):
            pending.append(node)
        else:
            pending[j] = node
        self.count += 1

    def root(self) -> bytes:
        """The root over every node pushed so far (at least one), padded to a power of two with zero subtrees."""
        if not self.count:
            raise ValueError("a tree needs at least one node")
        depth = tree_depth(self.count)
        pending = self._pending
        node: bytes | None = None  # the rightmost, incomplete node of the current level, if any
        for j in range(depth):
            left = pending[j] if j < len(pending) else None
            zero = ZERO_SUBTREES[self._base + j]
            if node is None:
                if left is not None:
                    node = _new(left + zero).digest()
            elif left is not None:
                node = _new(left + node).digest()
            else:
                node = _new(node + zero).digest()
        if node is not None:
            return node
        # count is exactly 2**depth: every node has been paired, and the root waits at the top.
        top = pending[depth]
        if top is None:  # pragma: no cover - the pairing above makes this impossible
            raise RuntimeError(f"frontier of {self.count} nodes has no root")
        return top
