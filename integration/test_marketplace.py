"""Anchor §8.2 "Marketplace" over separate processes on Hardhat: a client and three hosts negotiate a contract
(nodes=3, tolerance=1), the hosts fetch their slots from the client over HTTP, fill and prove; the client is
restarted and its purchase goes on; at the end the hosts are paid for the time they stored and the client gets the
rest back.

Every amount is checked against the contract's arithmetic (fill times read from the chain's own events), every
availability and quota against the bytes and collateral a slot takes, and each node's books against its own check.
"""

from __future__ import annotations

import os

import pytest

from codex_node.client.errors import UnprocessableError
from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotState, slot_id
from integration.localnet import LocalNet, LocalNode

BLOCK = 65_536
NODES, TOLERANCE = 3, 1
PERIOD = DEV_CONFIG.proofs.period
DURATION = 12 * PERIOD
EXPIRY = 10 * PERIOD  # each fill waits for a period's end (and some for a stable challenge): room for several
PRICE = 3
COLLATERAL_PER_BYTE = 2


def slot_size_of(size: int) -> int:
    return ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), size).slot_size


def offer_one_slot(host: LocalNode, slot_size: int) -> str:
    """Room and collateral for exactly one slot, so each host fills one and never two; the availability's id."""
    created = host.api.create_availability(
        total_size=slot_size,
        duration=2 * DURATION,
        min_price_per_byte_per_second=1,
        total_collateral=slot_size * COLLATERAL_PER_BYTE,
    )
    assert created.free_size == slot_size
    return created.id


def test_nodes_negotiate_a_contract_hosts_are_paid_and_the_client_gets_the_rest_back(net: LocalNet) -> None:
    data = os.urandom(5 * BLOCK + 1234)
    slot_size = slot_size_of(len(data))
    client = net.add_node("client")
    hosts = [net.add_node(f"host-{i}", "--metrics", "--metrics-port", "0", bootstrap=[client]) for i in range(NODES)]
    offers = {h.name: offer_one_slot(h, slot_size) for h in hosts}
    used_before = {h.name: h.api.space().quota_used_bytes for h in hosts}
    for h in hosts:
        assert h.api.space().quota_reserved_bytes == slot_size  # the availability's bytes, set aside
    balance_before = {n.name: net.view.balance(n.address) for n in [client, *hosts]}

    # --- the request starts: each host fetched its slot from the client, filled it and holds one -------------
    cid = client.api.upload(data)
    pid = client.api.request_storage(
        cid,
        duration=DURATION,
        price_per_byte_per_second=PRICE,
        proof_probability=1,  # with the dev config's downtime, a proof is due every period after the fill's
        collateral_per_byte=COLLATERAL_PER_BYTE,
        expiry=EXPIRY,
        nodes=NODES,
        tolerance=TOLERANCE,
    )
    rid = RequestId(bytes.fromhex(pid.removeprefix("0x")))
    sids = [slot_id(rid, i) for i in range(NODES)]
    net.until(lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", periods=8)
    assert net.view.request_state(rid) == RequestState.STARTED
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * NODES
    by_address = {h.address: h for h in hosts}
    holder = {i: by_address[net.view.host(s)] for i, s in enumerate(sids)}
    assert sorted(h.name for h in holder.values()) == [h.name for h in hosts]  # one slot each
    for i, s in enumerate(sids):
        host = holder[i]
        sale = host.api.get_slot("0x" + s.hex())
        assert sale.slot_index == i
        assert "SaleFilled" in [t.to_state for t in sale.history]
        # the slot came from the client, block by verified block: nobody else held it (a host that lost a race
        # for another slot after fetching it fetched that one too: whole slots only)
        fetched = host.metric("codex_blockexchange_bytes_fetched_total")
        assert fetched >= slot_size
        assert fetched % slot_size == 0
        # availability accounting: the slot's bytes and collateral are taken; one reservation, for this slot
        (availability,) = host.api.list_availabilities()
        assert availability.free_size == 0
        assert availability.total_remaining_collateral == 0
        (reservation,) = host.api.list_reservations(offers[host.name])
        assert (reservation.request_id, reservation.slot_index) == (pid, i)
        assert reservation.size == 0  # every byte of the slot landed: moved from the reservation to used
        # quota: the slot's bytes moved from reserved to used
        space = host.api.space()
        assert space.quota_reserved_bytes == 0
        assert space.quota_used_bytes - used_before[host.name] >= slot_size
        assert host.api.debug_books().balanced
    collateral = slot_size * COLLATERAL_PER_BYTE
    for h in hosts:  # each posted the slot's collateral
        assert net.view.balance(h.address) == balance_before[h.name] - collateral

    # --- an availability that hosts a slot refuses changes that would break the slot's promise ----------------
    end = net.view.request_end(rid)
    host = holder[0]
    with pytest.raises(UnprocessableError):
        host.api.update_availability(offers[host.name], total_size=slot_size - 1)  # below the bytes in use
    with pytest.raises(UnprocessableError):
        host.api.update_availability(offers[host.name], until=end - 1)  # before the hosted slot's end
    assert host.api.list_availabilities()[0].total_size == slot_size  # nothing half written

    # --- periodic proofs: every host proves its slot (a fill carries a proof: a periodic one is the second) ---
    def every_slot_proven() -> bool:
        return all(net.view.proofs_submitted(s) >= 2 for s in sids)

    net.until(every_slot_proven, what="a proof of every slot", periods=3)

    # --- the purchase survives a restart of the client (it withdraws the rest below, after the restart) -------
    purchase = client.api.get_purchase(pid)
    client = net.restart_node("client")
    assert client.api.list_purchases() == [pid]
    restarted = client.api.get_purchase(pid)
    assert restarted.state == "started"
    assert restarted.request == purchase.request
    assert restarted.request is not None
    assert restarted.request.client == client.address

    # --- the request ends: every host is paid, the client gets the rest back ------------------------------------
    net.advance_to(end + 1)
    net.wait_for(
        lambda: [net.view.slot_state(s) for s in sids] == [SlotState.PAID] * NODES,
        what="every slot paid out",
    )
    net.wait_for(lambda: client.api.get_purchase(pid).state == "finished", what="the purchase finished")
    filled = net.view.fill_times(rid)
    price_per_slot_per_second = PRICE * slot_size
    payout = {holder[i].name: (end - filled[i]) * price_per_slot_per_second for i in range(NODES)}
    max_price = DURATION * price_per_slot_per_second * NODES
    assert sum(payout.values()) < max_price  # the hosts filled after the request was posted: the client saves

    def flows() -> dict[str, int]:
        return {n.name: net.view.balance(n.address) - balance_before[n.name] for n in [client, *hosts]}

    expected = payout | {"client": -sum(payout.values())}  # collateral back to the hosts; the rest to the client
    net.wait_for(lambda: flows() == expected or None, what="every token flow as the contract says")
    for h in hosts:  # the bytes and collateral went back to the availability; the books balance
        (availability,) = h.api.list_availabilities()
        assert availability.free_size == slot_size
        assert availability.total_remaining_collateral == collateral
        assert h.api.space().quota_reserved_bytes == slot_size
        assert h.api.debug_books().balanced
