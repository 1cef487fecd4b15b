"""The embedded chain's dev routes: ``GET /debug/chain``, ``POST /debug/chain/travel``,
``POST /debug/chain/request/{cid}`` — their answers without a marketplace, on a remote chain, and on a real node."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from codex_node.api.app import API_PREFIX, create_app
from codex_node.config import NodeConfig
from codex_node.market.types import RequestId, RequestState
from codex_node.node import Node

REQUEST: dict[str, object] = {
    "slots": 2,
    "duration": 600,
    "expiry": 300,
    "pricePerBytePerSecond": "1",
    "proofProbability": "1",
    "collateralPerByte": "1",
}
ROUTES: tuple[tuple[str, str, dict[str, object] | None], ...] = (
    ("GET", "/debug/chain", None),
    ("POST", "/debug/chain/travel", {"timestamp": 2_000_000_000}),
    ("POST", "/debug/chain/request/zDvZRwzm", REQUEST),
)


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}")  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_without_a_marketplace_the_chain_routes_answer_503(method: str, path: str, body: object) -> None:
    async with client_for(create_app()) as api:
        r = await api.request(method, path, json=body)
    assert r.status_code == 503
    assert "marketplace" in r.json()["error"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_on_a_remote_chain_the_chain_routes_answer_404(method: str, path: str, body: object) -> None:
    app = create_app()
    app.state.market = object()  # a market, but no embedded chain
    async with client_for(app) as api:
        r = await api.request(method, path, json=body)
    assert r.status_code == 404
    assert "embedded chain" in r.json()["error"]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, dev_block_time=0))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


@pytest.mark.slow
async def test_the_chain_routes_on_the_embedded_chain(node: Node) -> None:
    mp = node.marketplace
    assert mp is not None
    assert mp.chain is not None
    async with httpx.AsyncClient(base_url=f"{node.api_url}{API_PREFIX}", timeout=30) as api:
        head = (await api.get("/debug/chain")).json()
        assert head == {"block": mp.chain.head, "timestamp": await mp.chain.latest_timestamp()}

        # Travel: only forward; the node's on-chain clock follows.
        past = await api.post("/debug/chain/travel", json={"timestamp": head["timestamp"]})
        assert past.status_code == 422
        assert "not later" in past.json()["error"]
        target = head["timestamp"] + 3600
        moved = await api.post("/debug/chain/travel", json={"timestamp": target})
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"block": head["block"] + 1, "timestamp": target}
        await mp.market.events.wait_delivered(head["block"] + 1)
        assert mp.market.clock.now() == target

        # Request: a stored dataset only, paid by the dev client account.
        cid = (await api.post("/data", content=os.urandom(3 * 65536))).text
        assert (await api.post("/debug/chain/request/not-a-cid", json=REQUEST)).status_code == 400
        deleted = (await api.post("/data", content=b"gone")).text
        assert (await api.delete(f"/data/{deleted}")).status_code == 204
        absent = await api.post(f"/debug/chain/request/{deleted}", json=REQUEST)
        assert absent.status_code == 404
        refused = await api.post(f"/debug/chain/request/{cid}", json={**REQUEST, "expiry": 600})
        assert refused.status_code == 422
        assert "InvalidExpiry" in refused.json()["error"]
        missing_field = await api.post(f"/debug/chain/request/{cid}", json={"slots": 2})
        assert missing_field.status_code == 400

        posted = await api.post(f"/debug/chain/request/{cid}", json=REQUEST)
        assert posted.status_code == 200, posted.text
        request = posted.json()
        assert request["client"] == mp.chain.client_account.address
        assert request["ask"]["slotSize"] == 2 * 65536  # 3 blocks in 2 slots: 2 blocks a slot
        assert request["content"]["cid"] == cid
        request_id = RequestId(bytes.fromhex(request["id"][2:]))
        assert await mp.market.request_state(request_id) == RequestState.NEW
        on_chain = await mp.market.get_request(request_id)
        assert on_chain is not None
        assert "0x" + on_chain.content.merkle_root.hex() == request["content"]["merkleRoot"]
