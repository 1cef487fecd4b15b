"""reserveSlot / canReserveSlot: who may reserve, the per-slot limit, and when reservations are cleared."""

from __future__ import annotations

from marketplace_harness import MAX_RESERVATIONS, Chain


def can_reserve(chain: Chain, request_id: bytes, index: int, host: str) -> bool:
    return bool(chain.marketplace.functions.canReserveSlot(request_id, index).call({"from": host}))


def test_host_can_reserve_a_free_slot(chain: Chain) -> None:
    posted = chain.post_request()
    host = chain.accounts.hosts[0]
    assert can_reserve(chain, posted.id, 0, host)
    receipt = chain.reserve(posted, 0, host)
    assert chain.events(receipt, "SlotReservationsFull") == []
    assert not can_reserve(chain, posted.id, 0, host)
    assert can_reserve(chain, posted.id, 1, host)


def test_host_cannot_reserve_the_same_slot_twice(chain: Chain) -> None:
    posted = chain.post_request()
    chain.reserve(posted, 0, chain.accounts.hosts[0])
    with chain.expect_revert("ReservationNotAllowed"):
        chain.reserve(posted, 0, chain.accounts.hosts[0])


def test_last_allowed_reservation_emits_slot_reservations_full(chain: Chain) -> None:
    posted = chain.post_request()
    hosts = chain.accounts.hosts
    receipts = [chain.reserve(posted, 1, hosts[i]) for i in range(MAX_RESERVATIONS)]
    (event,) = chain.events(receipts[-1], "SlotReservationsFull")
    assert bytes(event["requestId"]) == posted.id
    assert event["slotIndex"] == 1
    assert all(chain.events(r, "SlotReservationsFull") == [] for r in receipts[:-1])
    assert not can_reserve(chain, posted.id, 1, hosts[MAX_RESERVATIONS])
    with chain.expect_revert("ReservationNotAllowed"):
        chain.reserve(posted, 1, hosts[MAX_RESERVATIONS])


def test_slots_that_do_not_exist_cannot_be_reserved(chain: Chain) -> None:
    posted = chain.post_request(slots=3)
    host = chain.accounts.hosts[0]
    assert not can_reserve(chain, posted.id, 3, host)
    assert not can_reserve(chain, bytes(32), 0, host)
    with chain.expect_revert("ReservationNotAllowed"):
        chain.reserve(posted, 3, host)


def test_filled_slot_cannot_be_reserved(chain: Chain) -> None:
    posted = chain.post_request()
    chain.fill(posted, 0, chain.accounts.hosts[0])
    assert not can_reserve(chain, posted.id, 0, chain.accounts.hosts[1])
    with chain.expect_revert("ReservationNotAllowed"):
        chain.reserve(posted, 0, chain.accounts.hosts[1])


def test_forcibly_freed_slot_clears_reservations_and_can_be_reserved_again(chain: Chain) -> None:
    posted = chain.post_request()
    hosts = chain.accounts.hosts
    for i in range(MAX_RESERVATIONS - 1):
        chain.reserve(posted, 0, hosts[i + 1])
    chain.fill(posted, 0, hosts[0])
    # freeSlot on a running slot is a forcible free: the slot goes to Repair and its reservations are purged.
    chain.send(chain.marketplace.functions.freeSlot(posted.slot_id(0)), hosts[0])
    for host in hosts:
        assert can_reserve(chain, posted.id, 0, host)
    for i in range(MAX_RESERVATIONS):
        chain.reserve(posted, 0, hosts[i])
