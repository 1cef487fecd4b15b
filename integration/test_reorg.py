"""Issue #11, the event stream under running nodes on Hardhat: a reorganisation (``evm_snapshot`` / ``evm_revert``)
takes away the blocks in which a request started, and a node following the chain over a websocket takes part in
a sale to its end. Either way every node's sales, purchases, reservations and books end up as the chain says, and
the hosts are paid exactly what the contract's arithmetic says.
"""

from __future__ import annotations

from functools import partial

from codex_node.market.types import RequestState, SlotId, SlotState
from integration.chainfaults import (
    COLLATERAL_PER_BYTE,
    NODES,
    Posted,
    block_number,
    delivered,
    logged,
    mined_by,
    nonce_count,
    offer_every_slot,
    on_chain,
    payouts,
    post_request,
    slot_size,
)
from integration.localnet import LocalNet, LocalNode
from tests.harness import hardhat

HOSTING = ("SaleFilled", "SaleProving")
EVENTS = (
    "StorageRequested",
    "RequestFulfilled",
    "RequestCancelled",
    "RequestFailed",
    "SlotFilled",
    "SlotFreed",
    "SlotReservationsFull",
    "ProofSubmitted",
)


def hosts_every_slot_as_the_chain_says(net: LocalNet, host: LocalNode, sids: list[SlotId]) -> bool:
    """The chain names ``host`` for every slot, ``/slots`` lists exactly them, and each one's sale holds it."""
    if [net.view.slot_state(s) for s in sids] != [SlotState.FILLED] * NODES:
        return False
    if any(net.view.host(s).lower() != host.address.lower() for s in sids):
        return False
    if sorted(s.id for s in host.api.list_slots()) != sorted("0x" + s.hex() for s in sids):
        return False
    return all(host.api.get_slot("0x" + s.hex()).state in HOSTING for s in sids)


def settle(net: LocalNet, client: LocalNode, posted: Posted) -> int:
    """Run the request to its end; the hosts' payout as the contract computes it."""
    end = net.view.request_end(posted.rid)
    owed = payouts(net, posted)
    net.advance_to(end + 1)
    net.wait_for(
        lambda: [net.view.slot_state(s) for s in posted.sids] == [SlotState.PAID] * NODES, what="every slot paid"
    )
    net.wait_for(lambda: client.api.get_purchase(posted.pid).state == "finished", what="the purchase finished")
    return owed


def flows_are(net: LocalNet, before: dict[str, int], expected: dict[str, int]) -> None:
    """Wait until each node's token balance moved by ``expected`` since ``before``: the client withdraws what the
    hosts did not earn once its purchase finished, a transaction that may still be on its way (seen in a run)."""

    def flows() -> dict[str, int]:
        return {name: net.view.balance(net.nodes[name].address) - was for name, was in before.items()}

    net.wait_for(lambda: flows() == expected or None, what=f"the token flows {expected}")


