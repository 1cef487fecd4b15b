"""Storage proof timings: building a proof through the Prover over a real RepoStore, and verifying it.

    .venv/bin/python benchmarks/proofs.py [--sizes-mib 1 64] [--slots 1] [--samples 5] [--repeat 50] [--dir DIR]

For each slot size it stores a dataset of ``slots`` slots of that size (pseudo-random bytes, through
``store_dataset``) and measures:

* ``commit``: ``dataset_commitment`` (what a client computes before posting a request: the whole dataset hashed);
* ``first proof``: the Prover's first ``prove`` of slot 0 (reads and hashes every slot into the trees);
* ``cached proof``: later ``prove`` calls (reads only the sampled blocks), median of ``repeat``;
* ``verify``: ``verify_proof`` of one proof, median of ``repeat``;
* ``raw keccak``: hashing the slot's bytes in memory into cell leaves and the tree (no I/O), for scale.

Gas is measured by ``benchmarks/gas.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

from codex_node.data.slots import BLOCK_SIZE
from codex_node.market.types import Ask, Request, Slot
from codex_node.proofs import Prover, SlotTree, dataset_commitment, verify_proof
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockledger import ProofTarget

MIB = 1 << 20


async def _stream(size: int, seed: int) -> AsyncIterator[bytes]:
    rng = random.Random(seed)
    left = size
    while left:
        n = min(left, 4 * MIB)
        yield rng.randbytes(n)
        left -= n


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:9.2f} ms"


async def bench(root: Path, slot_mib: int, slots: int, samples: int, repeat: int) -> None:
    repo = RepoStore(
        MemoryKV(),
        BlockFiles(root / f"repo-{slot_mib}", sync="none"),
        clock=FakeClock(),
        quota_max=1 << 40,
        block_ttl=3600,
        registry=None,
    )
    try:
        size = slot_mib * MIB * slots
        cid = await store_dataset(repo, _stream(size, slot_mib))
        t = time.perf_counter()
        commitment = await dataset_commitment(repo, cid, slots)
        commit = time.perf_counter() - t
        ask = Ask(1, 1, 1, slots, commitment.slot_size, 3600, 0)
        request = Request("0x" + "00" * 19 + "01", ask, commitment.content, 600, os.urandom(32))  # type: ignore[arg-type]
        slot = Slot(request, 0)
        prover = Prover(repo, samples=samples)

        t = time.perf_counter()
        proof = await prover.prove(slot, os.urandom(32))
        first = time.perf_counter() - t

        cached = []
        verify = []
        for _ in range(repeat):
            challenge = os.urandom(32)
            t = time.perf_counter()
            proof = await prover.prove(slot, challenge)
            cached.append(time.perf_counter() - t)
            target = ProofTarget(challenge, slot.id, 0, slots, ask.slot_size, commitment.merkle_root, samples)
            t = time.perf_counter()
            ok = verify_proof(proof, target)
            verify.append(time.perf_counter() - t)
            assert ok

        data = random.Random(0).randbytes(slot_mib * MIB)
        t = time.perf_counter()
        tree = SlotTree.from_bytes(data)
        raw = time.perf_counter() - t
    finally:
        repo.close()

    print(
        f"slot {slot_mib:4d} MiB x {slots} slot(s) ({ask.slot_size // BLOCK_SIZE} blocks, tree depth {tree.depth}, "
        f"tree {tree.nbytes / MIB:.2f} MiB)\n"
        f"  commit        {_ms(commit)}   ({size / MIB / commit:6.1f} MiB/s)\n"
        f"  first proof   {_ms(first)}   ({size / MIB / first:6.1f} MiB/s)\n"
        f"  cached proof  {_ms(statistics.median(cached))}   (median of {repeat})\n"
        f"  verify        {_ms(statistics.median(verify))}   (median of {repeat}, {samples} samples)\n"
        f"  raw keccak    {_ms(raw)}   ({slot_mib / raw:6.1f} MiB/s, in memory, one slot)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--slots", type=int, default=1)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the repos (default: a temp dir)")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for slot_mib in args.sizes_mib:
            asyncio.run(bench(Path(tmp), slot_mib, args.slots, args.samples, args.repeat))


if __name__ == "__main__":
    main()
