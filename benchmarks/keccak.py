"""The slot trees' keccak256: the compiled batch extension (data/_keccak.c) against safe-pysha3 one call per chunk.

    .venv/bin/python benchmarks/keccak.py [--mib 32] [--tries 5]

For 2 KiB cells (a slot tree's leaves) and 64-byte node pairs (its inner nodes), the same random bytes hashed by
each implementation this machine runs (``_keccak.implementations()``) and, as the raw baseline of the same run, by
safe-pysha3 one chunk at a time as data/merkle.py did before the extension. Prints MiB/s (best of ``--tries``),
microseconds per chunk and the ratio to the baseline. Then a whole 64 KiB block's subtree root (32 cells and the 31
nodes above them, what a repair or a first proof pays per block) both ways, and on two threads at once (the GIL is
released while a block is hashed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import sha3  # type: ignore[import-untyped]

from codex_node.data import _keccak
from codex_node.data.cellhash import hash_blocks
from codex_node.data.merkle import MerkleTree, hash_chunks_one_by_one

MiB = 1 << 20


def best(tries: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(tries):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def one_by_one(data: bytes, size: int) -> bytes:
    view = memoryview(data)
    new = sha3.keccak_256
    return b"".join([new(view[i : i + size]).digest() for i in range(0, len(view), size)])


def block_root_one_by_one(block: bytes) -> bytes:
    level = one_by_one(block, 2048)
    while len(level) > 32:
        level = one_by_one(level, 64)
    return level


def main(mib: int, tries: int) -> None:
    data = os.urandom(mib * MiB)
    print(f"keccak256 over {mib} MiB, implementations here: {', '.join(_keccak.implementations())}")
    for size, what in ((2048, "2 KiB cells"), (64, "64-byte nodes")):
        count = len(data) // size
        base = best(tries, partial(one_by_one, data, size))
        assert hash_chunks_one_by_one(data[: 64 * size], size) == one_by_one(data[: 64 * size], size)
        print(
            f"  {what}: safe-pysha3 one by one {len(data) / base / MiB:7.0f} MiB/s ({base / count * 1e6:.2f} µs each)"
        )
        for impl in _keccak.implementations():
            t = best(tries, partial(_keccak.hash_chunks_with, impl, data, size))
            print(
                f"  {what}: _keccak {impl:9s} {len(data) / t / MiB:7.0f} MiB/s ({t / count * 1e6:.2f} µs each), "
                f"ratio {base / t:.1f}"
            )
    blocks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    base = best(tries, lambda: [block_root_one_by_one(b) for b in blocks])
    batch = best(tries, lambda: [MerkleTree(_keccak.hash_chunks(b, 2048)).root for b in blocks])
    assert [block_root_one_by_one(b) for b in blocks[:4]] == [
        MerkleTree(_keccak.hash_chunks(b, 2048)).root for b in blocks[:4]
    ]
    two = best(tries, lambda: hash_blocks(blocks, threads=2))
    with ThreadPoolExecutor(2) as pool:
        half = len(blocks) // 2
        base_two = best(
            tries,
            lambda: list(
                pool.map(lambda part: [block_root_one_by_one(b) for b in part], (blocks[:half], blocks[half:]))
            ),
        )
    print(
        f"  64 KiB block subtree roots: one by one {len(data) / base / MiB:.0f} MiB/s, "
        f"batch {len(data) / batch / MiB:.0f} MiB/s (ratio {base / batch:.1f}); "
        f"on two threads: one by one {len(data) / base_two / MiB:.0f}, batch "
        f"(cellhash.hash_blocks) {len(data) / two / MiB:.0f} MiB/s (ratio {base_two / two:.1f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=32, help="MiB of random data hashed (default 32)")
    parser.add_argument("--tries", type=int, default=5, help="timed tries of each, the best kept (default 5)")
    args = parser.parse_args()
    if args.mib < 1 or args.tries < 1:
        sys.exit("--mib and --tries must be at least 1")
    main(args.mib, args.tries)
