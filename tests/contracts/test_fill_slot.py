"""fillSlot: checks, collateral, bookkeeping, and the request starting once every slot is filled."""

from __future__ import annotations

from marketplace_harness import Chain

from codex_node.market.types import RequestState, SlotState


def test_filling_every_slot_starts_the_request(chain: Chain) -> None:
    posted = chain.post_request(slots=3)
    receipts = chain.fill_all(posted)
    for index, receipt in enumerate(receipts):
        (filled,) = chain.events(receipt, "SlotFilled")
        assert (bytes(filled["requestId"]), filled["slotIndex"]) == (posted.id, index)
        (proved,) = chain.events(receipt, "ProofSubmitted")
        assert bytes(proved["id"]) == posted.slot_id(index)
    assert [chain.events(r, "RequestFulfilled") != [] for r in receipts] == [False, False, True]
    (fulfilled,) = chain.events(receipts[-1], "RequestFulfilled")
    assert bytes(fulfilled["requestId"]) == posted.id
    assert chain.marketplace.functions.requestState(posted.id).call() == RequestState.STARTED


def test_fill_takes_collateral_and_records_the_host(chain: Chain) -> None:
    posted = chain.post_request()
    host = chain.accounts.hosts[0]
    before = chain.balance(host)
    chain.fill(posted, 1, host)
    sid = posted.slot_id(1)
    m = chain.marketplace.functions
    assert chain.balance(host) == before - posted.ask.collateral_per_slot
    assert m.currentCollateral(sid).call() == posted.ask.collateral_per_slot
    assert m.getHost(sid).call() == host
    assert m.slotState(sid).call() == SlotState.FILLED
    assert m.mySlots().call({"from": host}) == [sid]
    assert m.getActiveSlot(sid).call() == (posted.request.to_abi(), 1)
    assert m.requestState(posted.id).call() == RequestState.NEW


def test_fill_of_unknown_request_reverts(chain: Chain) -> None:
    posted = chain.new_request()  # never posted
    proof = chain.proof_for(posted, 0, challenge=bytes(32))
    with chain.expect_revert("UnknownRequest"):
        chain.send(chain.marketplace.functions.fillSlot(posted.id, 0, proof), chain.accounts.hosts[0])


def test_fill_of_slot_index_out_of_range_reverts(chain: Chain) -> None:
    posted = chain.post_request(slots=3)
    proof = chain.proof_for(posted, 0)
    with chain.expect_revert("InvalidSlot"):
        chain.send(chain.marketplace.functions.fillSlot(posted.id, 3, proof), chain.accounts.hosts[0])


def test_fill_without_reservation_reverts(chain: Chain) -> None:
    posted = chain.post_request()
    with chain.expect_revert("ReservationRequired"):
        chain.fill(posted, 0, chain.accounts.hosts[0], reserve=False)


def test_fill_of_a_filled_slot_reverts(chain: Chain) -> None:
    posted = chain.post_request()
    chain.reserve(posted, 0, chain.accounts.hosts[1])
    chain.fill(posted, 0, chain.accounts.hosts[0])
    with chain.expect_revert("SlotNotFree"):
        chain.fill(posted, 0, chain.accounts.hosts[1], reserve=False)


def test_fill_after_expiry_reverts(chain: Chain) -> None:
    posted = chain.post_request()
    chain.reserve(posted, 0, chain.accounts.hosts[0])
    chain.travel_to(chain.marketplace.functions.requestExpiry(posted.id).call() + 1)
    with chain.expect_revert("SlotNotFree"):
        chain.fill(posted, 0, chain.accounts.hosts[0], reserve=False)


def test_unfilled_slot_reads_free_and_has_no_active_slot(chain: Chain) -> None:
    posted = chain.post_request()
    sid = posted.slot_id(0)
    assert chain.marketplace.functions.slotState(sid).call() == SlotState.FREE
    assert chain.marketplace.functions.getHost(sid).call() == "0x" + "0" * 40
    with chain.expect_revert("SlotIsFree"):
        chain.marketplace.functions.getActiveSlot(sid).call()
