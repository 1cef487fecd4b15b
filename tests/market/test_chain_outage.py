"""The RPC endpoint answers errors or times out for a while (a loopback proxy in front of Hardhat): the node keeps
asking with back-off, loses no event, never sends a transaction twice, says the chain is unreachable in its log
and health reading, and recovers."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import structlog
from chainenv import TEST_OPTIONS
from chainfixtures import chain_snapshot, eventually, new_request
from eth_account import Account

from codex_node.market.onchain import OnChainMarket
from codex_node.market.provider import connect
from codex_node.market.types import RequestId, StorageRequested
from codex_node.monitor.chain import MarketProbe
from codex_node.testing.memorykv import MemoryKV
from tests.harness.rpcproxy import Mode, RpcProxy

pytestmark = pytest.mark.hardhat


class _NoSales:
    def agents(self) -> list[Any]:
        return []


class _NoReservations:
    def availability_totals(self) -> list[Any]:
        return []


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_an_rpc_outage_loses_no_event_sends_nothing_twice_and_is_reported(mode: Mode) -> None:
    async with chain_snapshot("hardhat") as (chain, w3, deployment), RpcProxy(chain.control.url) as proxy:  # type: ignore[attr-defined]
        client = OnChainMarket(w3, deployment, chain.accounts[0], MemoryKV(), options=TEST_OPTIONS)
        async with connect(proxy.url, request_timeout=0.5) as via:
            account = Account.create()  # signs locally, as a node with --eth-private-key does
            await w3.eth.wait_for_transaction_receipt(
                await w3.eth.send_transaction({"from": chain.deployer, "to": account.address, "value": 10**20})
            )
            host = OnChainMarket(via, deployment, account, MemoryKV(), options=TEST_OPTIONS)
            probe = MarketProbe(via, host, _NoSales(), _NoReservations(), timeout=2.0)  # type: ignore[arg-type]
            seen: Counter[RequestId] = Counter()

            async def on_request(event: StorageRequested) -> None:
                seen[event.request_id] += 1

            await host.subscribe(StorageRequested, on_request)
            await host.start()
            before = new_request(await client.get_signer())
            await client.request_storage(before)
            await eventually(lambda: seen[before.id] == 1)
            assert (await probe.read()).reachable

            # The outage starts right after the host's reservation reached the chain: its receipt cannot be read.
            target = new_request(await client.get_signer())
            await client.request_storage(target)
            proxy.fail(mode, after="eth_sendRawTransaction")
            with structlog.testing.capture_logs() as logs:
                reserving = asyncio.get_running_loop().create_task(host.reserve_slot(target.id, 0))
                during = [new_request(await client.get_signer()) for _ in range(3)]
                for request in during:
                    await client.request_storage(request)  # mined while the host cannot see the chain
                await eventually(lambda: proxy.refused >= 3)
                # The outage lasts until the event stream met it too (on a loaded machine its poll may come late).
                await eventually(lambda: "event stream poll failed" in [entry["event"] for entry in logs])
                reading = await probe.read()
                assert not reading.reachable
                assert reading.error
                assert not reserving.done()  # still waiting for its receipt, not failed
                proxy.recover()
                await reserving  # the reservation landed and the host learns it
                await eventually(lambda: all(seen[r.id] == 1 for r in during))
            assert proxy.forwarded["eth_sendRawTransaction"] == 1  # sent once
            assert (await probe.read()).reachable
            assert all(seen[r] == 1 for r in (before.id, target.id, *(r.id for r in during)))  # once each
            events = [entry["event"] for entry in logs]
            assert "chain unreachable while waiting for a receipt" in events
            assert "chain reachable again: event stream catching up" in events
            await host.stop()
        await client.stop()
