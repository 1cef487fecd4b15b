"""Anchor §8.2 "Marketplace payouts" over separate processes on Hardhat:

- a request that cannot start expires; the host that filled some of its slots is paid for the time from each
  fill to the expiry, exactly what the client lost, gets its collateral back, and its availability its bytes and
  collateral;
- three hosts, each with room and collateral for every slot, compete for one request: the collateral of each sale
  a host lost (ignored) goes back to its availability, and only the slots it hosts keep theirs.

Amounts follow the contract's arithmetic (``contracts/contracts/Marketplace.sol``: a cancelled slot pays
``(expiresAt - filledAt) × pricePerSlotPerSecond``, and the client's withdrawal returns the rest), with fill times
read from the chain's own events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial

import pytest

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotState, slot_id
from integration.localnet import LocalNet, LocalNode

BLOCK = 65_536
NODES, TOLERANCE = 3, 1
PERIOD = DEV_CONFIG.proofs.period
DURATION = 12 * PERIOD
EXPIRY = 10 * PERIOD  # each fill waits for a period's end: room for every host to fill what it can
PRICE = 3
COLLATERAL_PER_BYTE = 2


def slot_size_of(size: int) -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), size).slot_size


@pytest.fixture(scope="module")
def client(net: LocalNet) -> LocalNode:
    return net.add_node("client")


@pytest.fixture
def hosts_retired(net: LocalNet) -> Iterator[list[LocalNode]]:
    """Hosts a test adds here offer nothing once it ended, so they take no slot of the next test's request."""
    added: list[LocalNode] = []
    yield added
    for host in added:
        for availability in host.api.list_availabilities():
            host.api.update_availability(availability.id, enabled=False)


def offer(host: LocalNode, slots: int, slot_size: int) -> str:
    """Room and collateral for exactly ``slots`` slots; the availability's id."""
    created = host.api.create_availability(
        total_size=slots * slot_size,
        duration=2 * DURATION,
        min_price_per_byte_per_second=1,
        total_collateral=slots * slot_size * COLLATERAL_PER_BYTE,
    )
    return created.id


def request(client: LocalNode, data: bytes) -> tuple[str, RequestId]:
    cid = client.api.upload(data)
    pid = client.api.request_storage(
        cid,
        duration=DURATION,
        price_per_byte_per_second=PRICE,
        proof_probability=1,
        collateral_per_byte=COLLATERAL_PER_BYTE,
        expiry=EXPIRY,
        nodes=NODES,
        tolerance=TOLERANCE,
    )
    return pid, RequestId(bytes.fromhex(pid.removeprefix("0x")))


