"""OnChainMarket beyond the shared suite: our types at the boundary, approvals under concurrency, account views,
and the market on the node's embedded chain (the default when no --eth-provider is given)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from chainenv import OnChainEnv
from chainfixtures import WAIT, chain_snapshot, eventually, market, new_request
from prometheus_client import CollectorRegistry

from codex_node.errors import ContractRevertError
from codex_node.market.embedded import EmbeddedChain
from codex_node.market.onchain import MarketOptions, OnChainMarket
from codex_node.market.types import Request, SlotFilled, StorageRequested, slot_id
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

BOTH_CHAINS = ["eth-tester", pytest.param("hardhat", marks=pytest.mark.hardhat)]


async def allowance(market_: OnChainMarket) -> int:
    token = market_._shared.token
    call = token.functions.allowance(market_.sender.address, market_.deployment.marketplace).call()
    return int(await call)


async def test_views_return_plain_python_values_not_web3_types() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        host = client.for_account(chain.accounts[1])
        env = OnChainEnv("types", chain, w3, client, [host], client, deployment.marketplace)
        request = env.new_request(await client.get_signer())
        await client.request_storage(request)
        await host.reserve_slot(request.id, 0)
        await host.fill_slot(request.id, 0, await env.valid_proof(request, 0), request.ask.collateral_per_slot)
        sid = slot_id(request.id, 0)

        fetched = await client.get_request(request.id)
        assert fetched == request
        assert fetched is not None
        assert type(fetched.content.cid) is bytes
        assert type(fetched.nonce) is bytes
        assert type(fetched.client) is str
        assert [type(s) for s in await host.my_slots()] == [bytes]
        assert [type(r) for r in await client.my_requests()] == [bytes]
        challenge = await host.get_challenge(sid)
        assert type(challenge) is bytes
        assert len(challenge) == 32
        assert type(await host.get_host(sid)) is str
        assert type(await host.get_pointer(sid)) is int
        assert type(await client.request_state(request.id)).__name__ == "RequestState"
        active = await host.get_active_slot(sid)
        assert active is not None
        assert active.request == request
        await host.stop()
        await client.stop()


@pytest.mark.parametrize("chain_name", BOTH_CHAINS)
async def test_concurrent_requests_of_one_client_each_get_their_allowance(chain_name: str) -> None:
    """Approvals are read-modify-write (allowance + amount): without the per-account spend lock, with a node slow
    enough for the callers to overlap, two approvals overwrite each other and a post fails for want of allowance
    (or its approval runs out of gas). Complements test_onchain_spending.py with Hardhat and a slow broadcast."""
    async with chain_snapshot(chain_name) as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        signer = await client.get_signer()
        before = await allowance(client)
        broadcast = client.sender._broadcast

        async def slow_broadcast(job: Any, params: Any, nonce: int) -> bytes:
            await asyncio.sleep(0.05)  # a slow node: the other callers read the allowance meanwhile
            return await broadcast(job, params, nonce)

        client.sender._broadcast = slow_broadcast  # type: ignore[method-assign]
        requests = [new_request(signer) for _ in range(5)]
        await asyncio.gather(*(client.request_storage(r) for r in requests))
        assert set(await client.my_requests()) >= {r.id for r in requests}
        assert await allowance(client) == before  # each post used exactly what its approval added
        await client.stop()


async def test_account_views_share_one_stream_and_one_clock() -> None:
    async with chain_snapshot("eth-tester") as (chain, w3, deployment):
        client = market(chain, w3, deployment)
        host = client.for_account(chain.accounts[1])
        assert host.events is client.events
        assert host.clock is client.clock
        assert await host.get_signer() != await client.get_signer()
        with pytest.raises(RuntimeError):
            await host.start()  # only the market that owns the stream starts it

        seen: list[StorageRequested] = []

        async def on_request(event: StorageRequested) -> None:
            seen.append(event)

        await client.start()
        await host.subscribe(StorageRequested, on_request)
        request = new_request(await client.get_signer())
        await client.request_storage(request)
        await eventually(lambda: len(seen) == 1)
        assert seen[0].request_id == request.id
        await host.stop()
        await client.stop()


async def test_the_market_runs_on_the_embedded_chain(tmp_path: Path) -> None:
    """The node's default chain: a client posts, the node's account reserves and fills with a real proof, the
    events arrive and the clock follows the chain's time."""
    # The system clock, as the node runs it: py-evm stamps the block an estimate runs in with the wall clock,
    # so a fake clock far from it would make estimates see another time than the chain.
    chain = EmbeddedChain(tmp_path / "chain", block_time=0, registry=CollectorRegistry())
    await chain.start()
    try:
        options = MarketOptions(poll_interval=0.05, receipt_poll_interval=0.01)
        node = OnChainMarket(chain.w3, chain.deployment, chain.node_account, MemoryKV(), options=options)
        client = node.for_account(chain.client_account)
        events: list[Any] = []

        async def record(event: Any) -> None:
            events.append(event)

        await node.subscribe(StorageRequested, record)
        await node.subscribe(SlotFilled, record)
        await node.start()
        env = OnChainEnv("embedded", None, chain.w3, client, [node], client, chain.deployment.marketplace)  # type: ignore[arg-type]
        request: Request = env.new_request(await client.get_signer())
        await client.request_storage(request)
        await node.reserve_slot(request.id, 0)
        # A proof holds as long as its challenge: not across a period's end, nor across the pointer's wrap (every
        # 256 blocks). Build it early in a period with the pointer far from the wrap, as InitialProving does (the
        # pointer moves with each period; 8 tries all failing is (1/4)^8). Without this, ~1 run in 60 failed.
        sid = slot_id(request.id, 0)
        periodicity = await node.periodicity()
        for _ in range(8):
            now = await chain.latest_timestamp()
            await chain.travel_to(periodicity.period_end(periodicity.period_of(now)) + 1)
            if await node.get_pointer(sid) <= 192:
                break
        challenge_proof = await env._proof(request, 0)  # no chain control here: the env's helpers that mine are unused
        await node.fill_slot(request.id, 0, challenge_proof, request.ask.collateral_per_slot)
        await eventually(lambda: len(events) == 2)
        assert [type(e).__name__ for e in events] == ["StorageRequested", "SlotFilled"]
        assert await node.my_slots() == [slot_id(request.id, 0)]

        later = node.clock.now() + 3600
        waiting = asyncio.create_task(node.clock.wait_until(later))
        await chain.travel_to(later)
        node.events.wake()
        async with asyncio.timeout(WAIT):
            await waiting
        await node.stop()
        await client.stop()
    finally:
        await chain.stop()


