"""Issue #10, "Done means": a storage request survives a failing host through the validator and a repair.

In one test process (``tests/harness/network.py``: one embedded chain shared by every node, each node with its own
data dir, account and REST API on 127.0.0.1):

1. a client uploads a dataset and requests storage with nodes=3, tolerance=1;
2. three hosts, each offering room for exactly one slot and knowing only the client (``--bootstrap-node``),
   fetch their slots from the client over HTTP, fill and prove; one of them runs with
   ``--simulate-proof-failures 1`` (a wrong proof every period);
3. a validator (``--validator``) marks that host's missing proofs until it is slashed
   ``maxNumberOfSlashes`` (2) times and its slot is freed;
4. a fourth host, started after the request started, repairs the freed slot from the two honest hosts (the client
   dropped its own copy of the slots, and the failing host is stopped) and fills it with the discounted collateral;
5. the request finishes; every host still holding a slot is paid what the contract owes it; the failing host lost
   its collateral; the validator got its share of the slashes; the client gets the rest back.

The second test is the other "Done means" point: a peer serving corrupted blocks gets no byte stored, and the
slots come from the honest peer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from e2ekit import COLLATERAL_PER_BYTE, DURATION, dataset, fill_times, marketplace_events, request_body

from codex_node.data.cid import Cid, parse_cid
from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.data.protected import ProtectedManifest
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotFreed, SlotId, SlotState, slot_id
from codex_node.purchasing.protect import protect_dataset
from codex_node.stores.blockmeta import BlockMeta
from tests.harness.network import NetNode, Network, network

pytestmark = pytest.mark.slow

NODES, TOLERANCE = 3, 1
WALL_LIMIT = 300.0
SLASHES = DEV_CONFIG.collateral.max_number_of_slashes  # 2: the second missed proof frees the slot
SLASH_PERCENT = DEV_CONFIG.collateral.slash_percentage
VALIDATOR_PERCENT = DEV_CONFIG.collateral.validator_reward_percentage
REPAIR_PERCENT = DEV_CONFIG.collateral.repair_reward_percentage
LONG_REQUEST = 3 * DURATION
"""The repair scenario's request duration: each wait moves the chain a period on when its step is slow (a loaded
machine), up to ~15 periods before the repaired slot proves; the request must not end first."""


def slot_size_of(size: int) -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), size).slot_size


def one_slot(slot_size: int) -> dict[str, Any]:
    """Room and collateral for exactly one slot: each host fills one, never two."""
    return {
        "totalSize": slot_size,
        "duration": 2 * LONG_REQUEST,
        "minPricePerBytePerSecond": "1",
        "totalCollateral": str(slot_size * COLLATERAL_PER_BYTE),
    }


def request_id(pid: str) -> RequestId:
    return RequestId(bytes.fromhex(pid.removeprefix("0x")))


async def host_of(net: Network, sid: SlotId) -> NetNode | None:
    """The node the chain names as the slot's host (``None``: free, or a node not in the network)."""
    host = await net.running[0].market.get_host(sid)  # any node's market reads the one chain
    return next((n for n in net.nodes.values() if n.address == host), None)


async def test_a_request_survives_a_failing_host_through_validation_and_repair(tmp_path: Path) -> None:
    began = time.monotonic()
    async with network(tmp_path) as net:
        await _scenario(net)
    assert time.monotonic() - began < WALL_LIMIT


