"""The peer routes through a real node on 127.0.0.1: identity, record, connect, peer exchange, "have", access."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.services import Services, provide
from codex_node.config import NodeConfig
from codex_node.data.cid import block_cid
from codex_node.node import Node
from codex_node.peers.identity import NodeKey
from codex_node.peers.part import Peers
from codex_node.peers.record import decode_record, make_record
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakepeerwire import FakePeerWire
from codex_node.testing.memorykv import MemoryKV

TOKEN = "peer-routes-test-token-0123456789"


def config(tmp_path: Path, name: str, **more: object) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / name, api_port=0, marketplace=False, **more)  # type: ignore[arg-type]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with Node(config(tmp_path, "n"), clock=FakeClock()) as n:
        yield n


def api(node: Node, **more: object) -> httpx.AsyncClient:
    assert node.api_url is not None
    return httpx.AsyncClient(base_url=node.api_url + API_PREFIX, **more)  # type: ignore[arg-type]


async def test_peerid_and_spr_answer_text_or_json_as_asked(node: Node) -> None:
    assert node.peers is not None
    async with api(node) as c:
        assert (await c.get("/peerid")).text == node.peers.peer_id
        assert (await c.get("/peerid", headers={"accept": "application/json"})).json() == {"id": node.peers.peer_id}
        text = (await c.get("/spr")).text
        as_json = (await c.get("/spr", headers={"accept": "application/json, text/plain"})).json()
    record = decode_record(text)
    assert as_json == {"spr": text}
    assert record.peer_id == node.peers.peer_id
    assert record.urls == (f"{node.api_url}{API_PREFIX}",)


async def test_spr_is_503_when_the_node_has_nothing_to_announce() -> None:
    app = create_app()
    peers = Peers(NodeKey.generate(), MemoryKV(), FakeClock(), CollectorRegistry(), wire=FakePeerWire())
    provide(app, Services(peers=peers))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        r = await c.get(f"{API_PREFIX}/spr")
    assert r.status_code == 503
    assert "--api-announce-url" in r.json()["error"]


async def test_connect_reaches_a_peer_at_its_address_and_refuses_what_is_wrong(node: Node, tmp_path: Path) -> None:
    async with Node(config(tmp_path, "other"), clock=FakeClock()) as other:
        assert other.peers is not None
        assert node.peers is not None
        target = other.peers.peer_id
        async with api(node) as c:
            malformed = await c.get("/connect/not-a-peer-id", params={"addrs": other.api_url})
            unknown = await c.get(f"/connect/{target}")
            ok = await c.get(f"/connect/{target}", params={"addrs": other.api_url})
            known = await c.get(f"/connect/{target}")  # now from its kept record
            stranger = NodeKey.generate().peer_id
            mismatch = await c.get(f"/connect/{stranger}", params={"addrs": other.api_url})
            own = await c.get(f"/connect/{node.peers.peer_id}")
            bad_addr = await c.get(f"/connect/{target}", params={"addrs": "ftp://x"})
    assert malformed.status_code == 400
    assert "peer id" in malformed.json()["error"]
    assert unknown.status_code == 400
    assert "?addrs=" in unknown.json()["error"]
    assert ok.status_code == 200
    assert ok.text == "Successfully connected to peer"
    assert known.status_code == 200
    assert mismatch.status_code == 400
    assert f"is peer {target}, not {stranger}" in mismatch.json()["error"]
    assert own.status_code == 400
    assert "own peer id" in own.json()["error"]
    assert bad_addr.status_code == 400
    entry = node.peers.table.get(target)
    assert entry is not None
    assert entry.verified


async def test_peer_exchange_learns_the_callers_record_and_refuses_a_forged_one(node: Node) -> None:
    assert node.peers is not None
    caller = make_record(NodeKey.generate(), ("http://127.0.0.9:1/api/codex/v1",), 1)
    async with api(node) as c:
        assert (await c.get("/peers", params={"spr": caller.text})).json() == {"peers": []}
        forged = await c.get("/peers", params={"spr": caller.text[:-4] + "AAAA"})
    assert caller.peer_id in node.peers.table
    assert forged.status_code == 400
    assert "signature" in forged.json()["error"]


async def test_have_answers_which_cids_are_held_and_bounds_the_question(node: Node) -> None:
    async with api(node) as c:
        cid = (await c.post("/data", content=b"some bytes" * 100)).text
        absent = block_cid(b"absent").text
        r = await c.get("/have", params={"cid": [cid, absent, cid]})
        too_many = await c.get("/have", params={"cid": [absent] * 65})
        not_a_cid = await c.get("/have", params={"cid": "xyz"})
    assert r.json() == {"have": [cid]}
    assert too_many.status_code == 400
    assert "64" in too_many.json()["error"]
    assert not_a_cid.status_code == 400


async def test_peer_routes_need_no_token_while_the_operators_routes_do(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    os.chmod(token, 0o600)
    async with Node(config(tmp_path, "t", api_token=token), clock=FakeClock()) as n, api(n) as c:
        for path in ("/peerid", "/spr", "/peers", f"/have?cid={block_cid(b'x').text}"):
            assert (await c.get(path)).status_code == 200, path
        assert (await c.get(f"/connect/{NodeKey.generate().peer_id}")).status_code == 401
        assert (await c.get("/debug/info")).status_code == 401
        assert (await c.get("/spaces")).status_code == 401  # a path next to the open ones stays closed


async def test_the_announced_host_is_answered(tmp_path: Path) -> None:
    # Peers reach the node by the name its record announces: that Host is allowed without --api-allowed-host.
    more = {"api_announce_urls": ("http://node.example.org:8080",)}
    async with Node(config(tmp_path, "h", **more), clock=FakeClock()) as n, api(n) as c:
        assert (await c.get("/peerid", headers={"host": "node.example.org:8080"})).status_code == 200
        assert (await c.get("/peerid", headers={"host": "other.example.org"})).status_code == 421


async def test_debug_info_shows_the_peer_id_record_and_table(node: Node, tmp_path: Path) -> None:
    async with Node(config(tmp_path, "other"), clock=FakeClock()) as other:
        assert other.peers is not None
        assert node.peers is not None
        async with api(node) as c:
            await c.get(f"/connect/{other.peers.peer_id}", params={"addrs": other.api_url})
            info = (await c.get("/debug/info")).json()
    assert info["peerId"] == node.peers.peer_id
    assert node.peers.record is not None
    assert info["spr"] == node.peers.record.text
    assert info["announceAddresses"] == list(node.peers.record.urls)
    assert info["table"]["localNode"]["peerId"] == node.peers.peer_id
    assert [(p["peerId"], p["seen"]) for p in info["table"]["nodes"]] == [(other.peers.peer_id, True)]
