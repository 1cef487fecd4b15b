"""Deployment record (JSON round trip, bad files), the dev configuration, and deploy() on an in-memory chain."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.providers.eth_tester import AsyncEthereumTesterProvider

from codex_node.cli import check_files
from codex_node.config import load_node_config
from codex_node.errors import ConfigError, DeploymentFileError, TransactionError
from codex_node.market.deployment import (
    DEV_CONFIG,
    MIN_BLOCK_HEIGHT,
    Deployment,
    artifact,
    config_to_abi,
    deploy,
    mint,
    token_balance,
)
from codex_node.market.types import Address
from codex_node.testing.mockmarket import MOCK_MARKET_CONFIG

MARKETPLACE = Address("0x2946259E0334f33A064106302415aD3391BeD384")
TOKEN = Address("0xF2E246BB76DF876Cef8b38ae84130F4F55De395b")
SAMPLE = Deployment(chain_id=31337, marketplace=MARKETPLACE, token=TOKEN, block_number=258)


def good_doc() -> dict[str, Any]:
    return {"chainId": 31337, "marketplace": MARKETPLACE, "token": TOKEN, "blockNumber": 258}


# --- the record ------------------------------------------------------------------------------------------------


def test_a_deployment_survives_a_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    SAMPLE.save(path)
    assert Deployment.load(path) == SAMPLE
    assert json.loads(path.read_text()) == good_doc()
    assert not list(tmp_path.glob("*.tmp"))


def test_lower_case_addresses_are_accepted_and_checksummed() -> None:
    doc = good_doc() | {"marketplace": MARKETPLACE.lower()}
    assert Deployment.from_json(json.dumps(doc)).marketplace == MARKETPLACE


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"chainId": None}, "field 'chainId' must be a non-negative integer"),
        ({"chainId": "31337"}, "field 'chainId' must be a non-negative integer"),
        ({"blockNumber": -1}, "field 'blockNumber' must be a non-negative integer"),
        ({"blockNumber": True}, "field 'blockNumber' must be a non-negative integer"),
        ({"marketplace": "0x1234"}, "field 'marketplace' is not an address"),
        ({"token": 12}, "field 'token' is not an address"),
        ({"token": TOKEN.replace("F2E", "f2E")}, "field 'token' has a wrong EIP-55 checksum"),
    ],
)
def test_a_bad_field_is_named_with_the_file(tmp_path: Path, change: dict[str, Any], fragment: str) -> None:
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(good_doc() | change))
    with pytest.raises(DeploymentFileError) as caught:
        Deployment.load(path)
    assert str(path) in str(caught.value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize("field", ["chainId", "marketplace", "token", "blockNumber"])
def test_a_missing_field_is_named(tmp_path: Path, field: str) -> None:
    path = tmp_path / "deployment.json"
    doc = good_doc()
    del doc[field]
    path.write_text(json.dumps(doc))
    with pytest.raises(DeploymentFileError, match=f"{path}: field '{field}' is missing"):
        Deployment.load(path)


@pytest.mark.parametrize(
    ("text", "fragment"), [("{not json", "is not JSON"), ("[1, 2]", "does not hold a JSON object")]
)
def test_a_file_that_is_not_a_json_object_is_refused(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "deployment.json"
    path.write_text(text)
    with pytest.raises(DeploymentFileError, match=fragment):
        Deployment.load(path)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(DeploymentFileError, match=r"cannot read .*nope\.json"):
        Deployment.load(tmp_path / "nope.json")


def test_the_deployment_flag_names_the_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    doc = good_doc()
    del doc["token"]
    path.write_text(json.dumps(doc))
    flags = {"eth_provider": "http://127.0.0.1:8545", "eth_account": MARKETPLACE, "deployment": str(path)}
    config = load_node_config(flags, {})  # configuration checks the JSON; the fields are the chain layer's
    with pytest.raises(ConfigError, match=r"--deployment: .*field 'token' is missing"):
        check_files(config)  # what `codex-node run` does before anything starts


# --- the dev configuration -------------------------------------------------------------------------------------


def test_the_dev_config_is_the_one_the_contract_tests_and_the_mock_use() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "contracts"))
    try:
        from marketplace_harness import dev_config
    finally:
        sys.path.pop(0)
    assert config_to_abi(DEV_CONFIG) == dev_config()
    assert DEV_CONFIG == MOCK_MARKET_CONFIG


# --- deploy on an in-memory eth-tester chain -------------------------------------------------------------------


@pytest.fixture
async def w3() -> AsyncWeb3[Any]:
    provider = AsyncEthereumTesterProvider()
    return AsyncWeb3(provider)


def mine(w3: AsyncWeb3[Any], blocks: int) -> None:
    w3.provider.ethereum_tester.mine_blocks(blocks)  # type: ignore[attr-defined]


async def test_deploy_from_an_unlocked_account_puts_both_contracts_on_chain(w3: AsyncWeb3[Any]) -> None:
    mine(w3, MIN_BLOCK_HEIGHT)
    deployer = (await w3.eth.accounts)[0]
    deployed = await deploy(w3, deployer)
    assert deployed.chain_id == await w3.eth.chain_id
    assert deployed.block_number == await w3.eth.block_number
    market = w3.eth.contract(address=deployed.marketplace, abi=artifact("Marketplace")["abi"])  # type: ignore[call-overload]
    assert await market.functions.token().call() == deployed.token
    assert tuple(await market.functions.configuration().call()) == config_to_abi(DEV_CONFIG)


async def test_deploy_and_mint_from_a_local_account_sign_locally(w3: AsyncWeb3[Any]) -> None:
    mine(w3, MIN_BLOCK_HEIGHT)
    local = Account.create()
    funder = (await w3.eth.accounts)[0]
    await w3.eth.send_transaction({"from": funder, "to": local.address, "value": 10**20})
    deployed = await deploy(w3, local)
    await mint(w3, deployed, local, funder, 1234)
    assert await token_balance(w3, deployed, funder) == 1234
    assert await w3.eth.get_transaction_count(local.address) == 3


async def test_deploying_on_a_chain_below_block_257_that_cannot_be_mined_is_refused(w3: AsyncWeb3[Any]) -> None:
    deployer = (await w3.eth.accounts)[0]
    with pytest.raises(TransactionError, match="needs block 257"):
        await deploy(w3, deployer)


async def test_a_reverted_deployment_raises_transaction_error_naming_the_step(w3: AsyncWeb3[Any]) -> None:
    mine(w3, MIN_BLOCK_HEIGHT)
    deployer = (await w3.eth.accounts)[0]
    bad = replace(DEV_CONFIG, collateral=replace(DEV_CONFIG.collateral, repair_reward_percentage=101))
    with pytest.raises(TransactionError, match="deploying Marketplace"):
        await deploy(w3, deployer, bad)
