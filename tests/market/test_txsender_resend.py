"""A transaction the chain does not mine is sent again with its nonce: dropped by the node (Hardhat
``hardhat_dropTransaction``), or left in the pool because its fee cap fell below the base fee. Hardhat runs with
automine off here, so a transaction waits in the pool until the test mines a block.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from chainfixtures import chain_snapshot, eventually
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry

from codex_node.errors import TransactionError
from codex_node.market import deployment as deploying
from codex_node.market.reverts import ErrorDecoder
from codex_node.market.txsender import TxMetrics, TxSender
from tests.harness import hardhat

pytestmark = pytest.mark.hardhat

RESEND_AFTER = 0.3


@asynccontextmanager
async def manual_mining() -> AsyncIterator[tuple[Any, Any, Any, str, LocalAccount]]:
    """The shared Hardhat chain with automine off, and a fresh funded local account."""
    async with chain_snapshot("hardhat") as (chain, w3, deployment):
        url = chain.control.url  # type: ignore[attr-defined]
        account = Account.create()
        await w3.eth.wait_for_transaction_receipt(
            await w3.eth.send_transaction({"from": chain.deployer, "to": account.address, "value": 10**20})
        )
        hardhat.rpc(url, "evm_setAutomine", [False])
        try:
            yield chain, w3, deployment, url, account
        finally:
            hardhat.rpc(url, "evm_setAutomine", [True])


def approve_call(deployment: Any, amount: int) -> bytes:
    token = deploying.artifact("TestToken")["abi"]
    from web3 import Web3

    contract = Web3().eth.contract(abi=token)
    return bytes.fromhex(contract.encode_abi("approve", args=[deployment.marketplace, amount])[2:])


def mined_from(url: str, sender: str, first_block: int) -> list[dict[str, Any]]:
    latest = int(hardhat.rpc(url, "eth_blockNumber"), 16)
    found = []
    for number in range(first_block + 1, latest + 1):
        block = hardhat.rpc(url, "eth_getBlockByNumber", [hex(number), True])
        found += [tx for tx in block["transactions"] if to_checksum_address(tx["from"]) == sender]
    return found


def sender_for(w3: Any, account: LocalAccount, registry: CollectorRegistry) -> TxSender:
    return TxSender(
        w3,
        account,
        ErrorDecoder([]),
        metrics=TxMetrics(registry),
        poll_interval=0.02,
        receipt_timeout=15.0,
        resend_after=RESEND_AFTER,
    )


def resent(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("codex_chain_transactions_resent_total", {"function": "approve"}) or 0.0


async def test_a_dropped_transaction_is_sent_again_with_its_nonce_and_the_sequence_stays_whole() -> None:
    async with manual_mining() as (_, w3, deployment, url, account):
        registry = CollectorRegistry()
        sender = sender_for(w3, account, registry)
        data = approve_call(deployment, 7)
        first_block = int(hardhat.rpc(url, "eth_blockNumber"), 16)
        sending = asyncio.create_task(sender.send(deployment.token, data, label="approve"))
        job = await _job_broadcast(sender)
        assert hardhat.rpc(url, "hardhat_dropTransaction", ["0x" + job.hashes[0].hex()]) is True
        await eventually(lambda: resent(registry) >= 1)
        hardhat.rpc(url, "evm_mine")
        sent = await sending

        assert sent.nonce == 0
        mined = mined_from(url, account.address, first_block)
        assert [(int(tx["nonce"], 16), tx["input"]) for tx in mined] == [(0, "0x" + data.hex())]
        # The next transaction takes the next nonce: no gap, no reuse.
        following = asyncio.create_task(sender.send(deployment.token, approve_call(deployment, 8), label="approve"))
        await _job_broadcast(sender)
        hardhat.rpc(url, "evm_mine")
        assert (await following).nonce == 1
        assert [int(tx["nonce"], 16) for tx in mined_from(url, account.address, first_block)] == [0, 1]
        await sender.aclose()


async def test_a_transaction_priced_out_of_the_pool_is_sent_again_with_a_higher_fee() -> None:
    async with manual_mining() as (_, w3, deployment, url, account):
        registry = CollectorRegistry()
        sender = sender_for(w3, account, registry)
        data = approve_call(deployment, 9)
        first_block = int(hardhat.rpc(url, "eth_blockNumber"), 16)
        sending = asyncio.create_task(sender.send(deployment.token, data, label="approve"))
        job = await _job_broadcast(sender)
        offered = int(job.params["maxFeePerGas"])
        # The base fee jumps above what the transaction offers: the next blocks leave it in the pool.
        hardhat.rpc(url, "hardhat_setNextBlockBaseFeePerGas", [hex(10 * offered)])
        hardhat.rpc(url, "evm_mine")
        assert mined_from(url, account.address, first_block) == []
        async with asyncio.timeout(10):
            while not sending.done():
                await eventually(lambda: resent(registry) >= 1)
                hardhat.rpc(url, "evm_mine")
                await asyncio.sleep(RESEND_AFTER / 2)
        sent = await sending

        mined = mined_from(url, account.address, first_block)
        assert [(int(tx["nonce"], 16), tx["input"]) for tx in mined] == [(0, "0x" + data.hex())]
        assert int(mined[0]["maxFeePerGas"], 16) > 8 * offered  # outbid: the chain's fee, not the old one
        assert sent.tx_hash in job.hashes[1:]
        await sender.aclose()


async def test_a_nonce_used_by_another_transaction_of_the_key_fails_the_send() -> None:
    async with manual_mining() as (_, w3, deployment, url, account):
        sender = sender_for(w3, account, CollectorRegistry())
        sending = asyncio.create_task(sender.send(deployment.token, approve_call(deployment, 1), label="approve"))
        job = await _job_broadcast(sender)
        hardhat.rpc(url, "hardhat_dropTransaction", ["0x" + job.hashes[0].hex()])
        # The same key, used elsewhere, spends nonce 0 on something else.
        other = account.sign_transaction({**job.params, "to": account.address, "data": b"", "gas": 21_000})
        hardhat.rpc(url, "eth_sendRawTransaction", ["0x" + bytes(other.raw_transaction).hex()])
        hardhat.rpc(url, "evm_mine")
        with pytest.raises(TransactionError, match="used by another transaction"):
            await sending
        await sender.aclose()


async def _job_broadcast(sender: TxSender) -> Any:
    """The job of ``sender``'s one unfinished send, once its first copy was broadcast."""

    def broadcast() -> bool:
        return any(job.tx_hash is not None and not job.abandoned for job in sender._tasks.values())

    await eventually(broadcast)
    return next(job for job in sender._tasks.values() if job.tx_hash is not None)
