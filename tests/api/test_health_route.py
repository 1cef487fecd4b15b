"""GET /health: 200 ready, 503 not ready with the reasons; public (no token), Host rules still apply."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.services import Services, provide
from codex_node.config import NodeConfig
from codex_node.monitor.alerts import AlertBook
from codex_node.monitor.monitor import Monitor
from codex_node.monitor.samples import StorageSamples
from codex_node.stores.quota import Quota
from codex_node.testing.fakeclock import FakeClock

TOKEN = "health-token-0123456789"


def app_with(tmp_path: Path, *, store_open: bool, token: bool = False) -> httpx.AsyncClient:
    token_path = None
    if token:
        token_path = tmp_path / "token"
        token_path.write_text(TOKEN)
        os.chmod(token_path, 0o600)
    config = NodeConfig(data_dir=tmp_path, marketplace=False, api_token=token_path)
    app = create_app(config)
    m = Monitor(
        clock=FakeClock(),
        quota=lambda: Quota(max=100, used=0, reserved=0),
        store_open=lambda: store_open,
        data_dir=tmp_path,
        book=AlertBook(CollectorRegistry()),
        samples=StorageSamples(),
    )
    provide(app, Services(config=config, monitor=m))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}")


async def test_a_ready_node_answers_200_with_its_checks(tmp_path: Path) -> None:
    async with app_with(tmp_path, store_open=True) as c:
        r = await c.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["live"] is True
    assert body["ready"] is True
    assert {check["name"] for check in body["checks"]} == {"store", "disk"}


async def test_a_node_that_is_not_ready_answers_503_saying_why(tmp_path: Path) -> None:
    async with app_with(tmp_path, store_open=False) as c:
        r = await c.get("/health")
    assert r.status_code == 503
    failed = [check for check in r.json()["checks"] if not check["ok"]]
    assert failed == [{"name": "store", "ok": False, "detail": "metadata store closed"}]


async def test_an_app_without_a_node_is_live_but_not_ready(tmp_path: Path) -> None:
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        r = await c.get(f"{API_PREFIX}/health")
    assert (r.status_code, r.json()["live"], r.json()["ready"]) == (503, True, False)


async def test_health_needs_no_token_but_the_other_routes_do(tmp_path: Path) -> None:
    async with app_with(tmp_path, store_open=True, token=True) as c:
        health = await c.get("/health")
        alerts = await c.get("/alerts")
        foreign = await c.get("/health", headers={"Host": "evil.example"})
    assert health.status_code == 200
    assert alerts.status_code == 401
    assert foreign.status_code == 421
