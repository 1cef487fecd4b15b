"""Issue 11 "chain faults", crashes: a host SIGKILLed in the middle of a sale (while it downloads its slots from the
client, then again while it proves them) is started again on the same data dir and account, and its sales go on
to the end: filled once, proven, paid to the token as the contract computes, with the availability, the quota and
the books as a sale that never crashed leaves them.

The download is caught in the middle by a real condition, not a test hold: the client announces a
:class:`~tests.harness.blockgate.BlockGate` in front of its API, which lets one batch of blocks through and holds
the others, so the host is killed with one batch of a slot stored and the rest of its slots not yet fetched. Each
slot is 257 blocks, one more than a fetch batch (256), so a slot is always at least two batches.
"""

from __future__ import annotations

import os
from collections import Counter

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, SlotState, slot_id
from integration.localnet import LocalNet, LocalNode

BLOCK = 65_536
NODES, TOLERANCE = 3, 1  # two data slots, one parity slot: the host sells all three
SLOT_BLOCKS = 257
FETCH_BATCH = SLOT_BLOCKS - 1
PERIOD = DEV_CONFIG.proofs.period
DURATION = 10 * PERIOD
EXPIRY = 6 * PERIOD
PRICE = 3
COLLATERAL_PER_BYTE = 2
FETCHED = "codex_blockexchange_bytes_fetched_total"


def sales_started(node: LocalNode) -> list[int]:
    """The ``resumed`` count of each ``sales started`` line of the node's current process."""
    return [int(e["resumed"]) for e in node.process.find(lambda e: e.get("event") == "sales started")]


def test_a_host_killed_mid_download_and_while_proving_finishes_its_sales_paid(net: LocalNet) -> None:
    data = os.urandom(2 * SLOT_BLOCKS * BLOCK)  # k = 2: each slot is 257 full blocks
    slot_size = ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), len(data)).slot_size
    assert slot_size == SLOT_BLOCKS * BLOCK
    gate = net.block_gate()
    client = net.add_node("client", "--api-announce-url", gate.url)
    gate.upstream = client.url.removesuffix("/api/codex/v1")
    host = net.add_node("host", "--metrics", "--metrics-port", "0", bootstrap=[client])
    offered = host.api.create_availability(
        total_size=NODES * slot_size,
        duration=2 * DURATION,
        min_price_per_byte_per_second=1,
        total_collateral=NODES * slot_size * COLLATERAL_PER_BYTE,
    )
    used_before = host.api.space().quota_used_bytes
    balance_before = {n.name: net.view.balance(n.address) for n in (client, host)}

    # --- the host is killed while it downloads: one batch of blocks landed, the others wait at the gate ---------
    net.in_loop(gate.hold_after, 1)
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
    rid = RequestId(bytes.fromhex(pid.removeprefix("0x")))
    sids = [slot_id(rid, i) for i in range(NODES)]
    # One batch, the short one or the full one, stored whole (a batch is stored in groups as it arrives: killed
    # between two of its groups, the host would hold blocks this count does not know of).
    net.wait_for(
        lambda: gate.held >= 1 and host.metric(FETCHED) in (BLOCK, FETCH_BATCH * BLOCK),
        what="a batch landed and the next one held",
    )
    fetched_before = host.metric(FETCHED)
    assert host.process.find(lambda e: e.get("event") == "slot data stored") == []
    assert host.process.kill() == -9
    net.in_loop(gate.open)
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FREE] * NODES

    host = net.restart_node("host")
    assert sales_started(host) == [NODES]  # both sales resumed from the data dir
    assert host.api.debug_books().balanced
    net.until(lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", periods=8)
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * NODES
    assert all(net.view.host(s) == host.address for s in sids)
    # only what had not landed before the kill was fetched again
    assert fetched_before + host.metric(FETCHED) == NODES * slot_size
    (availability,) = host.api.list_availabilities()
    assert (availability.free_size, availability.total_remaining_collateral) == (0, 0)
    reservations = host.api.list_reservations(offered.id)
    assert sorted((r.request_id, r.slot_index, r.size) for r in reservations) == [(pid, i, 0) for i in range(NODES)]
    space = host.api.space()
    assert space.quota_reserved_bytes == 0
    assert NODES * slot_size <= space.quota_used_bytes - used_before < NODES * slot_size + BLOCK  # + manifests
    assert host.api.debug_books().balanced
    collateral = slot_size * COLLATERAL_PER_BYTE
    assert net.view.balance(host.address) == balance_before["host"] - NODES * collateral

    # --- the host is killed while it proves, between two periods' proofs --------------------------------------
    # (a fill carries the slot's first proof: a second ProofSubmitted is a periodic proof)
    net.until(lambda: all(net.view.proofs_submitted(s) >= 2 for s in sids), what="a proof of each slot", periods=3)
    proven = [net.view.proofs_submitted(s) for s in sids]
    host = net.restart_node("host", kill=True)
    assert sales_started(host) == [NODES]
    net.until(
        lambda: all(net.view.proofs_submitted(s) > n for s, n in zip(sids, proven, strict=True)),
        what="a proof of each slot after the restart",
        periods=3,
    )
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * NODES
    assert host.api.debug_books().balanced

    # --- the request ends: the host is paid for both slots, the client gets the rest back -----------------------
    end = net.view.request_end(rid)
    net.advance_to(end + 1)
    net.wait_for(lambda: [net.view.slot_state(s) for s in sids] == [SlotState.PAID] * NODES, what="slots paid")
    net.wait_for(lambda: client.api.get_purchase(pid).state == "finished", what="the purchase finished")
    filled = net.view.fill_times(rid)
    payout = sum((end - filled[i]) * PRICE * slot_size for i in range(NODES))

    def flows() -> dict[str, int]:
        return {n.name: net.view.balance(n.address) - balance_before[n.name] for n in (client, host)}

    net.wait_for(lambda: flows() == {"host": payout, "client": -payout} or None, what="the token flows")

    def whole() -> bool:
        (back,) = host.api.list_availabilities()
        return (back.free_size, back.total_remaining_collateral) == (NODES * slot_size, NODES * collateral)

    net.wait_for(whole, what="every byte and token back in the availability")
    assert host.api.space().quota_reserved_bytes == NODES * slot_size
    assert host.api.debug_books().balanced

    # --- nothing was sent twice: one reservation, one fill and one payout per slot, every transaction mined ------
    sent = net.view.transactions_from(host.address)
    assert net.refused_unexplained(host.address) == []  # but proofs the test's time jumps caught on their way
    proofs = sum(net.view.proofs_submitted(s) for s in sids) - NODES  # the fills' proofs came with the fills
    late = len(net.view.reverted_from(host.address))
    calls = Counter(name for name, _ in sent)
    assert calls == Counter(
        {
            "reserveSlot": NODES,
            "fillSlot": NODES,
            "freeSlot": NODES,
            "submitProof": proofs + late,
            "approve": calls["approve"],
        }
    )
    assert net.view.nonce(host.address) == len(sent)
