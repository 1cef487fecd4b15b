"""Three real nodes on 127.0.0.1: C, bootstrapped from B, learns A by peer exchange and finds who holds a CID."""

from __future__ import annotations

from pathlib import Path

import httpx

from codex_node.api.app import API_PREFIX
from codex_node.config import NodeConfig
from codex_node.data.cid import block_cid, parse_cid
from codex_node.node import Node
from codex_node.testing.fakeclock import FakeClock


def config(tmp_path: Path, name: str, *bootstrap: str) -> NodeConfig:
    return NodeConfig(data_dir=tmp_path / name, api_port=0, marketplace=False, bootstrap_nodes=bootstrap)


def url(node: Node) -> str:
    assert node.api_url is not None
    return node.api_url


async def test_c_learns_a_through_b_and_finds_the_holder_of_a_cid(tmp_path: Path) -> None:
    clock = FakeClock()  # the background rounds run once at start; the test drives the next ones
    async with Node(config(tmp_path, "a"), clock=clock) as a:
        async with httpx.AsyncClient(base_url=url(a) + API_PREFIX) as client:
            cid = parse_cid((await client.post("/data", content=b"held by A only" * 1000)).text)
        async with Node(config(tmp_path, "b", url(a)), clock=clock) as b:
            assert a.peers
            assert b.peers
            await b.peers.refresh()
            async with Node(config(tmp_path, "c", url(b)), clock=clock) as c:
                assert c.peers
                await c.peers.refresh()
                known = {e.peer_id: e for e in c.peers.entries()}
                assert set(known) == {a.peers.peer_id, b.peers.peer_id}
                assert known[a.peers.peer_id].verified  # C reached A itself, at the URL A's record names

                found = await c.peers.find(cid, limit=3)
                assert [p.peer_id for p in found] == [a.peers.peer_id]
                assert found[0].url == url(a) + API_PREFIX
                assert await c.peers.find(block_cid(b"held by nobody"), limit=3) == []

                # B told A about itself when it asked for A's peers (peer exchange goes both ways).
                assert b.peers.peer_id in {e.peer_id for e in a.peers.entries()}
                assert c.registry.get_sample_value("codex_peers_known") == 2
                assert c.registry.get_sample_value("codex_peer_have_queries_total", {"outcome": "have"}) == 1

            # A restarted C remembers both peers from its metadata store, before any round.
            async with Node(config(tmp_path, "c"), clock=clock) as again:
                assert again.peers
                assert {e.peer_id for e in again.peers.entries()} == {a.peers.peer_id, b.peers.peer_id}
                assert again.peers.peer_id == c.peers.peer_id  # the same key, from <data-dir>/peer.key
