"""requestStorage: validation, funds taken, ids, and the request views."""

from __future__ import annotations

from typing import Any

import pytest
from marketplace_harness import BLOCK_SIZE, PERIOD, REQUEST_DURATION_LIMIT, Chain

from codex_node.market.types import RequestState, request_id


def test_request_emits_storage_requested_with_python_computed_id(chain: Chain) -> None:
    posted = chain.new_request()
    created = chain.now()
    receipt = chain.request_storage(posted)
    (event,) = chain.events(receipt, "StorageRequested")
    assert bytes(event["requestId"]) == request_id(posted.request)
    assert tuple(event["ask"].values()) == posted.ask.to_abi()
    assert event["expiry"] == created + posted.request.expiry


def test_request_takes_max_price_from_client(chain: Chain) -> None:
    before = chain.balance(chain.accounts.client)
    posted = chain.post_request(slots=3, duration=10 * PERIOD, price_per_byte_per_second=2)
    max_price = 3 * 10 * PERIOD * 2 * BLOCK_SIZE
    assert posted.ask.max_price == max_price
    assert chain.balance(chain.accounts.client) == before - max_price
    assert chain.marketplace_balance() == max_price


def test_request_views_after_posting(chain: Chain) -> None:
    created = chain.now()
    posted = chain.post_request()
    m = chain.marketplace.functions
    assert m.getRequest(posted.id).call() == posted.request.to_abi()
    assert m.requestState(posted.id).call() == RequestState.NEW
    assert m.requestExpiry(posted.id).call() == created + posted.request.expiry
    assert m.requestEnd(posted.id).call() == created + posted.ask.duration
    assert m.myRequests().call({"from": chain.accounts.client}) == [posted.id]
    assert m.myRequests().call({"from": chain.accounts.other}) == []


def test_request_becomes_cancelled_after_expiry_without_all_slots(chain: Chain) -> None:
    posted = chain.post_request()
    expires_at = chain.marketplace.functions.requestExpiry(posted.id).call()
    chain.travel_to(expires_at)
    assert chain.marketplace.functions.requestState(posted.id).call() == RequestState.NEW
    chain.mine()
    assert chain.marketplace.functions.requestState(posted.id).call() == RequestState.CANCELLED
    assert chain.marketplace.functions.requestEnd(posted.id).call() == expires_at


def test_request_of_another_client_is_refused(chain: Chain) -> None:
    posted = chain.new_request(client=chain.accounts.other)
    with chain.expect_revert("InvalidClientAddress"):
        chain.request_storage(posted, sender=chain.accounts.client)


def test_same_request_twice_is_refused(chain: Chain) -> None:
    posted = chain.post_request()
    with chain.expect_revert("RequestAlreadyExists"):
        chain.request_storage(posted)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"expiry": 0}, "InvalidExpiry"),
        ({"expiry": 20 * PERIOD, "duration": 20 * PERIOD}, "InvalidExpiry"),
        ({"slots": 0, "max_slot_loss": 0}, "InsufficientSlots"),
        ({"slots": 2, "max_slot_loss": 3}, "InvalidMaxSlotLoss"),
        ({"slot_size": 0}, "InvalidSlotSize"),
        ({"slot_size": BLOCK_SIZE + 2048}, "InvalidSlotSize"),
        ({"slot_size": BLOCK_SIZE // 2}, "InvalidSlotSize"),
        ({"proof_probability": 0}, "InsufficientProofProbability"),
        ({"collateral_per_byte": 0}, "InsufficientCollateral"),
        ({"price_per_byte_per_second": 0}, "InsufficientReward"),
        ({"cid": b""}, "InvalidCid"),
        ({"duration": REQUEST_DURATION_LIMIT + 1}, "DurationExceedsLimit"),
    ],
)
def test_invalid_request_is_refused(chain: Chain, overrides: dict[str, Any], error: str) -> None:
    posted = chain.new_request(**overrides)
    with chain.expect_revert(error):
        chain.request_storage(posted)


def test_request_at_duration_limit_is_accepted(chain: Chain) -> None:
    posted = chain.post_request(duration=REQUEST_DURATION_LIMIT)
    assert chain.marketplace.functions.requestState(posted.id).call() == RequestState.NEW


def test_views_of_unknown_request_revert(chain: Chain) -> None:
    unknown = bytes(31) + b"\x01"
    with chain.expect_revert("UnknownRequest"):
        chain.marketplace.functions.getRequest(unknown).call()
    with chain.expect_revert("UnknownRequest"):
        chain.marketplace.functions.requestState(unknown).call()


def test_request_without_allowance_reverts_with_the_token_error(chain: Chain) -> None:
    other = chain.accounts.other
    chain.send(chain.token.functions.approve(chain.marketplace.address, 0), other)
    posted = chain.new_request(client=other)
    with chain.expect_revert("ERC20InsufficientAllowance"):
        chain.request_storage(posted, sender=other)
    assert chain.marketplace.functions.myRequests().call({"from": other}) == []
