"""Where the marketplace lives on a chain, and how to put it there.

A :class:`Deployment` names the chain (``chain_id``), the Marketplace and TestToken contract addresses and the
block the marketplace was deployed in (event catch-up starts there). It round-trips through a small JSON file
(``codex-node deploy --output FILE`` writes it, ``--deployment FILE`` reads it); a bad file raises
:class:`DeploymentFileError` naming the file and the field.

:func:`deploy` deploys TestToken, then Marketplace (constructor: ``MarketplaceConfig``, token address) from the
compiled artifacts in ``market/artifacts/`` and waits for both receipts. :data:`DEV_CONFIG` is the dev
configuration (60 s periods) the embedded chain and the contract tests use.

A :data:`Deployer` is either a local account (``eth_account`` ``LocalAccount``: transactions are signed here
and sent raw) or the address of an account the node has unlocked (Hardhat's dev accounts: sent with
``eth_sendTransaction``). :func:`send` is the one place that tells them apart. This module is for one-off
deployment and funding; the node's own transactions go through ``market/txsender.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias, cast

import structlog

from codex_node.errors import DeploymentFileError, TransactionError
from codex_node.market.types import Address, CollateralConfig, MarketplaceConfig, ProofConfig

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from eth_typing import ChecksumAddress
    from web3 import AsyncWeb3
    from web3.contract.async_contract import AsyncContractConstructor, AsyncContractFunction
    from web3.types import TxParams, TxReceipt, Wei

log = structlog.get_logger(__name__)

Deployer: TypeAlias = "LocalAccount | str"
"""A local account (signs here) or the checksummed address of an account the node has unlocked."""

RECEIPT_TIMEOUT: Final = 120.0
"""Seconds to wait for a deployment transaction to be mined."""

DEV_CONFIG: Final = MarketplaceConfig(
    collateral=CollateralConfig(
        repair_reward_percentage=10,
        max_number_of_slashes=2,
        slash_percentage=20,
        validator_reward_percentage=20,
    ),
    proofs=ProofConfig(period=60, timeout=30, downtime=64, downtime_product=67, proof_samples=5),
    max_reservations=3,
    request_duration_limit=30 * 24 * 3600,
)
"""Dev configuration for local chains: 60 s proof periods, 30 s to mark a missed proof, 5 proof samples."""


def config_to_abi(config: MarketplaceConfig) -> tuple[Any, ...]:
    """``config`` as the constructor's ``MarketplaceConfig`` ABI tuple (same field order as the contract)."""
    c, p = config.collateral, config.proofs
    return (
        (c.repair_reward_percentage, c.max_number_of_slashes, c.slash_percentage, c.validator_reward_percentage),
        (p.period, p.timeout, p.downtime, p.downtime_product, p.proof_samples),
        (config.max_reservations,),
        config.request_duration_limit,
    )


# --- the deployment record ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """The marketplace on one chain. Addresses are checksummed."""

    chain_id: int
    marketplace: Address
    token: Address
    block_number: int
    """Block the marketplace was deployed in (no marketplace event is older)."""

    def to_json(self) -> str:
        doc = {
            "chainId": self.chain_id,
            "marketplace": self.marketplace,
            "token": self.token,
            "blockNumber": self.block_number,
        }
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "deployment") -> Deployment:
        """Parse :meth:`to_json`'s output; ``source`` (the file name) is named in every error."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise DeploymentFileError(f"{source} is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise DeploymentFileError(f"{source} does not hold a JSON object")
        return cls(
            chain_id=_int_field(doc, "chainId", source),
            marketplace=_address_field(doc, "marketplace", source),
            token=_address_field(doc, "token", source),
            block_number=_int_field(doc, "blockNumber", source),
        )

    def save(self, path: Path) -> None:
        """Write the JSON file (through a temporary file, so a crash never leaves half a file)."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DeploymentFileError(f"cannot read {path}: {e}") from None
        return cls.from_json(text, str(path))


def _int_field(doc: dict[str, Any], name: str, source: str) -> int:
    if name not in doc:
        raise DeploymentFileError(f"{source}: field '{name}' is missing")
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DeploymentFileError(f"{source}: field '{name}' must be a non-negative integer, got {value!r}")
    return value


