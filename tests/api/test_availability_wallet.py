"""An availability whose collateral the wallet cannot cover is refused: 422 naming the balance (issue 7 item 13)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.services import provide, services_of
from codex_node.sales.reservations import Reservations
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account

BALANCE = 10**24
BLOCK = 65_536


@dataclass
class Host:
    api: httpx.AsyncClient
    reservations: Reservations


@pytest.fixture
async def host() -> AsyncIterator[Host]:
    market = MockMarket(FakeClock(), signer=account(2))
    market.mint(account(2), BALANCE)
    reservations = Reservations(FakeQuotaLedger(MemoryKV(), 100 * BLOCK))
    app = create_app()
    provide(app, replace(services_of(app), market=market, reservations=reservations))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        yield Host(c, reservations)


def body(collateral: int) -> dict[str, object]:
    return {
        "totalSize": 10 * BLOCK,
        "duration": 7200,
        "minPricePerBytePerSecond": "1",
        "totalCollateral": str(collateral),
    }


async def test_an_availability_the_wallet_can_cover_is_created(host: Host) -> None:
    r = await host.api.post(f"{API_PREFIX}/sales/availability", json=body(BALANCE))
    assert r.status_code == 201, r.text


async def test_an_availability_beyond_the_wallet_is_refused_with_the_balance_and_nothing_written(host: Host) -> None:
    r = await host.api.post(f"{API_PREFIX}/sales/availability", json=body(10**27))
    assert r.status_code == 422
    assert f"the wallet holds {BALANCE} tokens" in r.json()["error"]
    assert await host.reservations.availabilities() == []


async def test_two_availabilities_together_beyond_the_wallet_are_refused(host: Host) -> None:
    assert (await host.api.post(f"{API_PREFIX}/sales/availability", json=body(BALANCE // 2 + 1))).status_code == 201
    r = await host.api.post(f"{API_PREFIX}/sales/availability", json=body(BALANCE // 2))
    assert r.status_code == 422
    assert f"would offer {BALANCE + 1} in all" in r.json()["error"]


async def test_raising_collateral_beyond_the_wallet_is_refused_and_lowering_is_not(host: Host) -> None:
    created = (await host.api.post(f"{API_PREFIX}/sales/availability", json=body(BALANCE // 2))).json()
    url = f"{API_PREFIX}/sales/availability/{created['id']}"
    r = await host.api.patch(url, json={"totalCollateral": str(BALANCE + 1)})
    assert r.status_code == 422
    assert f"the wallet holds {BALANCE} tokens" in r.json()["error"]
    [kept] = await host.reservations.availabilities()
    assert kept.total_collateral == BALANCE // 2
    assert (await host.api.patch(url, json={"totalCollateral": str(BALANCE)})).status_code == 204
    assert (await host.api.patch(url, json={"totalCollateral": "5"})).status_code == 204
    assert (await host.api.patch(url, json={"duration": 100})).status_code == 204  # no collateral: no check
