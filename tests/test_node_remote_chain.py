"""A node on a remote chain (``--eth-provider``): a Hardhat node on loopback with the marketplace deployed.

Covers the remote branch of ``marketplace.py``: the deployment from ``--deployment FILE`` or from
``--marketplace-address`` (token read from the contract), an unlocked ``--eth-account`` or an
``--eth-private-key`` file, the chain shown by ``/debug/info``, and the refusal to start a data dir on another
chain (a restarted Hardhat node has a new genesis).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3

from codex_node.config import NodeConfig
from codex_node.errors import ChainMismatchError, ConfigError
from codex_node.market.deployment import DEV_CONFIG, Deployment, deploy, mint
from codex_node.market.types import Address
from codex_node.node import Node
from tests.harness import hardhat

pytestmark = pytest.mark.hardhat

API = "/api/codex/v1"
# Hardhat's second well-known dev account (public test key: for a local dev chain only).
DEV_KEY_1 = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
DEV_ADDRESS_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def start_hardhat() -> hardhat.HardhatNode:
    node = hardhat.HardhatNode()
    node.start()
    node.accounts = [to_checksum_address(a) for a in node.accounts]  # Hardhat answers them in lower case
    return node


@pytest.fixture
def chain() -> Iterator[hardhat.HardhatNode]:
    node = start_hardhat()
    yield node
    node.stop()


async def deploy_to(url: str, deployer: str) -> Deployment:
    w3: AsyncWeb3[Any] = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        return await deploy(w3, deployer, DEV_CONFIG)
    finally:
        await w3.provider.disconnect()


async def mint_to(url: str, deployment: Deployment, minter: str, to: str, amount: int) -> None:
    w3: AsyncWeb3[Any] = AsyncWeb3(AsyncHTTPProvider(url))
    try:
        await mint(w3, deployment, minter, to, amount)
    finally:
        await w3.provider.disconnect()


@pytest.fixture
async def deployment(chain: hardhat.HardhatNode, tmp_path: Path) -> Path:
    path = tmp_path / "deployment.json"
    (await deploy_to(chain.url, chain.accounts[0])).save(path)
    return path


async def test_a_node_runs_on_a_remote_chain_with_a_deployment_file(
    chain: hardhat.HardhatNode, deployment: Path, tmp_path: Path
) -> None:
    config = NodeConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        eth_provider=chain.url,
        eth_account=chain.accounts[2],
        deployment=deployment,
        eth_confirmations=2,
    )
    async with Node(config) as node:
        assert node.marketplace is not None
        assert node.marketplace.market.options.confirmations == 2  # --eth-confirmations reaches the event stream
        expected = Deployment.load(deployment)
        async with httpx.AsyncClient(base_url=f"{node.api_url}{API}") as api:
            info = (await api.get("/debug/info")).json()
            assert info["marketplace"] == "remote"
            assert info["chain"] == {
                "chainId": hardhat.HARDHAT_CHAIN_ID,
                "marketplaceAddress": expected.marketplace,
                "tokenAddress": expected.token,
                "nodeAddress": chain.accounts[2],
            }
            body = {"totalSize": 65536, "duration": 3600, "minPricePerBytePerSecond": "1", "totalCollateral": "10"}
            refused = await api.post("/sales/availability", json=body)  # the node's account holds no tokens yet
            assert refused.status_code == 422
            assert "the wallet holds 0 tokens" in refused.json()["error"]
            await mint_to(chain.url, expected, chain.accounts[0], chain.accounts[2], 10)
            assert (await api.post("/sales/availability", json=body)).status_code == 201
            assert (await api.get("/debug/chain")).status_code == 404  # the dev routes are for the embedded chain


async def test_a_node_finds_the_token_from_the_marketplace_address_and_signs_with_a_key_file(
    chain: hardhat.HardhatNode, deployment: Path, tmp_path: Path
) -> None:
    key = tmp_path / "node.key"
    key.write_text(DEV_KEY_1 + "\n")
    key.chmod(0o600)
    expected = Deployment.load(deployment)
    config = NodeConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        eth_provider=chain.url,
        eth_private_key=key,
        marketplace_address=expected.marketplace,
    )
    async with Node(config) as node:
        assert node.chain is not None
        assert node.chain.token_address == expected.token
        assert node.chain.node_address == DEV_ADDRESS_1
        assert node.marketplace is not None
        assert node.marketplace.market.deployment.block_number == expected.block_number  # found by the node


async def test_an_address_without_our_marketplace_is_refused_naming_the_flag(
    chain: hardhat.HardhatNode, tmp_path: Path
) -> None:
    config = NodeConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        eth_provider=chain.url,
        eth_account=chain.accounts[0],
        marketplace_address=chain.accounts[1],  # an account, not a contract
    )
    node = Node(config)
    with pytest.raises(ConfigError) as e:
        await node.start()
    assert e.value.flag == "--marketplace-address"
    assert node.parts == []


async def test_a_deployment_file_of_a_chain_that_was_restarted_is_refused_naming_the_flag(
    chain: hardhat.HardhatNode, tmp_path: Path
) -> None:
    stale = tmp_path / "stale.json"
    Deployment(
        chain_id=hardhat.HARDHAT_CHAIN_ID,
        marketplace=Address(chain.accounts[3]),  # nothing deployed there on this chain
        token=Address(chain.accounts[4]),
        block_number=300,
    ).save(stale)
    config = NodeConfig(
        data_dir=tmp_path / "data", api_port=0, eth_provider=chain.url, eth_account=chain.accounts[0], deployment=stale
    )
    node = Node(config)
    with pytest.raises(ConfigError, match="no contract there") as e:
        await node.start()
    assert e.value.flag == "--deployment"


async def test_a_data_dir_of_one_chain_refuses_another(
    chain: hardhat.HardhatNode, deployment: Path, tmp_path: Path
) -> None:
    def config(url: str, deployment_file: Path) -> NodeConfig:
        return NodeConfig(
            data_dir=tmp_path / "data",
            api_port=0,
            eth_provider=url,
            eth_account=chain.accounts[2],
            deployment=deployment_file,
        )

    async with Node(config(chain.url, deployment)):
        pass
    other = start_hardhat()  # a new chain: same id, a new genesis (and the same marketplace address)
    try:
        redeployed = tmp_path / "redeployed.json"
        (await deploy_to(other.url, other.accounts[0])).save(redeployed)
        node = Node(config(other.url, redeployed))
        with pytest.raises(ChainMismatchError, match="genesis block hash"):
            await node.start()
        assert node.parts == []
    finally:
        other.stop()
