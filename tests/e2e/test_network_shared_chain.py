"""Several nodes in one process on one embedded chain (``tests/harness/network.py``), before the network exists.

Each node has its own data dir, REST API on 127.0.0.1 and account on the shared chain. The first test shows the
sharing itself: every node signs with its own account, every node's event stream delivers every request, a time
jump through one node's dev route moves every node's on-chain clock, and a node that stops leaves the chain to the
others. The second is a whole sale between two nodes: the client uploads and requests storage (nodes=3,
tolerance=1), the host, given the same dataset locally (a stand-in for the block exchange: it erasure-codes the
same bytes itself, which yields the very slots the request names), fills every slot, proves, and is paid; the
client's escrow and refund and the host's payout are checked against the chain's own record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from e2ekit import (
    COLLATERAL_PER_BYTE,
    DURATION,
    PROVING,
    dataset,
    expected_payout,
    fill_times,
    marketplace_events,
    proven_periods,
    request_body,
    sales_in,
)

from codex_node.data.cid import parse_cid
from codex_node.data.erasure import ErasureParams
from codex_node.market.types import RequestId, RequestState, SlotState, slot_id
from codex_node.purchasing.protect import ProtectedDataset, protect_dataset
from tests.harness.network import PERIODS, NetNode, Network, network

pytestmark = pytest.mark.slow

NODES, TOLERANCE = 3, 1
WALL_LIMIT = 150.0


def availability_for(slot_size: int) -> dict[str, Any]:
    """Room and collateral for every slot of the request and one more."""
    return {
        "totalSize": (NODES + 1) * slot_size,
        "duration": 2 * DURATION,
        "minPricePerBytePerSecond": "1",
        "totalCollateral": str((NODES + 1) * slot_size * COLLATERAL_PER_BYTE),
    }


def request_id(pid: str) -> RequestId:
    return RequestId(bytes.fromhex(pid.removeprefix("0x")))


def requests_seen(net: Network) -> list[float | None]:
    """How many StorageRequested events each node's event stream delivered."""
    return [
        n.node.registry.get_sample_value("codex_chain_events_total", {"event": "StorageRequested"})
        for n in net.nodes.values()
    ]


async def _seen_once(node: NetNode) -> bool:
    return node.node.registry.get_sample_value("codex_chain_events_total", {"event": "StorageRequested"}) == 1.0


async def give_dataset(node: NetNode, data: bytes) -> ProtectedDataset:
    """Upload ``data`` to ``node`` and erasure-code it there as ``POST /storage/request`` would (nodes=3,
    tolerance=1): the node then holds every slot of a request for the same data. Stands in for the block exchange."""
    cid = parse_cid(await node.upload(data))
    repo = node.node.repo
    assert repo is not None
    return await protect_dataset(repo, cid, await repo.get_manifest(cid), ErasureParams.from_request(NODES, TOLERANCE))


async def test_nodes_on_one_chain_sign_apart_see_every_request_and_follow_its_time(tmp_path: Path) -> None:
    async with network(tmp_path) as net:
        a, b, c = [await net.add_node(name) for name in ("a", "b", "c")]
        signers = [await n.market.get_signer() for n in (a, b, c)]
        assert signers == [a.address, b.address, c.address]
        assert len(set(signers)) == 3
        assert net.chain.head_listeners == 1 + 3  # the harness's, and each node's event stream wake-up
        for n in (a, b, c):
            info = (await n.api.get("/debug/info")).json()
            assert info["chain"]["nodeAddress"] == n.address
            assert info["chain"]["marketplaceAddress"] == net.chain.deployment.marketplace
            assert await n.balance() > 0

        # A request of a's account and one of b's: every node's stream delivers both, once.
        pids = [await n.request_storage(await n.upload(dataset()), request_body()) for n in (a, b)]

        async def both_seen() -> bool:
            return requests_seen(net) == [2.0, 2.0, 2.0]

        await net.wait_for(both_seen, what="both requests delivered to every node")
        for pid, owner in zip(pids, (a, b), strict=True):
            for n in (a, b, c):
                request = await n.market.get_request(request_id(pid))
                assert request is not None
                assert request.client == owner.address
        assert (await a.purchase(pids[0]))["state"] == "submitted"
        assert (await a.api.get("/storage/purchases")).json() == [pids[0]]  # b's purchase is b's alone

        # Time travel through c's dev route moves every node's on-chain clock.
        target = await net.now() + 2 * PERIODS.seconds
        moved = await c.api.post("/debug/chain/travel", json={"timestamp": target})
        assert moved.status_code == 200, moved.text
        await net.clocks_at(target)
        assert {n.market.clock.now() >= target for n in (a, b, c)} == {True}

        # A node that stops leaves the chain running for the others.
        await net.stop_node("c")
        assert [n.name for n in net.running] == ["a", "b"]
        assert net.chain.head_listeners == 1 + 2  # a stopped node no longer listens
        await net.advance_periods(1)
        assert (await a.api.get("/debug/chain")).json()["timestamp"] == await net.now()
        third = await b.request_storage(await b.upload(dataset()), request_body())

        async def third_seen() -> bool:
            return requests_seen(net)[:2] == [3.0, 3.0]

        await net.wait_for(third_seen, what="the third request delivered to a and b")
        assert (await b.purchase(third))["state"] == "submitted"

        # Started again on its data dir, c catches up from its cursor: the one request it missed, and the time.
        url = c.url
        await net.restart_node("c")
        assert c.running
        assert c.url == url
        assert net.chain.head_listeners == 1 + 3
        assert await c.market.get_signer() == c.address
        await net.wait_for(lambda: _seen_once(c), what="c's catch-up delivered the third request")
        await net.clocks_at(await net.now())


