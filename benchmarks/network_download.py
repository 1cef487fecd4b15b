"""Dataset download throughput between two local node processes, as a ratio to a raw HTTP transfer of the same
bytes in the same run.

    .venv/bin/python benchmarks/network_download.py [--size-mib 128] [--runs 3] [--codex-node PATH]

Starts two ``codex-node run --no-marketplace`` processes on fresh data dirs: the **holder**, to which one dataset of
``--size-mib`` distinct blocks is uploaded, and the **downloader**, started with ``--bootstrap-node`` naming the
holder. After one raw and one node download to warm both processes up (page cache, thread pools, connections),
``--runs`` times:

* **raw**: ``GET /data/{cid}`` from the holder (its plain download: one HTTP stream, the bytes read and dropped);
* **node**: ``POST /data/{cid}/network`` on the downloader (the real API: the manifest, then every block fetched from
  the holder through its batched block route, each checked against its CID, stored in the repo as an upload would
  be), timed until the downloader logs "network download finished" (read from its log file: polling its API would
  take its CPU); ``GET /data/{cid}/exists`` then confirms it, and the dataset is deleted from the downloader for the
  next run.

It prints MiB/s of each and the ratio node / raw per run, then their median (target >= 0.5), with the machine's
load average (``os.getloadavg``) beside each run: the raw transfer is measured in the same run so a busy machine
slows both.
Loopback only; both processes are stopped and everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from download_memory import MiB, start

API = "/api/codex/v1"
POLL_SECONDS = 0.002


def upload(base: str, size: int) -> str:
    """Upload ``size`` random bytes (every 64 KiB block distinct: nothing is deduplicated); return the CID."""

    def body() -> Iterator[bytes]:
        for _ in range(size // MiB):
            yield os.urandom(MiB)

    answer = httpx.post(f"{base}/data", content=body(), timeout=120, trust_env=False)
    answer.raise_for_status()
    return answer.text.strip()


def raw(client: httpx.Client, base: str, cid: str) -> tuple[int, float]:
    began = time.perf_counter()
    n = 0
    with client.stream("GET", f"{base}/data/{cid}") as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            n += len(chunk)
    return n, time.perf_counter() - began


def exists(client: httpx.Client, base: str, cid: str) -> bool:
    answer = client.get(f"{base}/data/{cid}/exists")
    answer.raise_for_status()
    return bool(answer.json()["has"])


def node(client: httpx.Client, base: str, cid: str, size: int, log: Path, timeout: float) -> float:
    """Seconds from ``POST /data/{cid}/network`` until the downloader holds the dataset.

    The end is seen in the downloader's log ("network download finished"), read from this process: polling the
    node's API would take the downloader's CPU while it downloads."""
    with log.open("rb") as lines:
        lines.seek(0, os.SEEK_END)
        began = time.perf_counter()
        answer = client.post(f"{base}/data/{cid}/network")
        answer.raise_for_status()
        if answer.json()["manifest"]["datasetSize"] != size:
            raise SystemExit(f"the downloader's manifest says {answer.json()['manifest']['datasetSize']} bytes")
        deadline = began + timeout
        seen = b""
        while b'"network download finished"' not in seen:
            if b'"network download failed"' in seen:
                raise SystemExit(f"the download failed: {seen.decode(errors='replace')[-2000:]}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"the download did not finish within {timeout} s")
            time.sleep(POLL_SECONDS)
            seen += lines.read()
        took = time.perf_counter() - began
    if not exists(client, base, cid):
        raise SystemExit("the downloader logged the download finished but does not hold the dataset")
    client.delete(f"{base}/data/{cid}").raise_for_status()
    if exists(client, base, cid):
        raise SystemExit("the dataset is still on the downloader after DELETE")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--codex-node", default=str(Path(sys.executable).with_name("codex-node")))
    args = parser.parse_args()
    size = args.size_mib * MiB
    work = Path(tempfile.mkdtemp(prefix="network-download-"))
    procs = []
    try:
        holder, _api, holder_port = start(args.codex_node, work / "holder", work / "holder.log", [])
        procs.append(holder)
        holder_base = f"http://127.0.0.1:{holder_port}{API}"
        downloader, _api, port = start(
            args.codex_node, work / "downloader", work / "downloader.log", ["--bootstrap-node", holder_base]
        )
        procs.append(downloader)
        base = f"http://127.0.0.1:{port}{API}"
        cid = upload(holder_base, size)
        ratios = []
        with httpx.Client(timeout=120, trust_env=False) as client:
            raw(client, holder_base, cid)  # warm the holder's page cache and thread pools
            node(client, base, cid, size, work / "downloader.log", timeout=120)  # and the downloader's
            for run in range(args.runs):
                n_raw, t_raw = raw(client, holder_base, cid)
                if n_raw != size:
                    raise SystemExit(f"the raw download gave {n_raw} bytes of {size}")
                t_node = node(client, base, cid, size, work / "downloader.log", timeout=120)
                raw_rate, node_rate = size / MiB / t_raw, size / MiB / t_node
                ratios.append(node_rate / raw_rate)
                load = " ".join(f"{x:.2f}" for x in os.getloadavg())
                print(
                    f"run {run + 1}: raw {args.size_mib} MiB in {t_raw:.2f} s = {raw_rate:.0f} MiB/s; "
                    f"node {t_node:.2f} s = {node_rate:.0f} MiB/s; ratio {ratios[-1]:.2f} (load average {load})",
                    flush=True,
                )
        print(
            f"node download / raw HTTP: {' '.join(f'{r:.2f}' for r in ratios)}, median {statistics.median(ratios):.2f} "
            "(target >= 0.5)"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