def test_an_expired_request_pays_the_host_for_the_time_stored_and_returns_bytes_and_collateral(
    net: LocalNet, client: LocalNode, hosts_retired: list[LocalNode]
) -> None:
    data = os.urandom(3 * BLOCK + 100)
    slot_size = slot_size_of(len(data))
    collateral = slot_size * COLLATERAL_PER_BYTE
    # One host with room for two of the three slots: the request can never start.
    host = net.add_node("lonely-host", bootstrap=[client])
    hosts_retired.append(host)
    availability_id = offer(host, 2, slot_size)
    reserved_before = host.api.space().quota_reserved_bytes
    before = {n.name: net.view.balance(n.address) for n in (client, host)}

    pid, rid = request(client, data)
    sids = [slot_id(rid, i) for i in range(NODES)]

    def filled() -> list[int] | None:
        found = [i for i, s in enumerate(sids) if net.view.slot_state(s) == SlotState.FILLED]
        return found if len(found) == 2 else None

    hosted = net.until(filled, what="the host filled two slots", periods=8, within=5)
    assert all(net.view.host(sids[i]) == host.address for i in hosted)
    (availability,) = host.api.list_availabilities()
    assert (availability.free_size, availability.total_remaining_collateral) == (0, 0)
    assert sorted(r.slot_index for r in host.api.list_reservations(availability_id)) == hosted
    assert net.view.balance(host.address) == before[host.name] - 2 * collateral

    # --- the request expires unstarted: the host collects, the client withdraws the rest ----------------------
    expires_at = int(net.view.market.functions.requestExpiry(rid).call())
    assert net.now() < expires_at
    net.advance_to(expires_at + 1)
    assert net.view.request_state(rid) == RequestState.CANCELLED
    net.wait_for(
        lambda: all(net.view.slot_state(sids[i]) == SlotState.PAID for i in hosted), what="both filled slots paid"
    )
    net.wait_for(lambda: client.api.get_purchase(pid).state == "cancelled", what="the purchase cancelled")
    fill_times = net.view.fill_times(rid)
    assert sorted(fill_times) == hosted
    price_per_slot_per_second = PRICE * slot_size
    payout = sum((expires_at - fill_times[i]) * price_per_slot_per_second for i in hosted)
    assert 0 < payout < 2 * EXPIRY * price_per_slot_per_second  # paid for the time stored, not for the expiry

    def flows() -> dict[str, int]:
        return {n.name: net.view.balance(n.address) - before[n.name] for n in (client, host)}

    # The host's collateral came back on top of the payout; the client lost exactly what the host gained.
    expected = {host.name: payout, client.name: -payout}
    net.wait_for(lambda: flows() == expected or None, what="the token flows of a cancelled request")
    # What the operators read agrees with the chain: each node's ledger nets its wallet's change.
    net.wait_for(
        lambda: {n.name: n.api.account().totals.net_flow for n in (client, host)} == expected or None,
        what="the ledgers' net flows",
    )
    totals = host.api.account().totals
    assert (totals.by_kind["payout"], totals.by_kind["collateralReturned"]) == (payout, 2 * collateral)

    # --- the availability has its bytes and collateral back; the quota and the books follow -----------------
    def settled() -> bool:
        (a,) = host.api.list_availabilities()
        return a.free_size == 2 * slot_size and host.api.list_reservations(availability_id) == []

    net.wait_for(settled, what="the availability's bytes back")
    (availability,) = host.api.list_availabilities()
    assert availability.total_remaining_collateral == 2 * collateral
    assert host.api.space().quota_reserved_bytes == reserved_before
    assert host.api.debug_books().balanced
    assert net.view.slot_state(sids[({0, 1, 2} - set(hosted)).pop()]) == SlotState.FREE  # never filled
    # The slots' data goes at the expiry too (its used quota is not held for the --block-ttl, anchor #1251);
    # the maintenance that deletes it runs on the wall clock, which the test's chain has left behind.
    lowered = host.process.find(lambda e: e.get("event") == "slot expiry lowered")
    assert [e["expiry"] for e in lowered] == [expires_at] * len(hosted)


def test_the_collateral_of_every_sale_a_host_lost_comes_back_to_its_availability(
    net: LocalNet, client: LocalNode, hosts_retired: list[LocalNode]
) -> None:
    data = os.urandom(3 * BLOCK + 200)
    slot_size = slot_size_of(len(data))
    collateral = slot_size * COLLATERAL_PER_BYTE
    hosts = [net.add_node(f"rival-{i}", bootstrap=[client]) for i in range(3)]
    hosts_retired.extend(hosts)
    offers = {h.name: offer(h, NODES, slot_size) for h in hosts}  # each could take every slot
    before = {h.name: net.view.balance(h.address) for h in hosts}

    pid, rid = request(client, data)
    net.until(lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", periods=8, within=5)
    by_address = {h.address: h.name for h in hosts}
    holders = [by_address[net.view.host(slot_id(rid, i))] for i in range(NODES)]
    hosted = {h.name: holders.count(h.name) for h in hosts}
    assert sum(hosted.values()) == NODES

    def returned(host: LocalNode) -> bool:
        (a,) = host.api.list_availabilities()
        left = NODES - hosted[host.name]
        return (a.free_size, a.total_remaining_collateral) == (left * slot_size, left * collateral) and len(
            host.api.list_reservations(offers[host.name])
        ) == hosted[host.name]

    for h in hosts:
        net.wait_for(partial(returned, h), what=f"{h.name}: the collateral of its lost sales back")
        assert net.view.balance(h.address) == before[h.name] - hosted[h.name] * collateral
        assert h.api.space().quota_reserved_bytes == (NODES - hosted[h.name]) * slot_size
        assert h.api.debug_books().balanced
        account = h.api.account()
        assert (account.hosted_slots, account.collateral_locked) == (hosted[h.name], hosted[h.name] * collateral)
        assert account.totals.net_flow == -hosted[h.name] * collateral

    # Collateral did come back: some host reserved a slot (took its collateral) that another host filled.
    lost = [
        s
        for h in hosts
        for s in h.api.sale_history(state="ignored").sales
        if s.request_id == pid and "SaleSlotReserving" in [t.to_state for t in s.transitions]
    ]
    assert lost, "no host lost a slot it had reserved: nothing was returned"
