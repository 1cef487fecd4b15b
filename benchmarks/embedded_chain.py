"""Start-up time, block rate and disk use of the embedded chain.

    .venv/bin/python benchmarks/embedded_chain.py [BLOCKS]

Creates a chain in a temporary directory (first start: genesis, 256 blocks, deployment, funding), restarts it,
mines BLOCKS (default 5000) empty blocks through the same path as the mining task (one worker-thread job per
block, fsync per block as in production), restarts it again, and prints the timings and the database size
per block. The clock is the wall clock (as in a node).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from codex_node.market.embedded import EmbeddedChain


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def start_stop(path: Path) -> float:
    chain = EmbeddedChain(path, block_time=0, registry=None)
    began = time.perf_counter()
    await chain.start()
    elapsed = time.perf_counter() - began
    await chain.stop()
    return elapsed


async def main(blocks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain"
        print(f"first start: {await start_stop(path):.2f} s")
        print(f"restart: {await start_stop(path):.3f} s")
        before = size(path / "db")
        chain = EmbeddedChain(path, block_time=0, registry=None)
        await chain.start()
        began = time.perf_counter()
        for _ in range(blocks):
            await chain.mine()
        elapsed = time.perf_counter() - began
        head = chain.head
        await chain.stop()
        grown = size(path / "db") - before
        print(f"{blocks} empty blocks: {elapsed:.2f} s ({1000 * elapsed / blocks:.2f} ms/block)")
        print(f"database: {grown / blocks:.0f} bytes/block ({grown / blocks * 86400 / 2**20:.0f} MiB/day at 1 s)")
        print(f"restart at block {head}: {await start_stop(path):.3f} s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
