"""``codex-node scrub``: read every stored block back, offline, and report the corrupt ones.

::

    codex-node scrub [--data-dir DIR] [--json]

Takes the data dir's lock (a running node holds it: stop the node first; ``codex-node check --read-blocks`` asks a
running one instead), opens the repo as a start does (recovery included) with the quota it has on record, and runs
:func:`codex_node.stores.scrub.scrub`: each block hashed against its CID. It prints one line per corrupt block —
CID, pack and offset, the problem, and the datasets whose manifests list it — and a summary; a progress bar goes
to stderr when stderr is a terminal. Exit codes: 0 every block sound, 1 corrupt blocks found, 2 bad flags or a
data dir in use or without a repo. It never changes a block (``--verify-reads`` refuses corrupt blocks at
download time).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from codex_node.config import ENV_PREFIX, default_data_dir
from codex_node.errors import ConfigError

if TYPE_CHECKING:
    from codex_node.stores.scrub import CorruptBlock

DATA_DIR_ENV = ENV_PREFIX + "DATA_DIR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the node's data dir (default: ${DATA_DIR_ENV}, else {default_data_dir()})",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from prometheus_client.registry import CollectorRegistry

    from codex_node.clientcli import ProgressBar
    from codex_node.clock import SystemClock
    from codex_node.stores.blockfiles import BlockFiles
    from codex_node.stores.datadir import DataDirLock
    from codex_node.stores.kv import LevelDBStore
    from codex_node.stores.quota import QUOTA_KEY, Quota
    from codex_node.stores.repostore import RepoStore
    from codex_node.stores.scrub import scrub

    data_dir: Path = args.data_dir or Path(env.get(DATA_DIR_ENV) or default_data_dir())
    if not (data_dir / "meta").is_dir():
        raise ConfigError("--data-dir", f"{data_dir} holds no node data (no meta/ folder)")
    lock = DataDirLock(data_dir)
    lock.acquire()  # a running node: ConfigError naming its pid
    try:
        kv = LevelDBStore(data_dir / "meta")
        try:
            raw = kv.get(QUOTA_KEY)
            if raw is None:
                raise ConfigError("--data-dir", f"{data_dir} holds no repo (no quota record)")
            repo = RepoStore(
                kv,
                BlockFiles(data_dir / "repo"),
                clock=SystemClock(),
                quota_max=Quota.decode(raw).max,  # as on record: a scrub changes nothing
                block_ttl=0,
                registry=CollectorRegistry(),
            )
            try:
                bar = ProgressBar.on(sys.stderr, "scrub")
                report = scrub(repo, on_progress=bar)
                bar.finish()
            finally:
                repo.close()
        finally:
            kv.close()
    finally:
        lock.release()
    if args.json:
        print(json.dumps(_as_json(report.checked, report.bytes_checked, report.corrupt)))
    else:
        for b in report.corrupt:
            owners = ", ".join(c.text for c in b.datasets) or ("standalone (slot data)" if b.standalone else "none")
            print(f"CORRUPT {b.cid.text} pack {b.pack:016x} offset {b.offset}: {b.problem}; datasets: {owners}")
        print(f"{report.checked} blocks ({report.bytes_checked} bytes) checked, {len(report.corrupt)} corrupt")
    return 1 if report.corrupt else 0


def _as_json(checked: int, size: int, corrupt: list[CorruptBlock]) -> dict[str, object]:
    return {
        "checked": checked,
        "bytesChecked": size,
        "corrupt": [
            {
                "cid": b.cid.text,
                "pack": f"{b.pack:016x}",
                "offset": b.offset,
                "problem": b.problem,
                "standalone": b.standalone,
                "datasets": [c.text for c in b.datasets],
            }
            for b in corrupt
        ],
    }
