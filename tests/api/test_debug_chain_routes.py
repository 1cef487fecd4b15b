"""The embedded chain's dev routes: ``GET /debug/chain``, ``POST /debug/chain/travel`` — where they are mounted,
every bound (against fakes), and on a real node. The dev request route is gone (``POST /storage/request/{cid}``
is the client's route: ``tests/api/test_storage_request.py``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.routes.devchain import MAX_TRAVEL
from codex_node.api.services import DevChain, Services, provide
from codex_node.config import NodeConfig
from codex_node.market.types import Request as StorageRequestRecord
from codex_node.market.types import RequestId, RequestState
from codex_node.node import Node
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"

REQUEST: dict[str, object] = {
    "duration": 600,
    "expiry": 300,
    "pricePerBytePerSecond": "1",
    "proofProbability": "1",
    "collateralPerByte": "1",
}
ROUTES: tuple[tuple[str, str, dict[str, object] | None], ...] = (
    ("GET", "/debug/chain", None),
    ("POST", "/debug/chain/travel", {"timestamp": 2_000_000_000}),
)


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}")  # type: ignore[arg-type]


# --- mounting -------------------------------------------------------------------------------------------------------


def embedded_config(tmp_path: Path) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / "data", api_port=0, dev_block_time=0)


@pytest.mark.parametrize(
    ("config", "mounted"),
    [
        (None, False),
        (NodeConfig(marketplace=False), False),
        (
            NodeConfig(
                eth_provider="http://127.0.0.1:8545",
                eth_account="0x" + "22" * 20,
                marketplace_address="0x" + "33" * 20,
            ),
            False,
        ),
        (NodeConfig(), True),
    ],
    ids=["no-config", "no-marketplace", "remote-chain", "embedded-chain"],
)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_the_chain_routes_are_mounted_only_with_the_embedded_chain(
    config: NodeConfig | None, mounted: bool, method: str, path: str, body: object
) -> None:
    async with client_for(create_app(config)) as api:
        r = await api.request(method, path, json=body)
    if mounted:  # mounted, but this app's services have no chain yet
        assert r.status_code == 503
        assert "marketplace" in r.json()["error"]
    else:
        assert r.status_code == 404


async def test_the_dev_request_route_is_gone(tmp_path: Path) -> None:
    async with client_for(create_app(embedded_config(tmp_path))) as api:
        r = await api.post("/debug/chain/request/zDvZRwzm", json=REQUEST)
    assert r.status_code == 404


def test_the_chain_routes_are_left_out_of_the_openapi_contract() -> None:
    schema = create_app(NodeConfig()).openapi()
    assert not [p for p in schema["paths"] if "/debug/chain" in p]
    assert f"{API_PREFIX}/debug/info" in schema["paths"]
    assert "/debug/chain" not in OPENAPI.read_text(encoding="utf-8")


# --- bounds, against fakes -----------------------------------------------------------------------------------------

LATEST = 1_700_000_000
DURATION_LIMIT = 30 * 24 * 3600


class FakeChain:
    def __init__(self) -> None:
        self.head = 7
        self.timestamp = LATEST
        self.travels: list[int] = []

    async def latest_timestamp(self) -> int:
        return self.timestamp

    async def travel_to(self, timestamp: int) -> None:
        self.travels.append(timestamp)
        self.timestamp = timestamp
        self.head += 1


class FakeEvents:
    def wake(self) -> None:
        return None


class FakeMarket:
    """The node's market and the dev client's view of it, as far as the dev routes use them."""

    def __init__(self) -> None:
        self.events = FakeEvents()
        self.posted: list[StorageRequestRecord] = []

    async def config(self) -> SimpleNamespace:
        return SimpleNamespace(request_duration_limit=DURATION_LIMIT)

    async def get_signer(self) -> str:
        return "0x" + "11" * 20

    async def request_storage(self, request: StorageRequestRecord) -> None:
        self.posted.append(request)


@dataclass
class DevWorld:
    app: FastAPI
    chain: FakeChain
    market: FakeMarket
    repo: RepoStore


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevWorld]:
    repo = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "repo", sync="none"),
        clock=FakeClock(),
        quota_max=64 << 20,
        block_ttl=3600,
        registry=None,
    )
    chain, market = FakeChain(), FakeMarket()
    app = create_app(embedded_config(tmp_path), repo=repo)
    dev_chain = DevChain(chain=chain, market=market, client=market)  # type: ignore[arg-type]
    provide(app, Services(config=embedded_config(tmp_path), repo=repo, dev_chain=dev_chain))
    yield DevWorld(app, chain, market, repo)
    repo.close()


async def test_travel_moves_the_chain_forward(dev: DevWorld) -> None:
    async with client_for(dev.app) as api:
        r = await api.post("/debug/chain/travel", json={"timestamp": LATEST + 3600})
    assert r.status_code == 200, r.text
    assert r.json() == {"block": 8, "timestamp": LATEST + 3600}


@pytest.mark.parametrize(
    ("timestamp", "status"),
    [
        (2**256, 422),  # broke the embedded chain for good: every later request answered 500
        (2**64, 422),  # beyond the uint64 the contract keeps timestamps in
        (LATEST + MAX_TRAVEL + 1, 422),  # more than 100 years ahead
        (LATEST, 422),  # not later
        (-1, 422),
        (True, 400),
        (1.7e9, 400),
        (str(LATEST + 60), 400),
    ],
)
async def test_travel_is_bounded_and_a_refused_one_leaves_the_chain_untouched(
    dev: DevWorld, timestamp: object, status: int
) -> None:
    async with client_for(dev.app) as api:
        r = await api.post("/debug/chain/travel", json={"timestamp": timestamp})
        assert r.status_code == status, r.text
        assert dev.chain.travels == []
        furthest = await api.post("/debug/chain/travel", json={"timestamp": LATEST + MAX_TRAVEL})
    assert furthest.status_code == 200, furthest.text


async def test_travel_refuses_an_unknown_field_naming_it(dev: DevWorld) -> None:
    async with client_for(dev.app) as api:
        r = await api.post("/debug/chain/travel", json={"timestamp": LATEST + 60, "blocks": 3})
    assert r.status_code == 422
    assert "blocks: unknown field" in r.json()["error"]


# --- on a real node -----------------------------------------------------------------------------------------------


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


@pytest.mark.slow
async def test_a_huge_travel_is_refused_and_the_furthest_one_leaves_the_chain_working(node: Node) -> None:
    """``{"timestamp": 2**256}`` answered 200 and broke the embedded chain for good (every later request: 500
    ``Invalid Stack Item``)."""
    mp = node.marketplace
    assert mp is not None
    assert mp.chain is not None
    async with httpx.AsyncClient(base_url=f"{node.api_url}{API_PREFIX}", timeout=30) as api:
        head = (await api.get("/debug/chain")).json()
        for timestamp in (2**256, 2**64, head["timestamp"] + MAX_TRAVEL + 1):
            refused = await api.post("/debug/chain/travel", json={"timestamp": timestamp})
            assert refused.status_code == 422, refused.text
        assert (await api.get("/debug/chain")).json() == head

        furthest = head["timestamp"] + MAX_TRAVEL
        moved = await api.post("/debug/chain/travel", json={"timestamp": furthest})
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"block": head["block"] + 1, "timestamp": furthest}

        # The chain still works: it mines, and the contract takes a request whose deadlines lie beyond the jump.
        await mp.chain.mine()
        after = (await api.get("/debug/chain")).json()
        assert after["block"] == head["block"] + 2
        assert after["timestamp"] > furthest
        cid = (await api.post("/data", content=os.urandom(2 * 65536))).text
        posted = await api.post(f"/storage/request/{cid}", json=REQUEST)
        assert posted.status_code == 200, posted.text
        request_id = RequestId(bytes.fromhex(posted.text[2:]))
        assert await mp.market.request_state(request_id) == RequestState.NEW