async def test_a_client_buys_storage_from_a_host_node_and_the_balances_add_up(tmp_path: Path) -> None:
    began = time.monotonic()
    async with network(tmp_path) as net:
        await _buy_from_another_node(net)
    assert time.monotonic() - began < WALL_LIMIT


async def _buy_from_another_node(net: Network) -> None:
    client = await net.add_node("client")
    host = await net.add_node("host")
    data = dataset()
    cid = await client.upload(data)
    given = await give_dataset(host, data)
    await host.offer(availability_for(given.manifest.slot_size))
    client_before, host_before = await client.balance(), await host.balance()

    pid = await client.request_storage(cid, request_body())
    rid = request_id(pid)
    request = await client.market.get_request(rid)
    assert request is not None
    assert parse_cid((await client.purchase(pid))["request"]["content"]["cid"]) == given.cid  # the host's slots
    assert await client.balance() == client_before - request.ask.max_price  # the price, held by the marketplace
    sids = [slot_id(rid, i) for i in range(NODES)]

    # The host reserves, secures its local copy, waits for a period's end to prove, and fills every slot.
    await net.wait_for(
        lambda: sales_in(host.api, sids, "SaleInitialProving", PROVING), what="every slot in InitialProving"
    )
    await net.until(lambda: sales_in(host.api, sids, PROVING), what="every slot filled by the host", periods=4)
    assert await client.market.request_state(rid) == RequestState.STARTED

    async def started() -> bool:
        return bool((await client.purchase(pid))["state"] == "started")

    await net.wait_for(started, what="the client's purchase started")

    # Two periods of proofs, each reaching the chain within its period.
    for _ in range(2):
        period = await net.advance_periods(1)

        async def proven(p: int = period) -> bool:
            events = await marketplace_events(net.chain.w3, net.chain.deployment)
            return all(p in proven_periods(events, s, after=p - 1) for s in sids)

        await net.wait_for(proven, what=f"the host's proofs of every slot in period {period}")

    # The end: the host is paid, the client's purchase finishes and withdraws what was not paid out.
    end = await client.market.request_end(rid)
    await net.travel_to(end + 1)
    await net.wait_for(lambda: sales_in(host.api, sids, "SaleFinished"), what="every sale Finished")

    async def finished() -> bool:
        return bool((await client.purchase(pid))["state"] == "finished")

    await net.wait_for(finished, what="the client's purchase finished")
    for s in sids:
        assert await client.market.slot_state(s) == SlotState.PAID
    events = await marketplace_events(net.chain.w3, net.chain.deployment)
    filled = fill_times(events, rid)
    assert sorted(filled) == list(range(NODES))
    payout = expected_payout(request.ask, end, filled)
    assert 0 < payout < request.ask.max_price

    async def host_paid() -> int | None:
        earned = await host.balance() - host_before
        return earned if earned == payout else None

    await net.wait_for(host_paid, what=f"the host paid {payout} (its collateral back)")

    async def client_refunded() -> bool:
        return await client.balance() == client_before - payout

    await net.wait_for(client_refunded, what="the client's leftover withdrawn")
    assert (await host.api.get("/debug/books")).json() == {"balanced": True, "problems": []}
