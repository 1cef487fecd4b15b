"""TxSender on eth-tester: typed reverts before and after mining, nonce reuse after a failed broadcast,
cancellation before and after the nonce is taken, metrics. (Concurrency on Hardhat: test_txsender_concurrency.py.)
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aiohttp import ClientResponseError, RequestInfo
from chainfixtures import chain_snapshot, eventually, market, new_request
from multidict import CIMultiDict, CIMultiDictProxy
from prometheus_client import CollectorRegistry
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import Web3RPCError
from yarl import URL

from codex_node.errors import ChainError, ContractRevertError, SlotReservationNotAllowedError, TransactionError
from codex_node.market.onchain import OnChainMarket
from codex_node.market.txsender import TxMetrics, TxSender
from codex_node.market.types import RequestId, SlotId
from codex_node.testing.memorykv import MemoryKV


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def nonce_of(market_: OnChainMarket, block: str = "latest") -> int:
    w3 = market_._shared.w3
    return int(await w3.eth.get_transaction_count(market_.sender.address, block))  # type: ignore[arg-type]


async def test_a_revert_found_by_the_estimate_is_typed_and_costs_no_nonce() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        host = market(chain, w3, deployment, account=1)
        before = await nonce_of(host)
        with pytest.raises(ContractRevertError) as caught:
            await host.free_slot(SlotId(b"\x42" * 32))
        assert caught.value.error_name == "SlotIsFree"
        assert await nonce_of(host) == before
        await host.stop()


async def test_a_transaction_that_fails_on_chain_is_replayed_for_its_error() -> None:
    """The estimate passed (here: was skipped) but the mined transaction reverted: the replay names the error."""
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        host = market(chain, w3, deployment, account=1)

        async def no_estimate(params: Any) -> int:
            return 200_000

        w3.eth.estimate_gas = no_estimate  # type: ignore[method-assign]
        before = await nonce_of(host)
        with pytest.raises(ContractRevertError) as caught:
            await host.free_slot(SlotId(b"\x42" * 32))
        assert caught.value.error_name == "SlotIsFree"
        assert await nonce_of(host) == before + 1  # mined (and paid for), so the nonce is used
        request = new_request(await market(chain, w3, deployment).get_signer())
        await host.can_reserve_slot(request.id, 0)  # the sender is still usable
        await host.stop()


async def test_a_broadcast_the_node_refuses_leaves_its_nonce_to_the_next_transaction() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        send_raw = w3.eth.send_raw_transaction
        calls = 0

        async def flaky(raw: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise Web3RPCError("the node said no")
            return await send_raw(raw)

        w3.eth.send_raw_transaction = flaky  # type: ignore[method-assign]
        first_nonce = await nonce_of(client)
        token = client._shared.token
        data = bytes.fromhex(token.encode_abi("approve", args=[deployment.marketplace, 1])[2:])
        with pytest.raises(TransactionError, match="refused"):
            await client.sender.send(deployment.token, data, label="approve")
        sent = await client.sender.send(deployment.token, data, label="approve")
        assert sent.nonce == first_nonce
        assert await nonce_of(client) == first_nonce + 1
        await client.stop()


async def test_a_caller_cancelled_before_its_nonce_sends_nothing_and_after_it_still_lands() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        sender = client.sender
        send_raw = w3.eth.send_raw_transaction
        gate = asyncio.Event()
        broadcasts: list[bytes] = []

        async def gated(raw: Any) -> Any:
            broadcasts.append(bytes(raw))
            await gate.wait()  # the first broadcast hangs, holding the nonce lock
            return await send_raw(raw)

        w3.eth.send_raw_transaction = gated  # type: ignore[method-assign]
        token = client._shared.token
        data = bytes.fromhex(token.encode_abi("approve", args=[deployment.marketplace, 1])[2:])
        start = await nonce_of(client)

        holding = asyncio.create_task(sender.send(deployment.token, data, label="approve"))
        await eventually(lambda: len(broadcasts) == 1)
        waiting = asyncio.create_task(sender.send(deployment.token, data, label="approve"))
        # Give the second send time to queue on the lock; if it has not got there yet it has no nonce either.
        await asyncio.sleep(0.05)
        holding.cancel()  # has a nonce: its broadcast must still complete
        waiting.cancel()  # has none: must never be sent
        gate.set()
        for task in (holding, waiting):
            with pytest.raises(asyncio.CancelledError):
                await task
        await eventually(lambda: sender.in_flight == 0)
        assert len(broadcasts) == 1
        assert await nonce_of(client) == start + 1  # the abandoned transaction was mined
        after = await sender.send(deployment.token, data, label="approve")
        assert after.nonce == start + 1  # no gap
        await client.stop()


async def test_two_concurrent_conflicting_sends_give_one_success_one_typed_error_and_no_gap() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        host = client.for_account(chain.accounts[1])
        request = new_request(await client.get_signer())
        await client.request_storage(request)
        start = await nonce_of(host)
        results = await asyncio.gather(
            host.reserve_slot(request.id, 0), host.reserve_slot(request.id, 0), return_exceptions=True
        )
        assert sum(r is None for r in results) == 1
        assert [type(r) for r in results if r is not None] == [SlotReservationNotAllowedError]
        await host.reserve_slot(request.id, 1)
        assert await nonce_of(host) == await nonce_of(host, "pending")
        assert await nonce_of(host) in (start + 2, start + 3)  # the loser may have been mined (and failed) or not
        await host.stop()
        await client.stop()


async def test_metrics_count_sent_and_failed_transactions_by_function() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        registry = CollectorRegistry()
        metrics = TxMetrics(registry)
        client = market(chain, w3, deployment)
        sender = TxSender(w3, chain.accounts[0], client._shared.errors, metrics=metrics, poll_interval=0.01)
        token = client._shared.token
        ok = bytes.fromhex(token.encode_abi("approve", args=[deployment.marketplace, 5])[2:])
        await sender.send(deployment.token, ok, label="approve")
        bad = bytes.fromhex(client._shared.marketplace.encode_abi("withdrawFunds", args=[RequestId(b"\x42" * 32)])[2:])
        with pytest.raises(ContractRevertError):
            await sender.send(deployment.marketplace, bad, label="withdrawFunds")
        assert sample(registry, "codex_chain_transactions_sent_total", function="approve") == 1
        assert sample(registry, "codex_chain_transactions_failed_total", function="withdrawFunds", reason="revert") == 1
        assert sample(registry, "codex_chain_transactions_pending") == 0
        await sender.aclose()
        with pytest.raises(TransactionError, match="closed"):
            await sender.send(deployment.token, ok, label="approve")
        await client.stop()


async def test_a_node_that_does_not_answer_is_a_chain_error_not_a_revert() -> None:
    async with chain_snapshot("eth-tester") as (chain, _, deployment):
        with socket.socket() as s:  # a loopback port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        dead = AsyncWeb3(AsyncHTTPProvider(f"http://127.0.0.1:{port}", request_kwargs={"timeout": 2}))
        host = OnChainMarket(dead, deployment, chain.accounts[1], MemoryKV())
        with pytest.raises(ChainError) as caught:
            await host.slot_state(SlotId(b"\x42" * 32))
        assert not isinstance(caught.value, ContractRevertError)
        with pytest.raises(ChainError):
            await host.reserve_slot(RequestId(b"\x42" * 32), 0)
        await host.stop()
        await dead.provider.disconnect()  # type: ignore[attr-defined]


@pytest.mark.parametrize("reached_the_node", [True, False])
async def test_a_broadcast_whose_answer_is_lost_is_watched_and_lands_once(reached_the_node: bool) -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        sender = TxSender(w3, chain.accounts[0], client._shared.errors, poll_interval=0.01, resend_after=0.2)
        send_raw = w3.eth.send_raw_transaction
        broadcasts = 0

        async def answer_lost(raw: Any) -> Any:
            nonlocal broadcasts
            broadcasts += 1
            if broadcasts == 1:
                if reached_the_node:
                    await send_raw(raw)
                raise ConnectionResetError("connection reset by peer")
            return await send_raw(raw)

        w3.eth.send_raw_transaction = answer_lost  # type: ignore[method-assign]
        data = bytes.fromhex(client._shared.token.encode_abi("approve", args=[deployment.marketplace, 3])[2:])
        start = await nonce_of(client)
        sent = await sender.send(deployment.token, data, label="approve")
        assert sent.nonce == start
        assert await nonce_of(client) == start + 1  # one transaction mined
        assert broadcasts == (1 if reached_the_node else 2)  # sent again (the same copy) only if it never arrived
        assert (await sender.send(deployment.token, data, label="approve")).nonce == start + 1
        await sender.aclose()
        await client.stop()


async def test_a_lost_broadcast_that_never_reached_the_node_is_sent_again_before_the_next_nonce() -> None:
    """An outage answered the first broadcast with an HTTP error (it never reached the node): the next send must not
    broadcast the nonce after it first (a chain that cannot queue out-of-order nonces refuses it, and the gap blocks
    every later transaction), nor may the lost one wait ``resend_after`` (90 s in production) to be sent again."""
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        sender = TxSender(w3, chain.accounts[0], client._shared.errors, poll_interval=0.01, resend_after=3600)
        send_raw = w3.eth.send_raw_transaction
        broadcasts: list[bytes] = []

        async def first_lost(raw: Any) -> Any:
            broadcasts.append(bytes(raw))
            if len(broadcasts) == 1:
                raise ClientResponseError(
                    RequestInfo(URL("http://127.0.0.1"), "POST", CIMultiDictProxy(CIMultiDict())), (), status=500
                )
            return await send_raw(raw)

        w3.eth.send_raw_transaction = first_lost  # type: ignore[method-assign]
        token = client._shared.token
        data = [bytes.fromhex(token.encode_abi("approve", args=[deployment.marketplace, n])[2:]) for n in (3, 4)]
        start = await nonce_of(client)
        first = asyncio.ensure_future(sender.send(deployment.token, data[0], label="approve"))
        await eventually(lambda: len(broadcasts) >= 1)
        second = await asyncio.wait_for(sender.send(deployment.token, data[1], label="approve"), 10)
        assert (await asyncio.wait_for(first, 10)).nonce == start
        assert second.nonce == start + 1
        assert await nonce_of(client) == start + 2  # both mined, once each
        assert broadcasts == [broadcasts[0], broadcasts[0], broadcasts[2]]  # the same copy again, then the next
        await sender.aclose()
        await client.stop()


async def test_a_lost_broadcast_is_sent_again_as_soon_as_the_node_answers() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        sender = TxSender(w3, chain.accounts[0], client._shared.errors, poll_interval=0.01, resend_after=3600)
        send_raw = w3.eth.send_raw_transaction
        broadcasts = 0

        async def first_lost(raw: Any) -> Any:
            nonlocal broadcasts
            broadcasts += 1
            if broadcasts == 1:
                raise ConnectionResetError("connection reset by peer")
            return await send_raw(raw)

        w3.eth.send_raw_transaction = first_lost  # type: ignore[method-assign]
        data = bytes.fromhex(client._shared.token.encode_abi("approve", args=[deployment.marketplace, 3])[2:])
        start = await nonce_of(client)
        sent = await asyncio.wait_for(sender.send(deployment.token, data, label="approve"), 10)
        assert sent.nonce == start
        assert broadcasts == 2
        assert await nonce_of(client) == start + 1
        await sender.aclose()
        await client.stop()
