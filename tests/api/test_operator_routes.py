"""The operator's routes: /account, /account/ledger, /sales/history and the request explainer, on MockMarket."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from codex_node.api.errors import install_error_handlers
from codex_node.api.routes import account, sales
from codex_node.api.services import Services, provide
from codex_node.data.cid import block_cid
from codex_node.data.slots import cid_bytes
from codex_node.market.types import Ask, Content, Request, RequestId, Slot
from codex_node.sales.account import AccountMetrics
from codex_node.sales.context import OnBlocks
from codex_node.sales.history import SaleHistory
from codex_node.sales.ledger import EarningsLedger, EntryKind
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket
from codex_node.testing.mockmarket import account as mock_account

API = "/api/codex/v1"
BLOCK = 65_536
FUNDS = 10**15
ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=2,
    collateral_per_byte=3,
    slots=1,
    slot_size=BLOCK,
    duration=3600,
    max_slot_loss=0,
)


class NoProofs:
    async def prove(self, slot: Slot, challenge: bytes) -> Any:
        await asyncio.Event().wait()

    def corrupt(self, proof: Any) -> Any:
        return proof

    async def forget(self, slot: Slot) -> None:
        return None


class HeldLocally:
    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        await on_blocks(request.ask.slot_size)

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None


@dataclass
class Node:
    app: FastAPI
    market: MockMarket
    client: MockMarket
    sales: Sales
    ledger: EarningsLedger
    registry: CollectorRegistry


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    clock = FakeClock()
    client = MockMarket(clock, signer=mock_account(1))
    market = client.as_account(mock_account(2))
    for n in (1, 2):
        client.mint(mock_account(n), FUNDS)
    kv = MemoryKV()
    reservations = Reservations(FakeQuotaLedger(kv, 100 * BLOCK))
    ledger = EarningsLedger(kv, clock)
    s = Sales(
        market=market,
        clock=clock,
        reservations=reservations,
        queue=SlotQueue(clock=clock),
        data_source=HeldLocally(),
        prover=NoProofs(),
        history=SaleHistory(kv, clock),
        ledger=ledger,
    )
    app = FastAPI()
    app.include_router(sales.router, prefix=API)
    app.include_router(account.router, prefix=API)
    install_error_handlers(app)
    registry = CollectorRegistry()
    provide(
        app,
        Services(
            sales=s, reservations=reservations, market=market, ledger=ledger, account_metrics=AccountMetrics(registry)
        ),
    )
    await s.start()
    yield Node(app, market, client, s, ledger, registry)
    await s.stop()


@pytest.fixture
async def api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url="http://localhost") as c:
        yield c


async def offer(api: httpx.AsyncClient, **changes: object) -> dict[str, Any]:
    body = {"totalSize": 10 * BLOCK, "duration": 7200, "minPricePerBytePerSecond": "1", "totalCollateral": "10000000"}
    r = await api.post(f"{API}/sales/availability", json={**body, **changes})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def post_request(node: Node, ask: Ask = ASK) -> Request:
    request = Request(
        client=mock_account(1),
        ask=ask,
        content=Content(cid=cid_bytes(block_cid(b"dataset")), merkle_root=os.urandom(32)),
        expiry=600,
        nonce=os.urandom(32),
    )
    await node.client.request_storage(request)
    for _ in range(200):
        await asyncio.sleep(0)
    return request


# --- account ------------------------------------------------------------------------------------------------------


async def test_account_shows_balances_promised_collateral_and_ledger_totals(node: Node, api: httpx.AsyncClient) -> None:
    await offer(api)
    node.ledger.record(EntryKind.PAYOUT, _rid(), 70, fact="t")
    r = await api.get(f"{API}/account")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["address"] == node.market.signer
    assert body["tokenBalance"] == str(FUNDS)
    assert body["gasBalance"] is None  # MockMarket has no gas
    assert body["collateralPromised"] == "10000000"
    assert body["collateralLocked"] == "0"
    assert body["totals"]["earned"] == "70"
    assert body["totals"]["byKind"]["payout"] == "70"
    # The same figures, as of this read, for Prometheus.
    assert node.registry.get_sample_value("codex_account_token_balance") == FUNDS
    assert node.registry.get_sample_value("codex_account_collateral_promised") == 10_000_000


def _rid() -> RequestId:
    return RequestId(b"\x07" * 32)


async def test_the_ledger_pages_newest_first(node: Node, api: httpx.AsyncClient) -> None:
    for i in range(5):
        node.ledger.record(EntryKind.PAYOUT, _rid(), i + 1, fact=f"f{i}")
    first = (await api.get(f"{API}/account/ledger", params={"limit": 2})).json()
    assert [e["amount"] for e in first["entries"]] == ["5", "4"]
    assert first["entries"][0]["flow"] == "5"
    second = (await api.get(f"{API}/account/ledger", params={"limit": 2, "before": first["next"]})).json()
    assert [e["amount"] for e in second["entries"]] == ["3", "2"]
    last = (await api.get(f"{API}/account/ledger", params={"limit": 2, "before": second["next"]})).json()
    assert [e["amount"] for e in last["entries"]] == ["1"]
    assert last["next"] is None


async def test_a_ledger_page_over_the_limit_is_422_and_a_malformed_one_400(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/account/ledger", params={"limit": 501})
    assert r.status_code == 422
    assert "limit" in r.json()["error"]
    assert (await api.get(f"{API}/account/ledger", params={"before": "newest"})).status_code == 400


# --- history ------------------------------------------------------------------------------------------------------


async def test_the_history_lists_an_ignored_sale_with_the_rule_that_failed(node: Node, api: httpx.AsyncClient) -> None:
    await offer(api, duration=60)  # too short for the ask's 3600 s
    await post_request(node)
    page = (await api.get(f"{API}/sales/history", params={"state": "ignored"})).json()
    [sale] = page["sales"]
    assert sale["outcome"] == "ignored"
    assert sale["state"] == "SaleIgnored"
    assert "failed duration (duration 3600 vs availability duration 60)" in sale["reason"]
    assert [t["to"] for t in sale["transitions"]] == ["SalePreparing", "SaleIgnored"]
    assert (await api.get(f"{API}/sales/history/{sale['id']}")).json() == sale
    assert (await api.get(f"{API}/sales/history", params={"state": "finished"})).json()["sales"] == []


async def test_an_unknown_history_state_is_400_and_an_unknown_sale_404(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/sales/history", params={"state": "sleeping"})
    assert r.status_code == 400
    assert "expected one of active, finished" in r.json()["error"]
    assert (await api.get(f"{API}/sales/history/99")).status_code == 404


# --- the request explainer ----------------------------------------------------------------------------------------


async def test_match_explains_per_availability_and_rule(node: Node, api: httpx.AsyncClient) -> None:
    await offer(api, duration=60)
    good = await offer(api)
    request = await post_request(node, ASK)
    r = await api.get(f"{API}/sales/requests/0x{request.id.hex()}/match")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["requestState"] == "new"
    assert body["chosenAvailability"] == good["id"]
    by_id = {a["id"]: a for a in body["availabilities"]}
    assert by_id[good["id"]]["matches"] is True
    [short] = [a for a in body["availabilities"] if a["id"] != good["id"]]
    assert [rule["rule"] for rule in short["rules"] if not rule["passed"]] == ["duration"]
    assert body["slotCollateral"] == str(ASK.collateral_per_slot)


async def test_match_of_an_unknown_request_is_404_and_of_a_malformed_id_400(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{API}/sales/requests/0x{'ab' * 32}/match")).status_code == 404
    assert (await api.get(f"{API}/sales/requests/0x12/match")).status_code == 400
