"""markProofAsMissing / canMarkProofAsMissing: slashing, validator reward, forcible free and request failure."""

from __future__ import annotations

from marketplace_harness import (
    MAX_NUMBER_OF_SLASHES,
    PERIOD,
    SLASH_PERCENTAGE,
    TIMEOUT,
    VALIDATOR_REWARD_PERCENTAGE,
    Chain,
    PostedRequest,
)

from codex_node.market.types import RequestState, SlotState


def started(chain: Chain, **kwargs: int) -> tuple[PostedRequest, int]:
    """A started 3-slot request, filled early in a period; returns it and the period of the fills."""
    posted = chain.post_request(**kwargs)
    chain.advance_to_next_period(offset=2)
    fill_period = chain.current_period()
    chain.fill_all(posted)
    assert chain.current_period() == fill_period
    return posted, fill_period


def can_mark(chain: Chain, posted: PostedRequest, index: int, period: int) -> None:
    chain.marketplace.functions.canMarkProofAsMissing(posted.slot_id(index), period).call(
        {"from": chain.accounts.validator}
    )


def mark_now(chain: Chain, posted: PostedRequest, index: int, period: int) -> None:
    fn = chain.marketplace.functions.markProofAsMissing(posted.slot_id(index), period)
    chain.send(fn, chain.accounts.validator)


def slashed_amount(posted: PostedRequest) -> int:
    return posted.ask.collateral_per_slot * SLASH_PERCENTAGE // 100


def test_missed_proof_slashes_host_and_rewards_validator(chain: Chain) -> None:
    posted, fill_period = started(chain)
    sid = posted.slot_id(0)
    validator_before = chain.balance(chain.accounts.validator)
    chain.advance_to_markable(sid, fill_period + 1)
    can_mark(chain, posted, 0, fill_period + 1)
    mark_now(chain, posted, 0, fill_period + 1)
    m = chain.marketplace.functions
    assert m.missingProofs(sid).call() == 1
    assert m.currentCollateral(sid).call() == posted.ask.collateral_per_slot - slashed_amount(posted)
    reward = slashed_amount(posted) * VALIDATOR_REWARD_PERCENTAGE // 100
    assert chain.balance(chain.accounts.validator) == validator_before + reward
    assert m.slotState(sid).call() == SlotState.FILLED
    with chain.expect_revert("ProofAlreadyMarkedMissing"):
        mark_now(chain, posted, 0, fill_period + 1)
    with chain.expect_revert("ProofAlreadyMarkedMissing"):
        can_mark(chain, posted, 0, fill_period + 1)


def test_period_that_has_not_ended_cannot_be_marked(chain: Chain) -> None:
    posted, fill_period = started(chain)
    chain.advance_to_next_period(offset=PERIOD - 1)
    with chain.expect_revert("PeriodNotEnded"):
        can_mark(chain, posted, 0, fill_period + 1)
    with chain.expect_revert("PeriodNotEnded"):
        mark_now(chain, posted, 0, fill_period + 1)


def test_period_cannot_be_marked_after_the_timeout(chain: Chain) -> None:
    posted, fill_period = started(chain)
    end = chain.period_end(fill_period + 1)
    chain.travel_to(end + TIMEOUT - 1)
    chain.mine()  # now end + TIMEOUT: the window [end + 1, end + timeout) is over
    with chain.expect_revert("ValidationTimedOut"):
        mark_now(chain, posted, 0, fill_period + 1)


def test_submitted_proof_cannot_be_marked_missing(chain: Chain) -> None:
    posted, fill_period = started(chain)
    chain.advance_to_next_period()
    chain.submit_proof(posted, 0, chain.accounts.hosts[0])
    chain.advance_to_markable(posted.slot_id(0), fill_period + 1)
    with chain.expect_revert("ProofNotMissing"):
        mark_now(chain, posted, 0, fill_period + 1)


def test_proof_of_the_fill_period_is_not_missing(chain: Chain) -> None:
    posted, fill_period = started(chain)
    chain.advance_to_markable(posted.slot_id(0), fill_period)
    with chain.expect_revert("ProofNotMissing"):
        mark_now(chain, posted, 0, fill_period)


def test_proof_not_required_by_probability_cannot_be_marked(chain: Chain) -> None:
    posted, fill_period = started(chain, proof_probability=2**200)
    chain.advance_to_markable(posted.slot_id(0), fill_period + 1)
    with chain.expect_revert("ProofNotRequired"):
        mark_now(chain, posted, 0, fill_period + 1)


