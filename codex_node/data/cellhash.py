"""The slot-tree hashes of many 64 KiB blocks at once, spread over a few threads (pure: no I/O).

A slot tree's leaves are ``keccak256`` of every 2 KiB cell (``data/merkle.py``, docs/storage-proofs.md), and
hashing them is what checking a rebuilt or downloaded slot against its slot root costs. The batch keccak
(``data/_keccak.c``, several cells side by side) releases the GIL while it hashes a block's cells, and so does
its fallback (safe-pysha3, for any input of 2048 bytes or more, which a cell is), so blocks hashed on two threads
are hashed on two cores (one thread per core is used, :data:`HASH_THREADS`). :func:`hash_blocks` cuts a batch of
blocks into ``threads`` runs, hashes all but the last on a small pool of helper threads and the last on the calling
thread, and gives back, in block order, every cell leaf and each block's subtree root (the node the slot root is
built from, :data:`~codex_node.data.erasure.BLOCK_LEVEL`). The result is exactly what hashing the blocks one by
one on one thread gives: only the work is shared. :func:`map_runs` is that sharing for any such work: the slot
repair decodes and hashes a batch's rows with it (``data/repair.py``).

The pool's threads are started on first use and live as long as the process (they hold nothing between calls).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from codex_node.data.merkle import Buffer, MerkleTree, hash_chunks
from codex_node.data.proof import CELL_SIZE
from codex_node.data.slots import BLOCK_SIZE

_T = TypeVar("_T")
_R = TypeVar("_R")

MAX_HASH_THREADS = 8
"""The most threads a batch is cut for, however many cores there are (each run holds its blocks' leaves)."""


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or ``taskset`` limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


HASH_THREADS = max(1, min(_cores(), MAX_HASH_THREADS))
"""Threads a batch is hashed on (the calling one included): one per core, at most :data:`MAX_HASH_THREADS` (the
reference machine has 2). Read when a batch is cut, so a test may set it."""
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
    blocks: Sequence[Buffer], *, threads: int | None = None, roots: bool = True
) -> tuple[bytes, list[bytes]]:
    """:func:`block_hashes` of ``blocks``, the work shared by up to ``threads`` threads (default
    :data:`HASH_THREADS`; the module docstring)."""
    leaves = bytearray()
    subtree_roots: list[bytes] = []
    for part_leaves, part_roots in map_runs(lambda run: block_hashes(run, roots), blocks, threads=threads):
        leaves += part_leaves
        subtree_roots.extend(part_roots)
    return bytes(leaves), subtree_roots


def map_runs(work: Callable[[Sequence[_T]], _R], items: Sequence[_T], *, threads: int | None = None) -> list[_R]:
    """``work`` of each of up to ``threads`` (default :data:`HASH_THREADS`) consecutive runs of ``items``, in
    order: all runs but the last on the helper threads, the last on the calling thread; runs of fewer than
    :data:`MIN_BLOCKS_PER_THREAD` items are not worth a hand-off (one run then). ``work`` must release the GIL for
    its heavy part (hashing, zfec) to use more than one core, and must not itself hand work to the helpers (they
    would wait for each other)."""
    parts = max(1, min(HASH_THREADS if threads is None else threads, len(items) // MIN_BLOCKS_PER_THREAD))
    if parts == 1:
        return [work(items)]
    step = -(-len(items) // parts)
    runs = [items[i : i + step] for i in range(0, len(items), step)]
    pool = _helpers()
    helpers: list[Future[_R]] = [pool.submit(work, run) for run in runs[:-1]]
    try:
        last = work(runs[-1])
    finally:
        wait(helpers)  # the helpers read the caller's buffers: never return (or raise) while one still runs
    return [*(f.result() for f in helpers), last]
