"""HTTP metrics: requests counted by route template and status; the /metrics endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from starlette.types import Receive, Scope, Send

from codex_node.api.app import API_PREFIX, create_app
from codex_node.metrics import UNMATCHED, HttpMetricsMiddleware, metrics_app


def requests(method: str, route: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "codex_api_requests_total", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


def observed(method: str, route: str) -> float:
    value = REGISTRY.get_sample_value("codex_api_request_duration_seconds_count", {"method": method, "route": route})
    return value or 0.0


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


async def test_requests_are_counted_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    info = f"{API_PREFIX}/debug/info"
    data = f"{API_PREFIX}/data/{{cid}}"
    before = (requests("GET", info, 200), requests("GET", data, 400), observed("GET", info))
    await client.get(info)
    await client.get(info)
    await client.get(f"{API_PREFIX}/data/not-a-cid")
    after = (requests("GET", info, 200), requests("GET", data, 400), observed("GET", info))
    assert after[0] - before[0] == 2
    assert after[1] - before[1] == 1  # labelled by the template, not by the CID asked for
    assert after[2] - before[2] == 2


async def test_paths_no_route_serves_share_one_label(client: httpx.AsyncClient) -> None:
    before = requests("GET", UNMATCHED, 404)
    await client.get("/a")
    await client.get("/b/c")
    assert requests("GET", UNMATCHED, 404) - before == 2


async def test_a_request_whose_app_raises_is_counted_as_a_500() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    app = HttpMetricsMiddleware(broken, templates={})
    before = requests("GET", UNMATCHED, 500)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        await c.get("/x")
    assert requests("GET", UNMATCHED, 500) - before == 1


async def test_the_metrics_endpoint_exposes_the_registry_at_slash_metrics_only() -> None:
    registry = CollectorRegistry()
    Counter("codex_test_things", "things", registry=registry).inc(3)
    transport = httpx.ASGITransport(app=metrics_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        r = await c.get("/metrics")
        other = await c.get("/")
    assert r.status_code == 200
    assert "codex_test_things_total 3.0" in r.text
    assert other.status_code == 404
