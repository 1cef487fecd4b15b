"""Transactions mined on blocks that left the chain (Hardhat ``evm_revert``, as a reorganisation does) leave no nonce
gap: the sender reads the account's nonce again when no other send holds one."""

from __future__ import annotations

import pytest
from chainfixtures import chain_snapshot
from eth_account import Account
from structlog.testing import capture_logs
from test_txsender_resend import approve_call, mined_from

from codex_node.market.reverts import ErrorDecoder
from codex_node.market.txsender import TxSender
from tests.harness import hardhat

pytestmark = pytest.mark.hardhat


async def test_nonces_of_transactions_on_blocks_that_left_the_chain_are_used_again() -> None:
    async with chain_snapshot("hardhat") as (chain, w3, deployment):
        url = chain.control.url  # type: ignore[attr-defined]
        account = Account.create()
        await w3.eth.wait_for_transaction_receipt(
            await w3.eth.send_transaction({"from": chain.deployer, "to": account.address, "value": 10**20})
        )
        sender = TxSender(w3, account, ErrorDecoder([]), poll_interval=0.02, receipt_timeout=15.0)
        before = hardhat.rpc(url, "evm_snapshot")
        first_block = int(hardhat.rpc(url, "eth_blockNumber"), 16)
        assert [
            (await sender.send(deployment.token, approve_call(deployment, n), label="approve")).nonce for n in (1, 2)
        ] == [0, 1]
        assert hardhat.rpc(url, "evm_revert", [before]) is True  # both blocks leave the chain

        with capture_logs() as logs:
            again = await sender.send(deployment.token, approve_call(deployment, 3), label="approve")
        assert again.nonce == 0  # not 2: that would wait behind a gap forever
        assert [int(tx["nonce"], 16) for tx in mined_from(url, account.address, first_block)] == [0]
        assert [e["chain"] for e in logs if e["event"].startswith("the account's nonce went back")] == [0]
        assert (await sender.send(deployment.token, approve_call(deployment, 4), label="approve")).nonce == 1
        await sender.aclose()
