"""The operator's routes with 10,000 sales in the history: how long one page takes to answer.

A LevelDB metadata store is filled with 10,000 sale records (two thirds ignored with a reason, one third finished
with 8 transitions, 20 proof rounds and 3 ledger entries each), then ``GET /sales/history`` (first page, a page
deep in the list, one outcome), ``GET /sales/history/{saleId}`` and ``GET /account/ledger`` are each asked 20 times
through the ASGI app and the median and the worst time printed. Target: under 200 ms (the dashboard's budget).
Run: ``python benchmarks/sales_history.py [SALES]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from codex_node.api.errors import install_error_handlers
from codex_node.api.routes import account, sales
from codex_node.api.services import Services, provide
from codex_node.market.types import RequestId, SlotId
from codex_node.sales.history import SaleHistory
from codex_node.sales.ledger import EarningsLedger, EntryKind
from codex_node.sales.salebook import ProofRecord
from codex_node.stores.kv import LevelDBStore
from codex_node.testing.fakeclock import FakeClock

API = "/api/codex/v1"


class _Sales:
    """What the history routes read of Sales: its sale book."""

    def __init__(self, history: SaleHistory) -> None:
        self.book = history.book


def fill(kv: LevelDBStore, n: int) -> tuple[SaleHistory, EarningsLedger]:
    clock = FakeClock(1_700_000_000)
    history = SaleHistory(kv, clock)
    ledger = EarningsLedger(kv, clock)
    book = history.book
    request = RequestId(b"\x01" * 32)
    for i in range(n):
        clock.advance(7)
        sid = SlotId(i.to_bytes(32, "big"))
        sale = book.begin(sid, request, i % 4)
        book.transition(sale, None, "SalePreparing", "start")
        if i % 3:
            book.transition(sale, "SalePreparing", "SaleIgnored", "run", reason="no availability matches: …")
            continue
        for a, b in zip(
            ["SalePreparing", "SaleSlotReserving", "SaleDownloading", "SaleInitialProving", "SaleFilling"],
            ["SaleSlotReserving", "SaleDownloading", "SaleInitialProving", "SaleFilling", "SaleFilled"],
            strict=True,
        ):
            book.transition(sale, a, b, "run")
        for p in range(20):
            book.proof(sale, ProofRecord(p, 60 * p, 60 * p + 3, 57, "submitted"))
        for kind in (EntryKind.COLLATERAL_POSTED, EntryKind.PAYOUT, EntryKind.COLLATERAL_RETURNED):
            ledger.record(kind, request, 1000, fact=f"{kind}/{sale}", slot_index=i % 4, sale_id=sale)
        book.transition(sale, "SaleFilled", "SaleFinished", "run")
    return history, ledger


async def measure(app: FastAPI, paths: list[str]) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        for path in paths:
            times = []
            for _ in range(20):
                began = time.perf_counter()
                r = await c.get(API + path)
                times.append((time.perf_counter() - began) * 1000)
                assert r.status_code == 200, r.text
            print(f"{path:45} median {statistics.median(times):6.1f} ms   worst {max(times):6.1f} ms")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelDBStore(Path(tmp) / "meta", sync=False)
        began = time.perf_counter()
        history, ledger = fill(kv, n)
        print(f"{n} sales written in {time.perf_counter() - began:.1f} s")
        app = FastAPI()
        app.include_router(sales.router, prefix=API)
        app.include_router(account.router, prefix=API)
        install_error_handlers(app)
        provide(app, Services(sales=_Sales(history), ledger=ledger))  # type: ignore[arg-type]
        middle = n // 2
        asyncio.run(
            measure(
                app,
                [
                    "/sales/history",
                    f"/sales/history?before={middle}",
                    "/sales/history?state=finished&limit=50",
                    f"/sales/history?state=ignored&before={middle}",
                    f"/sales/history/{middle - middle % 3}",
                    "/account/ledger",
                ],
            )
        )
        kv.close()


if __name__ == "__main__":
    main()
