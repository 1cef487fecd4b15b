"""Slot download throughput from a peer node, as a ratio to a raw HTTP transfer of the same bytes in the same run.

    .venv/bin/python benchmarks/network_download.py [--size-mib 64] [--runs 3] [--codex-node PATH]

Starts ``codex-node run --no-marketplace`` in a subprocess on a fresh data dir (the serving peer) and uploads one
dataset of ``--size-mib`` distinct blocks. Then, in this process, ``--runs`` times:

* **raw**: ``GET /data/{cid}`` from the peer (its plain download: one HTTP stream, the bytes read and dropped);
* **slot**: the sale's path for a one-slot request over that dataset: :class:`NetworkSlotDataSource` on a fresh
  repo (LevelDB + pack files, as a node has) fetches the slot's blocks from the peer through the peer's block routes
  with :class:`BlockFetcher` (parallel batched requests, every block checked against its CID), stores them batch by
  batch and releases a reservation of the slot's size as they land.

It prints MiB/s of each and the ratio slot / raw per run (target ≥ 0.5). Loopback only; everything is removed at
the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from download_memory import MiB, start

from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.slotsource import NetworkSlotDataSource
from codex_node.clock import SystemClock
from codex_node.data.cid import parse_cid
from codex_node.data.manifest import Manifest
from codex_node.data.slots import SlotLayout, cid_bytes
from codex_node.market.types import Address, Ask, Content, Request
from codex_node.peers.port import PeerInfo
from codex_node.sales.datasource import LocalSlotDataSource
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.kv import LevelDBStore
from codex_node.stores.repostore import RepoStore
from codex_node.testing.staticpeers import StaticProviders

API = "/api/codex/v1"


def upload(base: str, size: int) -> str:
    """Upload ``size`` random bytes (every 64 KiB block distinct: nothing is deduplicated); return the CID."""

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield os.urandom(MiB)

    answer = httpx.post(f"{base}/data", content=body(), timeout=120, trust_env=False)
    answer.raise_for_status()
    return answer.text.strip()


async def raw(base: str, cid: str) -> tuple[int, float]:
    async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
        began = time.perf_counter()
        n = 0
        async with client.stream("GET", f"{base}/data/{cid}") as response:
            response.raise_for_status()
            async for chunk in response.aiter_raw():
                n += len(chunk)
        return n, time.perf_counter() - began


async def slot(base: str, cid: str, work: Path, options: FetchOptions) -> tuple[int, float]:
    kv = LevelDBStore(work / "meta")
    repo = RepoStore(kv, BlockFiles(work / "repo"), clock=SystemClock(), quota_max=4 << 30, block_ttl=3600)
    providers = StaticProviders([PeerInfo("peer", (base,))])
    fetcher = BlockFetcher(repo, providers, SystemClock(), options=options)
    try:
        manifest = Manifest.decode(await fetcher.get_manifest_block(parse_cid(cid)))
        layout = SlotLayout(manifest.block_count, 1)
        request = Request(
            client=Address("0x" + "11" * 20),
            ask=Ask(
                proof_probability=1,
                price_per_byte_per_second=1,
                collateral_per_byte=1,
                slots=1,
                slot_size=layout.slot_size,
                duration=3600,
                max_slot_loss=0,
            ),
            content=Content(cid=cid_bytes(parse_cid(cid)), merkle_root=bytes(32)),
            expiry=600,
            nonce=os.urandom(32),
        )
        repo.reserve(layout.slot_size)

        async def on_blocks(nbytes: int) -> None:
            repo.release(nbytes)

        source = NetworkSlotDataSource(repo, fetcher, LocalSlotDataSource(repo))
        began = time.perf_counter()
        await source.fetch(request, 0, int(time.time()) + 3600, on_blocks)
        took = time.perf_counter() - began
        if repo.quota().reserved != 0:
            raise SystemExit("the reservation was not released as blocks landed")
        return layout.slot_size, took
    finally:
        await fetcher.close()
        repo.close()
        kv.close()


async def measure(base: str, cid: str, runs: int, work: Path, options: FetchOptions) -> list[float]:
    ratios = []
    await raw(base, cid)  # warm the peer's page cache and thread pools
    for run in range(runs):
        n_raw, t_raw = await raw(base, cid)
        target = work / f"run{run}"
        n_slot, t_slot = await slot(base, cid, target, options)
        shutil.rmtree(target, ignore_errors=True)
        raw_rate, slot_rate = n_raw / MiB / t_raw, n_slot / MiB / t_slot
        ratios.append(slot_rate / raw_rate)
        print(
            f"run {run + 1}: raw {n_raw / MiB:.0f} MiB in {t_raw:.2f} s = {raw_rate:.0f} MiB/s; "
            f"slot {n_slot / MiB:.0f} MiB in {t_slot:.2f} s = {slot_rate:.0f} MiB/s; ratio {ratios[-1]:.2f}",
            flush=True,
        )
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=FetchOptions().batch_blocks, help="blocks per request")
    parser.add_argument("--parallel", type=int, default=FetchOptions().parallel, help="requests in flight")
    parser.add_argument("--codex-node", default=str(Path(sys.executable).with_name("codex-node")))
    args = parser.parse_args()
    options = FetchOptions(batch_blocks=args.batch, parallel=args.parallel)
    work = Path(tempfile.mkdtemp(prefix="network-download-"))
    proc, _api, port = start(args.codex_node, work / "data", work / "node.log", [])
    try:
        base = f"http://127.0.0.1:{port}{API}"
        cid = upload(base, args.size_mib * MiB)
        ratios = asyncio.run(measure(base, cid, args.runs, work, options))
        print(f"slot download / raw HTTP: {' '.join(f'{r:.2f}' for r in ratios)} (target >= 0.5)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
