"""The dashboard with 10,000 sales in the history: how long each page's requests take on a real node.

A data dir is filled first (before the node starts, unsynced writes, ``SaleBook`` itself) with N sales (default
10,000): finished, cancelled, failed, ignored and errored ones, each with its transitions and, for the finished,
ten proof rounds. Then a node (embedded chain) starts on it and every page of the dashboard is loaded the way the
page's script loads it (its API calls, one after the other: the browser runs some of them at once, so this is the
slower bound), ``ROUNDS`` times over HTTP on 127.0.0.1. Printed: the median and the worst round per page, and per
call; the target is under 200 ms per page. Run: ``python benchmarks/dashboard.py [N]``.
"""

from __future__ import annotations

import http.client
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog

from codex_node.market.types import RequestId, SlotId
from codex_node.sales.salebook import ProofRecord, SaleBook
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.fakeclock import FakeClock
from tests.harness.nodeprocess import start_node

ROUNDS = 20
ENDINGS = ("SaleFinished", "SaleCancelled", "SaleFailed", "SaleIgnored", "SaleErrored")


def fill(meta: Path, n: int) -> None:
    kv = LevelDBStore(meta, sync=False)
    clock = FakeClock(1_700_000_000)
    book = SaleBook(kv, clock)
    try:
        for i in range(n):
            clock.advance(7)
            sale = book.begin(SlotId(os.urandom(32)), RequestId(os.urandom(32)), i % 4)
            book.transition(sale, None, "SalePreparing", "start")
            ending = ENDINGS[i % len(ENDINGS)]
            if ending == "SaleIgnored":
                book.transition(sale, "SalePreparing", ending, "run", reason="no availability matches: size")
                continue
            for a, b in (
                ("SalePreparing", "SaleSlotReserving"),
                ("SaleSlotReserving", "SaleDownloading"),
                ("SaleDownloading", "SaleInitialProving"),
                ("SaleInitialProving", "SaleFilling"),
                ("SaleFilling", "SaleFilled"),
                ("SaleFilled", "SaleProving"),
            ):
                book.transition(sale, a, b, "run")
            if ending == "SaleFinished":
                for period in range(10):
                    book.proof(sale, ProofRecord(period, clock.now(), clock.now() + 3, 50, "submitted", None))
            book.transition(sale, "SaleProving", ending, "run", error="boom" if ending == "SaleErrored" else None)
    finally:
        kv.close()


PAGES: dict[str, tuple[str, ...]] = {
    "overview": (
        "/dashboard",
        "/openapi.json",
        "/api/codex/v1/debug/info",
        "/api/codex/v1/health",
        "/api/codex/v1/alerts",
        "/api/codex/v1/space",
        "/api/codex/v1/account",
    ),
    "storage": ("/api/codex/v1/space", "/api/codex/v1/space/history", "/api/codex/v1/sales/proof-margins"),
    "availabilities": ("/api/codex/v1/sales/availability",),
    "sales (newest page)": ("/api/codex/v1/sales/history?limit=50",),
    "sales (finished only)": ("/api/codex/v1/sales/history?limit=50&state=finished",),
    "sales (since, deep)": ("/api/codex/v1/sales/history?limit=50&since=1700035000",),
    "sales (page 100 via before)": ("/api/codex/v1/sales/history?limit=50&before={deep}",),
    "one sale's timeline": ("/api/codex/v1/sales/history/{one}",),
    "status: sales by state": ("/api/codex/v1/sales/states",),
    "purchases": ("/openapi.json",),
}


def timed(client: http.client.HTTPConnection, path: str) -> float:
    """Milliseconds for one GET, the whole body read (a kept-alive connection, as a browser's)."""
    start = time.perf_counter()
    client.request("GET", path)
    r = client.getresponse()
    body = r.read()
    elapsed = (time.perf_counter() - start) * 1000
    assert r.status == 200, (path, r.status, body[:200])
    return elapsed


def measure(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir(mode=0o700)
        began = time.perf_counter()
        fill(data / "meta", n)
        print(f"filled {n} sales in {time.perf_counter() - began:.1f}s")
        node = start_node(data, "--log-level", "warning")  # its own process, as a browser sees it
        try:
            origin = node.api.removesuffix("/api/codex/v1")
            client = http.client.HTTPConnection(origin.removeprefix("http://"), timeout=30)
            try:
                values = {"deep": str(max(0, n - 5000)), "one": str(n // 2)}
                print(f"{'page':<30} {'median ms':>10} {'worst ms':>10}")
                for page, paths in PAGES.items():
                    rounds = [sum(timed(client, p.format(**values)) for p in paths) for _ in range(ROUNDS)]
                    print(f"{page:<30} {statistics.median(rounds):>10.1f} {max(rounds):>10.1f}")
                print(f"\n{'call':<60} {'median ms':>10}")
                for path in sorted({p for paths in PAGES.values() for p in paths}):
                    times = [timed(client, path.format(**values)) for _ in range(ROUNDS)]
                    print(f"{path:<60} {statistics.median(times):>10.1f}")
            finally:
                client.close()
        finally:
            node.stop()


def main() -> None:
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    measure(n)


if __name__ == "__main__":
    main()
