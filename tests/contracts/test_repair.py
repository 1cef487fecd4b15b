"""Repairing a freed slot: discounted collateral, full collateral back at the end, the client charged anew."""

from __future__ import annotations

from marketplace_harness import REPAIR_REWARD_PERCENTAGE, Chain, PostedRequest
from web3.types import TxReceipt

from codex_node.market.types import RequestState, SlotState


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def started_with_freed_slot(chain: Chain) -> tuple[PostedRequest, list[int], int]:
    """A started request whose slot 0 host walked away; returns it, the fill times and the time of the free."""
    posted = chain.post_request()
    filled_at = [block_time(chain, r) for r in chain.fill_all(posted)]
    chain.advance(3 * 60)
    receipt = chain.send(chain.marketplace.functions.freeSlot(posted.slot_id(0)), chain.accounts.hosts[0])
    return posted, filled_at, block_time(chain, receipt)


def test_repairing_host_posts_discounted_collateral_but_holds_the_full_amount(chain: Chain) -> None:
    posted, _, _ = started_with_freed_slot(chain)
    repairer = chain.accounts.hosts[3]
    before = chain.balance(repairer)
    receipt = chain.fill(posted, 0, repairer)
    discounted = posted.ask.collateral_per_slot * (100 - REPAIR_REWARD_PERCENTAGE) // 100
    assert chain.balance(repairer) == before - discounted
    m = chain.marketplace.functions
    sid = posted.slot_id(0)
    assert m.currentCollateral(sid).call() == posted.ask.collateral_per_slot
    assert m.getHost(sid).call() == repairer
    assert m.slotState(sid).call() == SlotState.FILLED
    assert m.requestState(posted.id).call() == RequestState.STARTED
    assert chain.events(receipt, "RequestFulfilled") == []  # the request started once, at its first full fill


def test_repair_settles_host_payouts_and_client_refund(chain: Chain) -> None:
    client_before = chain.balance(chain.accounts.client)
    posted, filled_at, _ = started_with_freed_slot(chain)
    repairer = chain.accounts.hosts[3]
    repaired_at = block_time(chain, chain.fill(posted, 0, repairer))
    m = chain.marketplace.functions
    ends_at = m.requestEnd(posted.id).call()
    chain.travel_to(ends_at + 1)

    before = chain.balance(repairer)
    chain.send(m.freeSlot(posted.slot_id(0)), repairer)
    pps = posted.ask.price_per_slot_per_second
    assert chain.balance(repairer) == before + (ends_at - repaired_at) * pps + posted.ask.collateral_per_slot
    for index in (1, 2):
        chain.send(m.freeSlot(posted.slot_id(index)), chain.accounts.hosts[index])
    chain.send(m.withdrawFunds(posted.id), chain.accounts.client)

    # The client paid only for time slots were hosted by a host that was paid: slot 0 from its repair on.
    charged = ((ends_at - repaired_at) + (ends_at - filled_at[1]) + (ends_at - filled_at[2])) * pps
    assert chain.balance(chain.accounts.client) == client_before - charged
    # Left in the marketplace: the first host's forfeited collateral, minus the repair reward paid out of it.
    reward = posted.ask.collateral_per_slot - posted.ask.collateral_per_slot * (100 - REPAIR_REWARD_PERCENTAGE) // 100
    assert chain.marketplace_balance() == posted.ask.collateral_per_slot - reward


def test_repair_in_the_period_the_previous_host_proved(chain: Chain) -> None:
    # The anchor refused this fill with ProofAlreadySubmitted: the period's proof flag belonged to the old host.
    posted = chain.post_request()
    chain.fill_all(posted)
    chain.advance_to_next_period(offset=2)
    period = chain.current_period()
    chain.submit_proof(posted, 0, chain.accounts.hosts[0])
    chain.send(chain.marketplace.functions.freeSlot(posted.slot_id(0)), chain.accounts.hosts[0])
    chain.fill(posted, 0, chain.accounts.hosts[3])
    assert chain.current_period() == period
    assert chain.marketplace.functions.getHost(posted.slot_id(0)).call() == chain.accounts.hosts[3]
