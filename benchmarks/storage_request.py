"""Time from upload to ``requestStorage`` for a 256 MiB dataset, through the REST API of a real node.

One embedded-chain node (LevelDB, block files, HTTP on loopback) in this process: ``POST /data`` with 256 MiB of
random bytes, then ``POST /storage/request/{cid}`` with nodes=3, tolerance=1 (K=2: 384 MiB of slots, 128 MiB of
them parity), which erasure-codes the dataset, stores the three slots and posts the request. Printed: the upload's
seconds, the request's seconds (encoding + storing + posting), and the two together, with MiB/s of the dataset.

Run: ``python benchmarks/storage_request.py [MiB]`` (default 256).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import structlog

from codex_node.config import NodeConfig
from codex_node.node import Node

API = "/api/codex/v1"


async def main(mib: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    data = os.urandom(mib << 20)
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(NodeConfig(data_dir=Path(tmp) / "data", api_port=0, storage_quota=4 * (mib << 20) + (1 << 30)))
        await node.start()
        try:
            async with httpx.AsyncClient(base_url=f"{node.api_url}{API}", timeout=3600) as api:
                began = time.perf_counter()
                cid = (await api.post("/data", content=data)).text
                uploaded = time.perf_counter()
                body = {
                    "duration": 3600,
                    "pricePerBytePerSecond": "1",
                    "proofProbability": "1",
                    "collateralPerByte": "1",
                    "expiry": 600,
                    "nodes": 3,
                    "tolerance": 1,
                }
                r = await api.post(f"/storage/request/{cid}", json=body)
                requested = time.perf_counter()
                assert r.status_code == 200, r.text
        finally:
            await node.stop()
    up, req = uploaded - began, requested - uploaded
    print(
        f"{mib} MiB: upload {up:.1f} s ({mib / up:.0f} MiB/s), request (encode + store + post) {req:.1f} s "
        f"({mib / req:.0f} MiB/s), upload to requestStorage {up + req:.1f} s"
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 256))