async def test_embedded_gas_estimates_run_at_the_chain_time_not_the_wall_clock(tmp_path: Path) -> None:
    """A chain whose clock is far behind the wall clock: an estimate must see the chain's next block time.

    Before the request expires, the client's withdrawal must be refused already at the estimate (as the mined call
    would be); an estimate stamped with the wall clock (years after the expiry) would let it through.
    """
    clock = FakeClock(1_600_000_000)
    chain = EmbeddedChain(tmp_path / "chain", block_time=0, clock=clock, registry=CollectorRegistry())
    await chain.start()
    try:
        options = MarketOptions(poll_interval=0.05, receipt_poll_interval=0.01)
        node = OnChainMarket(chain.w3, chain.deployment, chain.node_account, MemoryKV(), options=options)
        client = node.for_account(chain.client_account)
        await node.start()
        request = new_request(await client.get_signer())
        await client.request_storage(request)
        expires_at = await client.request_expires_at(request.id)
        sent = await chain.w3.eth.get_transaction_count(chain.client_account.address)
        with pytest.raises(ContractRevertError):
            await client.withdraw_funds(request.id)
        assert await chain.w3.eth.get_transaction_count(chain.client_account.address) == sent  # refused unsent
        await chain.travel_to(expires_at + 1)
        await client.withdraw_funds(request.id)  # now expired: the estimate and the mined call agree
        await node.stop()
        await client.stop()
    finally:
        await chain.stop()
