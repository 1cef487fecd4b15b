"""freeSlot and withdrawFunds: payouts of finished and cancelled requests, refunds, and their guards.

Every scenario ends by checking that the marketplace holds exactly what it should (nothing, or the forfeited
collateral), so no token is created or lost by the arithmetic.
"""

from __future__ import annotations

from marketplace_harness import PERIOD, Chain, PostedRequest
from web3.types import TxReceipt

from codex_node.market.types import RequestState, SlotState

ZERO_ADDRESS = "0x" + "0" * 40


def block_time(chain: Chain, receipt: TxReceipt) -> int:
    return int(chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def started(chain: Chain, **kwargs: int) -> tuple[PostedRequest, list[int]]:
    posted = chain.post_request(**kwargs)
    filled_at = [block_time(chain, r) for r in chain.fill_all(posted)]
    return posted, filled_at


def free(chain: Chain, posted: PostedRequest, index: int, host: str) -> TxReceipt:
    return chain.send(chain.marketplace.functions.freeSlot(posted.slot_id(index)), host)


def withdraw(chain: Chain, posted: PostedRequest) -> TxReceipt:
    return chain.send(chain.marketplace.functions.withdrawFunds(posted.id), chain.accounts.client)


def test_finished_slot_pays_host_for_its_time_plus_collateral(chain: Chain) -> None:
    posted, filled_at = started(chain)
    m = chain.marketplace.functions
    ends_at = m.requestEnd(posted.id).call()
    chain.travel_to(ends_at + 1)
    sid = posted.slot_id(1)
    host = chain.accounts.hosts[1]
    assert m.requestState(posted.id).call() == RequestState.FINISHED
    assert m.slotState(sid).call() == SlotState.FINISHED
    before = chain.balance(host)
    free(chain, posted, 1, host)
    payout = (ends_at - filled_at[1]) * posted.ask.price_per_slot_per_second
    assert chain.balance(host) == before + payout + posted.ask.collateral_per_slot
    assert m.slotState(sid).call() == SlotState.PAID
    assert m.mySlots().call({"from": host}) == []
    with chain.expect_revert("AlreadyPaid"):
        free(chain, posted, 1, host)


def test_finished_request_settles_every_token(chain: Chain) -> None:
    client_before = chain.balance(chain.accounts.client)
    posted, filled_at = started(chain)
    ends_at = chain.marketplace.functions.requestEnd(posted.id).call()
    chain.travel_to(ends_at + 1)
    for index in range(posted.ask.slots):
        free(chain, posted, index, chain.accounts.hosts[index])
    withdraw(chain, posted)
    paid_to_hosts = sum(ends_at - t for t in filled_at) * posted.ask.price_per_slot_per_second
    assert chain.balance(chain.accounts.client) == client_before - paid_to_hosts
    assert chain.marketplace_balance() == 0
    assert chain.marketplace.functions.myRequests().call({"from": chain.accounts.client}) == []
    with chain.expect_revert("NothingToWithdraw"):
        withdraw(chain, posted)


def test_free_slot_can_pay_reward_and_collateral_to_other_accounts(chain: Chain) -> None:
    posted, filled_at = started(chain)
    ends_at = chain.marketplace.functions.requestEnd(posted.id).call()
    chain.travel_to(ends_at + 1)
    reward_to, collateral_to = chain.accounts.other, chain.accounts.validator
    before = (chain.balance(reward_to), chain.balance(collateral_to))
    host = chain.accounts.hosts[0]
    fn = chain.marketplace.functions.freeSlot(posted.slot_id(0), reward_to, collateral_to)
    chain.send(fn, host)
    payout = (ends_at - filled_at[0]) * posted.ask.price_per_slot_per_second
    assert chain.balance(reward_to) == before[0] + payout
    assert chain.balance(collateral_to) == before[1] + posted.ask.collateral_per_slot


def test_cancelled_request_pays_hosts_until_expiry_and_refunds_the_rest(chain: Chain) -> None:
    client_before = chain.balance(chain.accounts.client)
    posted = chain.post_request(slots=3)
    host = chain.accounts.hosts[0]
    filled_at = block_time(chain, chain.fill(posted, 0, host))
    m = chain.marketplace.functions
    expires_at = m.requestExpiry(posted.id).call()
    chain.travel_to(expires_at + 1)
    assert m.requestState(posted.id).call() == RequestState.CANCELLED
    assert m.slotState(posted.slot_id(0)).call() == SlotState.CANCELLED
    assert m.requestEnd(posted.id).call() == expires_at
    host_before = chain.balance(host)
    free(chain, posted, 0, host)
    payout = (expires_at - filled_at) * posted.ask.price_per_slot_per_second
    assert chain.balance(host) == host_before + payout + posted.ask.collateral_per_slot
    receipt = withdraw(chain, posted)
    assert [bytes(e["requestId"]) for e in chain.events(receipt, "RequestCancelled")] == [posted.id]
    assert chain.balance(chain.accounts.client) == client_before - payout
    assert chain.marketplace_balance() == 0


def test_slot_filled_in_the_second_of_expiry_still_returns_collateral(chain: Chain) -> None:
    # The anchor reverted computing a zero-length payout here, locking the host's collateral for good.
    posted = chain.post_request(slots=2)
    host = chain.accounts.hosts[0]
    chain.reserve(posted, 0, host)
    expires_at = chain.marketplace.functions.requestExpiry(posted.id).call()
    chain.travel_to(expires_at)
    chain.fill(posted, 0, host, reserve=False)
    chain.mine()
    before = chain.balance(host)
    free(chain, posted, 0, host)
    assert chain.balance(host) == before + posted.ask.collateral_per_slot
    withdraw(chain, posted)
    assert chain.marketplace_balance() == 0


def test_failed_request_refunds_client_fully_and_forgets_host_slots(chain: Chain) -> None:
    client_before = chain.balance(chain.accounts.client)
    posted, _ = started(chain, max_slot_loss=0)
    hosts = chain.accounts.hosts
    free(chain, posted, 0, hosts[0])  # walking away from a running slot frees it; with no tolerance, it fails
    m = chain.marketplace.functions
    assert m.requestState(posted.id).call() == RequestState.FAILED
    host_before = chain.balance(hosts[1])
    free(chain, posted, 1, hosts[1])
    assert chain.balance(hosts[1]) == host_before  # a failed request pays nothing
    assert m.mySlots().call({"from": hosts[1]}) == []
    withdraw(chain, posted)
    assert chain.balance(chain.accounts.client) == client_before
    # What stays are the collaterals of the three hosts: forfeited.
    assert chain.marketplace_balance() == 3 * posted.ask.collateral_per_slot


def test_host_leaving_a_running_slot_forfeits_its_collateral(chain: Chain) -> None:
    posted, _ = started(chain)
    host = chain.accounts.hosts[2]
    before = chain.balance(host)
    receipt = free(chain, posted, 2, host)
    assert [e["slotIndex"] for e in chain.events(receipt, "SlotFreed")] == [2]
    assert chain.balance(host) == before
    m = chain.marketplace.functions
    assert m.slotState(posted.slot_id(2)).call() == SlotState.REPAIR
    assert m.requestState(posted.id).call() == RequestState.STARTED
    with chain.expect_revert("InvalidSlotHost"):
        free(chain, posted, 2, host)  # no longer its host


def test_free_slot_guards(chain: Chain) -> None:
    posted = chain.post_request()
    chain.fill(posted, 0, chain.accounts.hosts[0])
    with chain.expect_revert("SlotIsFree"):
        free(chain, posted, 1, chain.accounts.hosts[0])
    with chain.expect_revert("InvalidSlotHost"):
        free(chain, posted, 0, chain.accounts.hosts[1])


def test_withdraw_guards(chain: Chain) -> None:
    posted = chain.post_request()
    with chain.expect_revert("InvalidState"):
        withdraw(chain, posted)
    with chain.expect_revert("InvalidClientAddress"):
        chain.send(chain.marketplace.functions.withdrawFunds(posted.id), chain.accounts.other)
    with chain.expect_revert("UnknownRequest"):
        chain.send(chain.marketplace.functions.withdrawFunds(bytes(32)), chain.accounts.client)
    chain.fill_all(posted)
    with chain.expect_revert("InvalidState"):
        withdraw(chain, posted)


def test_withdraw_to_another_recipient(chain: Chain) -> None:
    posted = chain.post_request()
    chain.travel_to(chain.marketplace.functions.requestExpiry(posted.id).call() + 1)
    before = chain.balance(chain.accounts.other)
    fn = chain.marketplace.functions.withdrawFunds(posted.id, chain.accounts.other)
    chain.send(fn, chain.accounts.client)
    assert chain.balance(chain.accounts.other) == before + posted.ask.max_price


def test_request_end_is_capped_by_now_once_finished(chain: Chain) -> None:
    posted, _ = started(chain)
    m = chain.marketplace.functions
    ends_at = m.requestEnd(posted.id).call()
    chain.travel_to(ends_at + PERIOD)
    assert m.requestEnd(posted.id).call() == ends_at
    assert m.requestState(posted.id).call() == RequestState.FINISHED