def test_a_request_whose_start_left_the_chain_starts_again_and_pays_exactly(net: LocalNet) -> None:
    client = net.add_node("client")
    host = net.add_node("host", "--metrics", "--metrics-port", "0", bootstrap=[client])
    availability = offer_every_slot(host)
    before = {n.name: net.view.balance(n.address) for n in (client, host)}
    first_block, first_nonce = block_number(net), nonce_count(net, host.address)

    posted = post_request(client)
    snapshot = hardhat.rpc(net.url, "evm_snapshot")  # the request is on chain, no slot filled yet
    assert [net.view.slot_state(s) for s in posted.sids] == [SlotState.FREE] * NODES
    net.until(lambda: client.api.get_purchase(posted.pid).state == "started", what="the request started", periods=8)
    assert net.wait_for(lambda: hosts_every_slot_as_the_chain_says(net, host, posted.sids), what="every slot hosted")

    # --- the blocks of every fill leave the chain --------------------------------------------------------------
    assert hardhat.rpc(net.url, "evm_revert", [snapshot]) is True
    hardhat.rpc(net.url, "evm_setIntervalMining", [1000])
    assert net.view.request_state(posted.rid) == RequestState.NEW
    assert [net.view.slot_state(s) for s in posted.sids] == [SlotState.FREE] * NODES
    net.wait_for(lambda: logged(host, "chain changed under the event stream: delivering again"), what="a rewind")

    # --- the host sells the slots again and the request starts again -------------------------------------------
    net.until(
        lambda: (
            net.view.request_state(posted.rid) == RequestState.STARTED
            and hosts_every_slot_as_the_chain_says(net, host, posted.sids)
        ),
        what="the request started again, every slot hosted as the chain says",
        periods=8,
    )
    lost = logged(host, "our fill of the slot is no longer on chain (blocks left the chain): selling the slot again")
    assert len(lost) == NODES
    size = slot_size()
    (offer,) = host.api.list_availabilities()
    assert (offer.free_size, offer.total_remaining_collateral) == (0, 0)  # taken once per slot, not twice
    reservations = host.api.list_reservations(availability)
    assert sorted((r.request_id, r.slot_index) for r in reservations) == [(posted.pid, i) for i in range(NODES)]
    assert host.api.debug_books().balanced
    # the client's purchase went back to submitted when its start left the chain, and started again with it
    net.wait_for(lambda: client.api.get_purchase(posted.pid).state == "started", what="the purchase started again")
    states = [e["state"] for e in logged(client, "purchase state")]
    assert states == ["pending", "submitted", "started", "submitted", "started"]
    check = host.api.debug_check()
    assert check.ok, check.parts
    # the nonces of the lost fills were used again: the host's nonces on the chain as it is now are whole
    assert logged(host, "the account's nonce went back on chain (blocks left the chain): using it again")
    nonces = [int(tx["nonce"], 16) for tx in mined_by(net, host.address, first_block)]
    assert nonces == list(range(first_nonce, nonce_count(net, host.address)))

    # --- the request ends: the host is paid for the fills of the chain as it is now --------------------------
    owed = settle(net, client, posted)
    flows_are(net, before, {"client": -owed, "host": owed})
    net.wait_for(
        lambda: host.api.list_availabilities()[0].free_size == NODES * size, what="the slots' bytes back on offer"
    )
    assert host.api.list_availabilities()[0].total_remaining_collateral == NODES * size * COLLATERAL_PER_BYTE
    assert host.api.debug_books().balanced


def test_nodes_following_the_chain_over_a_websocket_see_every_event_once_through_a_sale(net: LocalNet) -> None:
    ws = net.url.replace("http://", "ws://")
    client = net.add_node("ws-client", "--eth-provider", ws, "--metrics", "--metrics-port", "0")
    host = net.add_node("ws-host", "--eth-provider", ws, "--metrics", "--metrics-port", "0", bootstrap=[client])
    for node in (client, host):
        assert logged(node, "following new blocks through a websocket subscription")
    offer_every_slot(host)
    before = {n.name: net.view.balance(n.address) for n in (client, host)}
    posted = post_request(client)
    net.until(lambda: client.api.get_purchase(posted.pid).state == "started", what="the request started", periods=8)
    assert net.wait_for(lambda: hosts_every_slot_as_the_chain_says(net, host, posted.sids), what="every slot hosted")
    owed = settle(net, client, posted)
    flows_are(net, before, {"ws-client": -owed, "ws-host": owed})

    # exactly once: each node delivered as many events of each type as the chain holds (from the deployment on)
    def all_delivered(node: LocalNode) -> bool:
        return delivered(node) == on_chain(net, EVENTS)

    for node in (client, host):
        net.wait_for(partial(all_delivered, node), what=f"{node.name} delivered all")
        assert not logged(node, "chain changed under the event stream: delivering again")
    assert host.api.sales_states().outcomes.get("finished", 0) >= NODES
    assert host.api.debug_books().balanced
