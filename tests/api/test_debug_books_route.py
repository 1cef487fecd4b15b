"""GET /debug/books: the books check (``sales.accounting.check_books``) served by the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.services import provide, services_of
from codex_node.sales.availability import AvailabilityTerms
from codex_node.sales.reservations import Reservations
from codex_node.stores.quota import Quota
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV

QUOTA = 1 << 20
TERMS = AvailabilityTerms(total_size=1000, duration=3600, min_price_per_byte_per_second=1, total_collateral=5000)


@dataclass
class QuotaOf:
    """The one thing the route reads from the repo: its quota."""

    ledger: FakeQuotaLedger

    def quota(self) -> Quota:
        return self.ledger.quota


@pytest.fixture
def ledger() -> FakeQuotaLedger:
    return FakeQuotaLedger(MemoryKV(), QUOTA)


@pytest.fixture
async def api(ledger: FakeQuotaLedger) -> AsyncIterator[tuple[httpx.AsyncClient, Reservations]]:
    app = create_app()
    reservations = Reservations(ledger)
    provide(app, replace(services_of(app), repo=QuotaOf(ledger), reservations=reservations))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        yield c, reservations


async def test_balanced_books_report_no_problem(api: tuple[httpx.AsyncClient, Reservations]) -> None:
    client, reservations = api
    await reservations.create_availability(TERMS)
    r = await client.get(f"{API_PREFIX}/debug/books")
    assert r.status_code == 200
    assert r.json() == {"balanced": True, "problems": []}


async def test_a_quota_out_of_step_with_the_availabilities_is_reported(
    api: tuple[httpx.AsyncClient, Reservations], ledger: FakeQuotaLedger
) -> None:
    client, reservations = api
    await reservations.create_availability(TERMS)
    ledger.commit_with_quota(ledger.kv.batch(), 7)  # 7 bytes reserved behind the book's back
    body = (await client.get(f"{API_PREFIX}/debug/books")).json()
    assert body["balanced"] is False
    assert body["problems"] == ["quota: reserved 1007 != Σ freeSize + Σ reservation size 1000"]


async def test_without_a_marketplace_the_books_answer_503() -> None:
    app = create_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        r = await c.get(f"{API_PREFIX}/debug/books")
    assert r.status_code == 503
    assert "without a marketplace" in r.json()["error"]
