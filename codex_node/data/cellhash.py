"""The slot-tree hashes of many 64 KiB blocks at once, spread over a few threads (pure: no I/O).

A slot tree's leaves are ``keccak256`` of every 2 KiB cell (``data/merkle.py``, docs/storage-proofs.md), and
hashing them is what checking a rebuilt or downloaded slot against its slot root costs. The batch keccak
(``data/_keccak.c``, several cells side by side) releases the GIL while it hashes a block's cells, and so does
its fallback (safe-pysha3, for any input of 2048 bytes or more, which a cell is), so blocks hashed on two threads
are hashed on two cores. :func:`hash_blocks` cuts a batch of blocks into ``threads`` runs, hashes all but the last
on a small pool of helper threads and the last on the calling thread, and gives back, in block order, every
cell leaf and each block's subtree root (the node the slot root is built from, :data:`~codex_node.data.erasure.
BLOCK_LEVEL`). The result is exactly what hashing the blocks one by one on one thread gives: only the work is
shared.

The pool's threads are started on first use and live as long as the process (they hold nothing between calls).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from codex_node.data.merkle import Buffer, MerkleTree, hash_chunks
from codex_node.data.proof import CELL_SIZE
from codex_node.data.slots import BLOCK_SIZE

HASH_THREADS = 2
"""Threads a batch is hashed on (the calling one included): the reference machine has 2 cores."""
MIN_BLOCKS_PER_THREAD = 4
"""Fewer blocks than this per thread are hashed on the calling thread alone (a hand-off costs more)."""

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _helpers() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, HASH_THREADS - 1), thread_name_prefix="cellhash")
        return _pool


def block_hashes(blocks: Sequence[Buffer], roots: bool = True) -> tuple[bytes, list[bytes]]:
    """The cell leaves of ``blocks`` (concatenated, 32 per block) and, with ``roots``, each block's subtree root
    (else an empty list), on this thread. Every block must be exactly 64 KiB (``ValueError`` otherwise)."""
    leaves: list[bytes] = []
    subtree_roots: list[bytes] = []
    for block in blocks:
        size = memoryview(block).nbytes
        if size != BLOCK_SIZE:
            raise ValueError(f"a slot block is {BLOCK_SIZE} bytes, got {size}")
        cells = hash_chunks(block, CELL_SIZE)
        leaves.append(cells)
        if roots:
            subtree_roots.append(MerkleTree(cells).root)
    return b"".join(leaves), subtree_roots


def hash_blocks(
    blocks: Sequence[Buffer], *, threads: int = HASH_THREADS, roots: bool = True
) -> tuple[bytes, list[bytes]]:
    """:func:`block_hashes` of ``blocks``, the work shared by up to ``threads`` threads (the module docstring)."""
    parts = max(1, min(threads, len(blocks) // MIN_BLOCKS_PER_THREAD))
    if parts == 1:
        return block_hashes(blocks, roots)
    step = -(-len(blocks) // parts)
    runs = [blocks[i : i + step] for i in range(0, len(blocks), step)]
    pool = _helpers()
    helpers: list[Future[tuple[bytes, list[bytes]]]] = [pool.submit(block_hashes, run, roots) for run in runs[:-1]]
    try:
        last = block_hashes(runs[-1], roots)
    finally:
        wait(helpers)  # the helpers read the caller's buffers: never return (or raise) while one still runs
    leaves = bytearray()
    subtree_roots: list[bytes] = []
    for part_leaves, part_roots in [*(f.result() for f in helpers), last]:
        leaves += part_leaves
        subtree_roots.extend(part_roots)
    return bytes(leaves), subtree_roots
