"""The node builds the block exchange when it has peers (``Node.peers``), and keeps the local source without."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from codex_node.api.app import API_PREFIX
from codex_node.blockexchange.repair import RepoSlotRepairer
from codex_node.blockexchange.slotsource import NetworkSlotDataSource
from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.data.slots import BLOCK_SIZE
from codex_node.node import Node
from codex_node.peers.part import Peers
from codex_node.testing.staticpeers import StaticProviders


async def test_a_node_with_peers_sells_slots_from_the_network_and_serves_the_network_routes(tmp_path: Path) -> None:
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, dev_block_time=0))
    node.peers = StaticProviders([])
    async with node:
        mp = node.marketplace
        assert mp is not None
        source = mp.sales.context.data_source
        assert isinstance(source, NetworkSlotDataSource)
        assert isinstance(source._repairer, RepoSlotRepairer)  # a slot in Repair is rebuilt, not refused
        assert "block fetcher" in node.parts
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API_PREFIX}") as api:
            cid = (await api.post("/data", content=b"hello")).text
            answer = await api.post(f"/data/{cid}/network")  # held here: nothing to fetch
    assert answer.status_code == 200
    assert answer.json()["manifest"]["datasetSize"] == 5


async def test_every_node_runs_the_peers_part_so_sales_can_fetch_from_the_network(tmp_path: Path) -> None:
    # The peers part is always built (peers/part.py): a node with no peer yet finds none and sells what it holds,
    # and one that learns peers later (peer exchange) can fetch without a restart.
    node = Node(NodeConfig(data_dir=tmp_path / "data", api_port=0, dev_block_time=0))
    async with node:
        mp = node.marketplace
        assert mp is not None
        assert isinstance(node.peers, Peers)
        assert isinstance(mp.sales.context.data_source, NetworkSlotDataSource)
        assert mp.network is not None


async def test_a_node_without_marketplace_fetches_a_dataset_from_a_peer_over_the_network_routes(
    tmp_path: Path,
) -> None:
    # The block exchange belongs to the node, not to the marketplace: --no-marketplace nodes serve the
    # /data/{cid}/network routes too (they answered 503 when the marketplace built the fetcher).
    holder = Node(NodeConfig(data_dir=tmp_path / "holder", api_port=0, marketplace=False))
    async with holder:
        assert holder.api_url is not None
        fetcher_config = NodeConfig(
            data_dir=tmp_path / "fetcher",
            api_port=0,
            marketplace=False,
            bootstrap_nodes=(f"{holder.api_url}{API_PREFIX}",),
        )
        data = os.urandom(3 * BLOCK_SIZE + 7)
        async with node_api(holder) as api:
            cid = (await api.post("/data", content=data)).text
        async with Node(fetcher_config) as fetcher, node_api(fetcher) as api:
            assert fetcher.marketplace is None
            assert (await api.get(f"/data/{cid}/network/manifest")).json()["manifest"]["datasetSize"] == len(data)
            assert (await api.post(f"/data/{cid}/network")).status_code == 200
            assert fetcher.network is not None
            await fetcher.network.wait(parse_cid(cid))
            assert (await api.get(f"/data/{cid}")).content == data  # stored: served from this node's repo


@asynccontextmanager
async def node_api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{node.api_url}{API_PREFIX}", trust_env=False) as api:
        yield api
