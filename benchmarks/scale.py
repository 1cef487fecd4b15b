"""The block store at scale: millions of small blocks — fill, start-up, one maintenance pass, memory, files on disk.

    .venv/bin/python benchmarks/scale.py [--entries 10000000] [--block-bytes 64] [--dir DIR]

Fills a fresh data dir (LevelDB + the block files) with ``--entries`` distinct standalone blocks in batches of
4096, half of them expiring an hour from now and half in a month (two expiry buckets), then, each in a fresh
process so nothing is warm in Python:

* start-up: the time to open the store on that data dir (``RepoStore(...)``, recovery included) and the resident
  memory after it;
* one maintenance pass an hour and a day later (the first half has expired): its time and how many blocks it
  deleted;

and counts the files under the data dir, their bytes and the disk space allocated to them, and the time that walk
takes (what ``du`` or a backup pays).

Both layouts run the same script through the store's public API: run it from a checkout of the pack layout, and
from one of the file-per-block layout (``PYTHONPATH=<old checkout> python benchmarks/scale.py …``) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codex_node.stores.kv import LevelDBStore
    from codex_node.stores.repostore import RepoStore
    from codex_node.testing.fakeclock import FakeClock

BATCH = 4096
HOUR = 3600
START = 1_700_000_000


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _open(data_dir: Path, now: int) -> tuple[RepoStore, LevelDBStore, FakeClock]:
    from codex_node.stores.blockfiles import BlockFiles
    from codex_node.stores.kv import LevelDBStore
    from codex_node.stores.repostore import RepoStore
    from codex_node.testing.fakeclock import FakeClock

    kv = LevelDBStore(data_dir / "meta")
    clock = FakeClock(now)
    repo = RepoStore(kv, BlockFiles(data_dir / "repo"), clock=clock, quota_max=1 << 50, block_ttl=HOUR)
    return repo, kv, clock


def fill(data_dir: Path, entries: int, block_bytes: int) -> dict[str, float]:
    from codex_node.data.cid import block_cid

    repo, kv, _ = _open(data_dir, START)
    start = time.perf_counter()

    async def run() -> None:
        for first in range(0, entries, BATCH):
            blocks = []
            for i in range(first, min(first + BATCH, entries)):
                data = i.to_bytes(8, "big") * (block_bytes // 8)
                blocks.append((block_cid(data), data))
            ttl = HOUR if first < entries // 2 else 30 * 24 * HOUR
            await repo.put_blocks(blocks, ttl=ttl)
            if first // BATCH % 244 == 0:
                print(f"  filled {first + len(blocks):,} of {entries:,}", file=sys.stderr, flush=True)

    asyncio.run(run())
    elapsed = time.perf_counter() - start
    repo.close()
    kv.close()
    return {"fill_seconds": elapsed, "fill_blocks_per_second": entries / elapsed}


def open_and_maintain(data_dir: Path) -> dict[str, float]:
    from codex_node.stores.maintenance import BlockMaintainer

    before = rss_mib()
    start = time.perf_counter()
    repo, kv, clock = _open(data_dir, START + HOUR + 24 * HOUR)
    startup = time.perf_counter() - start
    rss = rss_mib()
    maintainer = BlockMaintainer(repo, clock)
    start = time.perf_counter()
    deleted = asyncio.run(maintainer.run_pass())
    maintenance = time.perf_counter() - start
    repo.close()
    kv.close()
    return {
        "startup_seconds": startup,
        "rss_mib_after_startup": rss,
        "rss_mib_before_open": before,
        "maintenance_pass_seconds": maintenance,
        "maintenance_pass_deleted": deleted,
    }


def files_on_disk(data_dir: Path) -> dict[str, float]:
    start = time.perf_counter()
    count = size = allocated = 0
    for dirpath, _, names in os.walk(data_dir):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            count += 1
            size += st.st_size
            allocated += st.st_blocks * 512
    return {
        "files": count,
        "bytes_in_files": size,
        "bytes_allocated": allocated,
        "walk_seconds": time.perf_counter() - start,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entries", type=int, default=10_000_000)
    p.add_argument("--block-bytes", type=int, default=64)
    p.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir under the cwd)")
    p.add_argument("--keep", action="store_true", help="keep the data dir")
    p.add_argument("--phase", choices=["fill", "open"], help=argparse.SUPPRESS)
    p.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase == "fill":
        print(json.dumps(fill(args.data_dir, args.entries, args.block_bytes)))
        return
    if args.phase == "open":
        print(json.dumps(open_and_maintain(args.data_dir)))
        return

    import codex_node.stores.blockfiles as blockfiles

    layout = "packs" if hasattr(blockfiles, "Location") else "file per block"
    work = Path(tempfile.mkdtemp(prefix="codex-scale-", dir=args.dir or Path.cwd()))
    data_dir = work / "data"
    data_dir.mkdir()
    results: dict[str, object] = {"layout": layout, "entries": args.entries, "block_bytes": args.block_bytes}
    try:
        for phase in ("fill", "open"):
            cmd = [sys.executable, __file__, "--phase", phase, "--data-dir", str(data_dir)]
            cmd += ["--entries", str(args.entries), "--block-bytes", str(args.block_bytes)]
            out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
            results.update(json.loads(out.strip().splitlines()[-1]))
            if phase == "fill":
                results.update(files_on_disk(data_dir))
        results["load_average"] = os.getloadavg()
        for key, value in results.items():
            shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else value
            print(f"{key:28s} {shown}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