async def _scenario(net: Network) -> None:
    data = dataset()
    slot_size = slot_size_of(len(data))
    client = await net.add_node("client")
    boot = (client.url,)
    honest = [await net.add_node(name, availability=one_slot(slot_size), bootstrap_nodes=boot) for name in "ab"]
    failing = await net.add_node("c", availability=one_slot(slot_size), bootstrap_nodes=boot, simulate_proof_failures=1)
    validator = await net.add_node("validator", bootstrap_nodes=boot, validator=True)
    hosts = [*honest, failing]

    cid = await client.upload(data)
    before = {n.name: await n.balance() for n in [client, *hosts, validator]}
    pid = await client.request_storage(cid, request_body() | {"duration": LONG_REQUEST})
    rid = request_id(pid)
    request = await client.market.get_request(rid)
    assert request is not None
    ask = request.ask
    sids = [slot_id(rid, i) for i in range(NODES)]

    # --- 2. three hosts fetch their slots from the client over HTTP, fill and prove -----------------------------
    # The hosts' sales secure their slots through the network slot data source: the client is the only node
    # holding the data (nobody gave the hosts a copy).
    async def every_slot_filled() -> bool:
        return all([await client.market.slot_state(s) == SlotState.FILLED for s in sids])

    await net.until(every_slot_filled, what="every slot filled by a host", periods=4)
    assert await client.market.request_state(rid) == RequestState.STARTED
    holders = {s: await host_of(net, s) for s in sids}
    assert sorted(h.name for h in holders.values() if h is not None) == ["a", "b", "c"]  # one slot each
    lost = next(s for s, h in holders.items() if h is failing)
    lost_index = sids.index(lost)
    for host in hosts:  # every host fetched at least its whole slot from the client, block by verified block
        fetched = host.node.registry.get_sample_value("codex_blockexchange_bytes_fetched_total")
        assert fetched is not None
        assert fetched >= slot_size  # more when a host lost the race for a slot it had started to download

    # The client drops its own copy of the slots (each slot manifest with its blocks), so that the repair below
    # can only use the hosts' slots.
    repo = client.node.repo
    assert repo is not None
    pcid = parse_cid((await client.purchase(pid))["request"]["content"]["cid"])
    protected = ProtectedManifest.from_block(pcid, await repo.get_block(pcid))
    for slot_manifest in protected.slot_manifests:
        await repo.del_block(slot_manifest)

    # --- 3. the fourth host joins; the validator marks the failing host until it is slashed and freed ----------
    repairer = await net.add_node("d", availability=one_slot(slot_size), bootstrap_nodes=(client.url, honest[0].url))
    before["d"] = await repairer.balance()  # funded when it joined; no token moved since

    async def freed() -> bool:
        return (
            await client.market.slot_state(lost) in (SlotState.REPAIR, SlotState.FILLED)
            and (await host_of(net, lost)) is not failing
        )

    # Each period the failing host's proof is refused; once that period has ended the validator marks it missing
    # (the contract allows it for proofs.timeout = 30 s of chain time after the period's end; advance_periods lands
    # 1 s after an end, and the chain mines a block a wall second, so the validator has ~29 s).
    for marked in range(1, SLASHES + 1):

        async def slashed(n: int = marked) -> bool:
            return await client.market.missing_proofs(lost) >= n or await freed()

        await net.until(slashed, what=f"the failing host's missed proof #{marked} marked by the validator", periods=3)
        if marked == 1:
            # The failing host goes away (its proofs keep missing): stopped before its slot is freed, it cannot
            # take its own freed slot back (it still holds the data, and its availability gets the bytes back).
            await net.stop_node("c")
    await net.wait_for(freed, what="the failing host's slot freed after its second slash")
    events = await marketplace_events(net.chain.w3, net.chain.deployment)
    assert any(isinstance(e.event, SlotFreed) and e.event.slot_index == lost_index for e in events)

    # --- 4. the fourth host repairs the slot from the two honest hosts ----------------------------------------
    # d's sale of the freed slot (SlotFreed → its slot queue, the slot in Repair) rebuilds the slot from K=2 other
    # slots fetched from a and b, checks it against the slot root, and fills it with the discounted collateral.
    async def repaired() -> bool:
        return (await host_of(net, lost)) is repairer and await client.market.slot_state(lost) == SlotState.FILLED

    await net.until(repaired, what="the freed slot repaired and filled by d", periods=3)

    async def repairer_proving() -> bool:
        sale = await repairer.sale(lost)
        return sale is not None and "SaleProving" in [t["to"] for t in sale["history"]]

    await net.until(repairer_proving, what="d proving the repaired slot", periods=2)
    repaired_bytes = repairer.node.registry.get_sample_value("codex_slot_repair_rebuilt_bytes_total")
    assert repaired_bytes == slot_size  # rebuilt from the other slots: the slot's own blocks existed nowhere
    # InitialProving built the slot tree from the cell leaves the repair had hashed, not by hashing the slot again.
    assert repairer.node.registry.get_sample_value("codex_proof_trees_from_offered_leaves_total") == 1

    # --- 5. the request finishes; the hosts holding a slot are paid; the client gets the rest back -------------
    end = await client.market.request_end(rid)
    await net.travel_to(end + 1)
    holding = [*honest, repairer]

    async def all_paid() -> bool:
        return all([await client.market.slot_state(s) == SlotState.PAID for s in sids])

    await net.wait_for(all_paid, what="every slot paid out")

    async def purchase_finished() -> bool:
        return (await client.purchase(pid))["state"] == "finished"

    await net.wait_for(purchase_finished, what="the client's purchase finished and withdrawn")

    events = await marketplace_events(net.chain.w3, net.chain.deployment)
    filled = fill_times(events, rid)  # the last fill of each slot: the repaired slot's is d's
    names = {s: "d" if s == lost else getattr(holders[s], "name", "?") for s in sids}
    payouts = {names[s]: (end - filled[i]) * ask.price_per_slot_per_second for i, s in enumerate(sids)}
    slashed_amount = ask.collateral_per_slot * SLASH_PERCENT // 100
    expected = {
        "a": payouts["a"],
        "b": payouts["b"],
        # A repairing host posts (100 - repair reward)% of the collateral (rounded down, as the contract does) and
        # gets all of it back.
        "d": payouts["d"] + ask.collateral_per_slot - ask.collateral_per_slot * (100 - REPAIR_PERCENT) // 100,
        "c": -ask.collateral_per_slot,  # slashed twice, then the rest forfeited when freed
        "validator": SLASHES * (slashed_amount * VALIDATOR_PERCENT // 100),
        # The client paid maxPrice; the freed host's unpaid time came back, d's time was charged anew.
        "client": -sum(payouts.values()),
    }

    flows: dict[str, int] = {}

    async def balances_settled() -> bool:
        flows.update({n.name: await n.balance() - before[n.name] for n in [client, *holding, validator]})
        flows["c"] = await client.market.token_balance(failing.address) - before["c"]  # c is stopped
        return flows == expected

    try:
        await net.wait_for(balances_settled, what="every account's token flow as the contract says")
    except AssertionError:
        assert flows == expected  # says which account differs
    for node in holding:
        assert (await node.api.get("/debug/books")).json() == {"balanced": True, "problems": []}


# --- a lying peer cannot get a wrong byte stored ----------------------------------------------------------------


async def test_a_peer_serving_corrupted_blocks_gets_no_byte_stored_and_the_slots_come_from_honest_peers(
    tmp_path: Path,
) -> None:
    """Issue #10, second "Done means" point, over real nodes: a host whose peers are an honest client and a liar
    holding the same slots (but serving flipped bytes) fills every slot; every block it stored matches its CID, and
    the liar is counted as misbehaving and avoided."""
    async with network(tmp_path) as net:
        data = dataset()
        client = await net.add_node("client")
        liar = await net.add_node("liar")
        cid = await client.upload(data)
        # The liar holds the dataset too (uploaded and erasure-coded itself, as the client's request does: the same
        # protected dataset, the same slots), so it answers "have" for every slot; but every block it serves to a
        # peer has one byte flipped.
        liar_repo = liar.node.repo
        assert liar_repo is not None
        liar_cid = parse_cid(await liar.upload(data))
        assert liar_cid.text == cid
        protected_here = await protect_dataset(
            liar_repo, liar_cid, await liar_repo.get_manifest(liar_cid), ErasureParams.from_request(NODES, TOLERANCE)
        )
        honest_read = liar_repo.read_blocks_into
        served_corrupt = 0
        # The client serves nothing until the liar has served something: whichever peer the host asks first, the
        # liar is asked (and caught) before the host gets its blocks from the client.
        client_repo = client.node.repo
        assert client_repo is not None
        client_metas = client_repo.block_metas

        def client_after_the_liar(cids: Sequence[Cid]) -> list[BlockMeta | None]:
            return client_metas(cids) if served_corrupt else [None] * len(cids)

        client_repo.block_metas = client_after_the_liar  # type: ignore[method-assign]

        def lying_read(
            cids: Sequence[Cid], dests: Sequence[memoryview], *, metas: Sequence[BlockMeta | None] | None = None
        ) -> list[bool]:
            nonlocal served_corrupt
            read = honest_read(cids, dests, metas=metas)
            for ok, dest in zip(read, dests, strict=True):
                if ok:
                    dest[0] ^= 0xFF
                    served_corrupt += 1
            return read

        liar_repo.read_blocks_into = lying_read  # type: ignore[method-assign]  # what the peers' block routes read
        host = await net.add_node(
            "host",
            availability={
                "totalSize": NODES * slot_size_of(len(data)),
                "duration": 2 * DURATION,
                "minPricePerBytePerSecond": "1",
                "totalCollateral": str(NODES * slot_size_of(len(data)) * COLLATERAL_PER_BYTE),
            },
            bootstrap_nodes=(liar.url, client.url),  # the liar first: it is asked first
        )
        pid = await client.request_storage(cid, request_body())
        sids = [slot_id(request_id(pid), i) for i in range(NODES)]

        async def every_slot_filled() -> bool:
            return all([await client.market.slot_state(s) == SlotState.FILLED for s in sids])

        await net.until(every_slot_filled, what="every slot filled by the host", periods=4)
        repo = host.node.repo
        assert repo is not None
        for s in sids:
            assert (await host_of(net, s)) is host
        # Every stored block reads back matching its CID (RepoStore checks on read; read them all).
        pcid = parse_cid((await client.purchase(pid))["request"]["content"]["cid"])
        protected = ProtectedManifest.from_block(pcid, await repo.get_block(pcid))
        for slot_manifest in protected.slot_manifests:
            manifest = await repo.get_manifest(slot_manifest)
            for i in range(manifest.block_count):
                block_cid = manifest.block_cid(i)
                assert block_cid.matches(await repo.get_block(block_cid))
        assert protected.slot_manifests == protected_here.manifest.slot_manifests
        # The liar was asked (it is the first bootstrap node) and caught: counted, avoided, nothing of it stored.
        assert served_corrupt > 0
        failures = host.node.registry.get_sample_value("codex_blockexchange_peer_failures_total", {"reason": "corrupt"})
        assert failures is not None
        assert failures >= 1
        assert host.node.peers is not None
        assert liar.node.peers is not None
        assert host.node.peers.table.is_avoided(liar.node.peers.peer_id, host.node.clock.now())
