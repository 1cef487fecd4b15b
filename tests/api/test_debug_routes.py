"""GET /debug/info and POST /debug/chronicles/loglevel through the real app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from codex_node import buildinfo, logutils
from codex_node.api.app import API_PREFIX, create_app
from codex_node.config import NodeConfig
from codex_node.market.types import ChainInfo

NIM_CODEX_KEYS = {"id", "addrs", "repo", "spr", "announceAddresses", "table", "codex"}


@dataclass
class FakeNode:
    node_id: str = "a1b2"
    api_url: str | None = "http://127.0.0.1:8080"
    chain: ChainInfo | None = None


@pytest.fixture(autouse=True)
def restore_level() -> Iterator[None]:
    saved = logutils._Level.value
    yield
    logutils._Level.value = saved


async def client_for(**kwargs: object) -> httpx.AsyncClient:
    app = create_app(**kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(config=NodeConfig(data_dir=tmp_path), node=FakeNode()) as c:
        yield c


async def test_debug_info_has_the_nim_codex_shape_plus_our_fields(client: httpx.AsyncClient, tmp_path: Path) -> None:
    r = await client.get(f"{API_PREFIX}/debug/info")
    assert r.status_code == 200
    info = r.json()
    assert set(info) >= NIM_CODEX_KEYS
    assert info["id"] == "a1b2"
    assert info["addrs"] == info["announceAddresses"] == ["http://127.0.0.1:8080"]
    assert info["repo"] == str(tmp_path)
    assert info["spr"] == ""
    assert info["table"] == {
        "localNode": {
            "nodeId": "a1b2",
            "peerId": "a1b2",
            "record": "",
            "address": "http://127.0.0.1:8080",
            "seen": False,
        },
        "nodes": [],
    }
    assert info["codex"] == {
        "version": buildinfo.version(),
        "revision": buildinfo.revision(),
        "contracts": buildinfo.contracts(),
    }
    assert info["marketplace"] == "embedded"
    assert info["chain"] is None


async def test_debug_info_shows_the_chain_once_the_node_knows_it(tmp_path: Path) -> None:
    chain = ChainInfo(chain_id=31337, marketplace_address="0xM", token_address="0xT", node_address="0xN")
    async with await client_for(config=NodeConfig(data_dir=tmp_path), node=FakeNode(chain=chain)) as c:
        info = (await c.get(f"{API_PREFIX}/debug/info")).json()
    assert info["chain"] == {
        "chainId": 31337,
        "marketplaceAddress": "0xM",
        "tokenAddress": "0xT",
        "nodeAddress": "0xN",
    }


async def test_debug_info_says_when_the_node_runs_without_a_marketplace(tmp_path: Path) -> None:
    async with await client_for(config=NodeConfig(data_dir=tmp_path, marketplace=False), node=FakeNode()) as c:
        assert (await c.get(f"{API_PREFIX}/debug/info")).json()["marketplace"] == "none"


async def test_debug_info_works_in_an_app_without_a_node() -> None:
    async with await client_for() as c:
        info = (await c.get(f"{API_PREFIX}/debug/info")).json()
    assert info["id"] == ""
    assert info["addrs"] == []


async def test_the_revision_is_this_checkouts_commit_or_unknown() -> None:
    rev = buildinfo.revision()
    assert rev == buildinfo.UNKNOWN or (len(rev) >= 7 and all(c in "0123456789abcdef" for c in rev))


@pytest.mark.parametrize(("given", "level"), [("debug", "debug"), ("TRACE", "debug"), ("warn", "warning")])
async def test_loglevel_changes_the_level_of_the_running_node(
    client: httpx.AsyncClient, given: str, level: str
) -> None:
    logutils.set_level("info")
    r = await client.post(f"{API_PREFIX}/debug/chronicles/loglevel", params={"level": given})
    assert r.status_code == 200
    assert r.json() == {"level": level}
    assert logutils.get_level() == level


async def test_an_unknown_loglevel_is_a_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    logutils.set_level("info")
    r = await client.post(f"{API_PREFIX}/debug/chronicles/loglevel", params={"level": "verbose"})
    assert r.status_code == 400
    assert "not a log level" in r.json()["error"]
    assert logutils.get_level() == "info"


async def test_a_loglevel_request_without_a_level_is_a_400(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{API_PREFIX}/debug/chronicles/loglevel")
    assert r.status_code == 400
    assert r.json() == {"error": "invalid request: query.level: Field required"}