def _address_field(doc: dict[str, Any], name: str, source: str) -> Address:
    if name not in doc:
        raise DeploymentFileError(f"{source}: field '{name}' is missing")
    value = doc[name]
    from eth_utils.address import is_address, is_checksum_address, to_checksum_address

    if not isinstance(value, str) or not value.startswith("0x") or not is_address(value):
        raise DeploymentFileError(f"{source}: field '{name}' is not an address (0x + 40 hex digits), got {value!r}")
    body = value[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(value):
        raise DeploymentFileError(f"{source}: field '{name}' has a wrong EIP-55 checksum: {value}")
    return Address(to_checksum_address(value))


# --- artifacts ------------------------------------------------------------------------------------------------


@cache
def artifact(name: str) -> dict[str, Any]:
    """The compiled contract ``name`` (``Marketplace`` or ``TestToken``): ``abi``, ``bytecode``, …"""
    text = resources.files("codex_node.market").joinpath("artifacts", f"{name}.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


# --- transactions ---------------------------------------------------------------------------------------------


def deployer_address(deployer: Deployer) -> str:
    return deployer if isinstance(deployer, str) else str(deployer.address)


async def send(
    w3: AsyncWeb3[Any],
    deployer: Deployer,
    call: AsyncContractFunction | AsyncContractConstructor,
    *,
    what: str,
    gas: int | None = None,
) -> TxReceipt:
    """Send ``call`` from ``deployer`` and wait for its receipt; a failed or unmined transaction raises
    :class:`TransactionError` naming ``what``. Gas is estimated unless given."""
    sender = deployer_address(deployer)
    params: TxParams = {"from": sender}
    if gas is not None:
        params["gas"] = gas
    try:
        if isinstance(deployer, str):
            tx_hash = await call.transact(params)
        else:
            params["nonce"] = await w3.eth.get_transaction_count(deployer.address, "pending")
            tx = await call.build_transaction(params)
            signed = deployer.sign_transaction(tx)  # type: ignore[arg-type]
            tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.1)
    except Exception as e:  # web3 raises many unrelated types (ValueError, Web3Exception, TimeExhausted, OSError)
        raise TransactionError(f"{what} from {sender} failed: {_one_line(e)}") from e
    if receipt["status"] != 1:
        raise TransactionError(f"{what} from {sender} reverted (transaction {tx_hash.to_0x_hex()})")
    return receipt


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


MIN_BLOCK_HEIGHT: Final = 257
"""The Marketplace constructor refuses to run below this block: proofs read the 256 preceding block hashes."""


async def ensure_block_height(w3: AsyncWeb3[Any]) -> None:
    """Make sure the next transaction runs at block >= :data:`MIN_BLOCK_HEIGHT`.

    A young dev chain is moved there with ``hardhat_mine`` (Hardhat; the embedded chain mines for itself);
    any other young chain is refused with :class:`TransactionError`, since the deployment would revert.
    """
    latest = await w3.eth.block_number
    missing = MIN_BLOCK_HEIGHT - 1 - latest
    if missing <= 0:
        return
    response = await w3.provider.make_request("hardhat_mine", [hex(missing)])
    if "error" in response:
        raise TransactionError(
            f"the chain is at block {latest}; the marketplace needs block {MIN_BLOCK_HEIGHT} or later "
            "(proofs read the 256 previous block hashes): mine blocks first"
        )
    log.info("mined blocks before deploying", blocks=missing)


async def deploy(
    w3: AsyncWeb3[Any],
    deployer: Deployer,
    config: MarketplaceConfig = DEV_CONFIG,
    *,
    gas: int | None = None,
) -> Deployment:
    """Deploy TestToken, then Marketplace(config, token), from ``deployer``; returns where they are."""
    token_artifact, market_artifact = artifact("TestToken"), artifact("Marketplace")
    chain_id = await w3.eth.chain_id
    await ensure_block_height(w3)
    token_factory = w3.eth.contract(abi=token_artifact["abi"], bytecode=token_artifact["bytecode"])
    receipt = await send(w3, deployer, token_factory.constructor(), what="deploying TestToken", gas=gas)
    token = str(receipt["contractAddress"])
    market_factory = w3.eth.contract(abi=market_artifact["abi"], bytecode=market_artifact["bytecode"])
    receipt = await send(
        w3, deployer, market_factory.constructor(config_to_abi(config), token), what="deploying Marketplace", gas=gas
    )
    deployment = Deployment(
        chain_id=chain_id,
        marketplace=Address(str(receipt["contractAddress"])),
        token=Address(token),
        block_number=int(receipt["blockNumber"]),
    )
    log.info(
        "marketplace deployed",
        chain_id=chain_id,
        marketplace=deployment.marketplace,
        token=deployment.token,
        block=deployment.block_number,
        deployer=deployer_address(deployer),
    )
    return deployment


async def mint(
    w3: AsyncWeb3[Any],
    deployment: Deployment,
    minter: Deployer,
    to: str,
    amount: int,
    *,
    gas: int | None = None,
) -> None:
    """Mint ``amount`` test tokens to ``to`` (on local chains TestToken lets anyone mint, elsewhere its deployer)."""
    token = w3.eth.contract(address=deployment.token, abi=artifact("TestToken")["abi"])  # type: ignore[call-overload]
    await send(w3, minter, token.functions.mint(to, amount), what=f"minting tokens to {to}", gas=gas)


FUND_TOKENS: Final = 10**24
"""Test tokens ``codex-node deploy --fund`` mints to each account (what the embedded chain gives its accounts)."""
MIN_ETHER: Final = 10**18
"""An account funded with ``--fund`` holding less ether than this (1 ether) is sent :data:`FUND_ETHER`."""
FUND_ETHER: Final = 10 * 10**18


@dataclass(frozen=True)
class Funded:
    """What :func:`fund` gave one account: tokens minted, and wei sent (0 when it had ether enough)."""

    account: Address
    tokens: int
    wei: int


async def fund(w3: AsyncWeb3[Any], deployment: Deployment, funder: Deployer, account: str) -> Funded:
    """Mint :data:`FUND_TOKENS` test tokens to ``account`` and, if it holds less than :data:`MIN_ETHER` (not a
    Hardhat dev account), send it :data:`FUND_ETHER` from ``funder`` for gas."""
    from eth_utils.address import to_checksum_address

    to = to_checksum_address(account)
    await mint(w3, deployment, funder, to, FUND_TOKENS)
    wei = 0
    if await w3.eth.get_balance(to) < MIN_ETHER:
        await send_ether(w3, funder, to, FUND_ETHER)
        wei = FUND_ETHER
    log.info("account funded", account=to, tokens=FUND_TOKENS, wei=wei)
    return Funded(Address(to), FUND_TOKENS, wei)


async def send_ether(w3: AsyncWeb3[Any], sender: Deployer, to: str, wei: int) -> None:
    """Send ``wei`` from ``sender`` to ``to`` and wait for the receipt (:class:`TransactionError` if it fails)."""
    what = f"sending {wei} wei to {to}"
    params: TxParams = {"from": deployer_address(sender), "to": cast("ChecksumAddress", to), "value": cast("Wei", wei)}
    try:
        if isinstance(sender, str):
            tx_hash = await w3.eth.send_transaction(params)
        else:
            params["nonce"] = await w3.eth.get_transaction_count(sender.address, "pending")
            params["gas"] = 21_000
            params["chainId"] = await w3.eth.chain_id
            params["gasPrice"] = await w3.eth.gas_price
            signed = sender.sign_transaction(params)  # type: ignore[arg-type]
            tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT, poll_latency=0.1)
    except Exception as e:  # web3 raises many unrelated types (ValueError, Web3Exception, TimeExhausted, OSError)
        raise TransactionError(f"{what} failed: {_one_line(e)}") from e
    if receipt["status"] != 1:
        raise TransactionError(f"{what} reverted (transaction {tx_hash.to_0x_hex()})")


async def token_balance(w3: AsyncWeb3[Any], deployment: Deployment, account: str) -> int:
    token = w3.eth.contract(address=deployment.token, abi=artifact("TestToken")["abi"])  # type: ignore[call-overload]
    return int(await token.functions.balanceOf(account).call())
