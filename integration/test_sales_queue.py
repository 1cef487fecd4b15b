"""Anchor §8.2 "SP are able to process slots after workers were busy with other slots and ignored them", over
separate processes on Hardhat.

A host with a single slot-queue worker (``--max-slot-workers 1``) and an availability too small for any slot
ignores every slot of a request; the slots wait in its queue, marked seen, and the queue pauses. Once the operator
enlarges the availability (``PATCH``), the seen flags are cleared and that one worker comes back for each ignored
slot in turn: the host fills all of them, and the request starts. (nim-codex's test used a second request; here the
ignored slots are those of the same request, still open: that is what ``sales/slotqueue.py`` does with them.)
"""

from __future__ import annotations

import os

from codex_node.data.erasure import ErasureLayout, ErasureParams
from codex_node.market.deployment import DEV_CONFIG
from codex_node.market.types import RequestId, RequestState, SlotState, slot_id
from integration.localnet import LocalNet

BLOCK = 65_536
NODES, TOLERANCE = 3, 1
PERIOD = DEV_CONFIG.proofs.period
DURATION = 12 * PERIOD
EXPIRY = 10 * PERIOD  # one worker fills the slots one after another, each waiting for a period's end
PRICE = 2
COLLATERAL_PER_BYTE = 1


def test_a_single_worker_comes_back_for_every_ignored_slot_once_an_availability_fits(net: LocalNet) -> None:
    data = os.urandom(3 * BLOCK + 300)
    slot_size = ErasureLayout(ErasureParams.from_request(NODES, TOLERANCE), len(data)).slot_size
    collateral = slot_size * COLLATERAL_PER_BYTE
    client = net.add_node("client")
    host = net.add_node("host", "--max-slot-workers", "1", bootstrap=[client])
    small = host.api.create_availability(
        total_size=slot_size - 1,  # one byte short of any slot
        duration=2 * DURATION,
        min_price_per_byte_per_second=1,
        total_collateral=NODES * collateral,
    )
    reserved_before = host.api.space().quota_reserved_bytes

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

    # --- every slot is tried and ignored: nothing reserved, nothing on chain ---------------------------------
    def ignored() -> set[int]:
        return {s.slot_index for s in host.api.sale_history(state="ignored").sales if s.request_id == pid}

    net.wait_for(lambda: ignored() == set(range(NODES)), what="every slot ignored by the host")
    assert all("size" in (s.reason or "") for s in host.api.sale_history(state="ignored").sales), "ignored: too small"
    assert host.api.list_reservations(small.id) == []
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FREE] * NODES
    (availability,) = host.api.list_availabilities()
    assert (availability.free_size, availability.total_remaining_collateral) == (slot_size - 1, NODES * collateral)

    # --- the operator makes room: the one worker fills every slot it ignored ----------------------------------
    host.api.update_availability(small.id, total_size=NODES * slot_size)
    assert host.api.space().quota_reserved_bytes == reserved_before + NODES * slot_size - (slot_size - 1)
    net.until(lambda: client.api.get_purchase(pid).state == "started", what="the purchase started", periods=8, within=5)
    assert net.view.request_state(rid) == RequestState.STARTED
    assert [net.view.slot_state(s) for s in sids] == [SlotState.FILLED] * NODES
    assert {net.view.host(s) for s in sids} == {host.address}
    reservations = host.api.list_reservations(small.id)
    assert sorted((r.request_id, r.slot_index) for r in reservations) == [(pid, i) for i in range(NODES)]
    net.wait_for(
        lambda: all(r.size == 0 for r in host.api.list_reservations(small.id)), what="every slot's bytes stored"
    )
    (availability,) = host.api.list_availabilities()
    assert (availability.free_size, availability.total_remaining_collateral) == (0, 0)
    assert host.api.space().quota_reserved_bytes == reserved_before - (slot_size - 1)
    assert host.api.debug_books().balanced