def test_proof_not_required_during_downtime_cannot_be_marked(chain: Chain) -> None:
    posted, fill_period = started(chain)
    # A period well ahead leaves time to mine up to 192 blocks to bring the pointer into the downtime.
    missed = fill_period + 5
    chain.advance_to_markable(posted.slot_id(0), missed, in_downtime=True)
    with chain.expect_revert("ProofNotRequired"):
        mark_now(chain, posted, 0, missed)


def test_free_slot_does_not_accept_proofs(chain: Chain) -> None:
    posted = chain.post_request()
    with chain.expect_revert("SlotNotAcceptingProofs"):
        can_mark(chain, posted, 0, chain.current_period() - 1)
    with chain.expect_revert("SlotNotAcceptingProofs"):
        mark_now(chain, posted, 0, chain.current_period() - 1)


def test_slot_of_finished_request_does_not_accept_proofs(chain: Chain) -> None:
    posted, _ = started(chain)
    end = chain.marketplace.functions.requestEnd(posted.id).call()
    chain.travel_to(end + PERIOD)
    with chain.expect_revert("SlotNotAcceptingProofs"):
        mark_now(chain, posted, 0, chain.current_period() - 1)


def test_too_many_missed_proofs_free_the_slot_for_repair(chain: Chain) -> None:
    posted, fill_period = started(chain)
    sid = posted.slot_id(0)
    host = chain.accounts.hosts[0]
    for missed in range(fill_period + 1, fill_period + MAX_NUMBER_OF_SLASHES):
        chain.mark_missing(posted, 0, missed)
    receipt = chain.mark_missing(posted, 0, fill_period + MAX_NUMBER_OF_SLASHES)
    (freed,) = chain.events(receipt, "SlotFreed")
    assert (bytes(freed["requestId"]), freed["slotIndex"]) == (posted.id, 0)
    m = chain.marketplace.functions
    assert m.slotState(sid).call() == SlotState.REPAIR
    assert m.getHost(sid).call() == "0x" + "0" * 40
    assert m.currentCollateral(sid).call() == 0
    assert m.missingProofs(sid).call() == 0
    assert m.mySlots().call({"from": host}) == []
    assert m.requestState(posted.id).call() == RequestState.STARTED  # one slot lost, maxSlotLoss is 1
    assert chain.events(receipt, "RequestFailed") == []


def test_losing_more_than_max_slot_loss_slots_fails_the_request(chain: Chain) -> None:
    posted, fill_period = started(chain, max_slot_loss=1)
    for missed in range(fill_period + 1, fill_period + 1 + MAX_NUMBER_OF_SLASHES):
        chain.mark_missing(posted, 0, missed)
    m = chain.marketplace.functions
    assert m.requestState(posted.id).call() == RequestState.STARTED
    # A second lost slot (its host walks away) is one more than maxSlotLoss.
    receipt = chain.send(m.freeSlot(posted.slot_id(1)), chain.accounts.hosts[1])
    failed_at = chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert [bytes(e["requestId"]) for e in chain.events(receipt, "RequestFailed")] == [posted.id]
    assert m.requestState(posted.id).call() == RequestState.FAILED
    assert m.slotState(posted.slot_id(2)).call() == SlotState.FAILED
    assert m.requestEnd(posted.id).call() == failed_at - 1


def test_request_without_slot_loss_tolerance_fails_on_the_first_freed_slot(chain: Chain) -> None:
    posted, fill_period = started(chain, max_slot_loss=0)
    for missed in range(fill_period + 1, fill_period + MAX_NUMBER_OF_SLASHES):
        chain.mark_missing(posted, 0, missed)
    receipt = chain.mark_missing(posted, 0, fill_period + MAX_NUMBER_OF_SLASHES)
    assert len(chain.events(receipt, "SlotFreed")) == 1
    assert len(chain.events(receipt, "RequestFailed")) == 1
    m = chain.marketplace.functions
    assert m.requestState(posted.id).call() == RequestState.FAILED
    assert m.slotState(posted.slot_id(0)).call() == SlotState.FAILED  # the request's state wins over Repair
    with chain.expect_revert("SlotNotAcceptingProofs"):
        mark_now(chain, posted, 1, chain.current_period() - 1)
