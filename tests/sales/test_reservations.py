"""The reservations book over a KV store and the quota ledger: every operation, every error, the anchor's defects."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from structlog.testing import capture_logs

from codex_node.errors import (
    AvailabilityNotFoundError,
    BytesOutOfBoundsError,
    CollateralOutOfBoundsError,
    KVError,
    NotFoundError,
    QuotaNotEnoughError,
    ReservationNotFoundError,
    UntilOutOfBoundsError,
    ValidationError,
)
from codex_node.market.types import RequestId, slot_id
from codex_node.sales.accounting import check_books, collateral_back
from codex_node.sales.availability import (
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Reservation,
    availability_key,
    reservation_key,
)
from codex_node.sales.reservations import RECLAIM_GRANULE, Reservations
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV

SLOT = 2 * RECLAIM_GRANULE
QUOTA = 10 * SLOT


def rid(n: int) -> RequestId:
    return RequestId(bytes([n]) * 32)


class Books:
    """A book over a fake ledger, with sequential ids and a record of availability-saved callbacks."""

    def __init__(self, kv: MemoryKV | None = None, quota: int = QUOTA) -> None:
        self.kv = kv or MemoryKV()
        self.ledger = FakeQuotaLedger(self.kv, quota)
        self.saved: list[Availability] = []
        ids = itertools.count(1)
        self.book = Reservations(
            self.ledger, on_availability_saved=self.saved.append, new_id=lambda: next(ids).to_bytes(32, "big")
        )

    async def availability(self, size: int = 4 * SLOT, **kw: int | bool) -> Availability:
        args: dict[str, int | bool] = {"duration": 3600, "min_price_per_byte_per_second": 1, "total_collateral": 10**9}
        args.update(kw)
        return await self.book.create_availability(AvailabilityTerms(total_size=size, **args))  # type: ignore[arg-type]

    async def reserve(
        self, a: Availability, n: int = 1, size: int = SLOT, cpb: int = 2, until: int = 900
    ) -> Reservation:
        return await self.book.create_reservation(a.id, size, rid(n), n, cpb, until)

    async def check(self) -> None:
        """The books of ARCHITECTURE.md rule 1, read back from the store."""
        persisted = json.loads(self.kv.get("meta/quota/used") or b'{"used": 0, "reserved": 0}')
        assert persisted["reserved"] == self.ledger.quota.reserved
        availabilities = await self.book.availabilities()
        reservations = await self.book.all_reservations()
        assert check_books(availabilities, reservations, reserved=persisted["reserved"]) == []


@pytest.fixture
def books() -> Books:
    return Books()


# --- availabilities -----------------------------------------------------------------------------------------------


async def test_create_availability_reserves_its_size_and_persists_at_the_anchor_key(books: Books) -> None:
    a = await books.availability(3 * SLOT, until=1234)
    assert books.ledger.quota.reserved == 3 * SLOT
    assert Availability.decode(books.kv.get(availability_key(a.id)) or b"") == a
    assert await books.book.get_availability(a.id) == a
    assert await books.book.availabilities() == [a]
    assert (a.free_size, a.total_remaining_collateral, a.until, a.enabled) == (3 * SLOT, 10**9, 1234, True)
    await books.check()


async def test_create_availability_over_quota_is_refused_and_writes_nothing(books: Books) -> None:
    with pytest.raises(QuotaNotEnoughError):
        await books.availability(QUOTA + 1)
    assert await books.book.availabilities() == []
    assert books.kv.writes == 0


async def test_create_availability_with_a_zero_field_is_refused(books: Books) -> None:
    with pytest.raises(ValidationError):
        await books.availability(duration=0)
    assert books.kv.writes == 0


async def test_creating_an_enabled_availability_fires_the_saved_callback(books: Books) -> None:
    a = await books.availability()
    await books.availability(enabled=False)
    assert books.saved == [a]


async def test_unknown_availability_is_not_found(books: Books) -> None:
    with pytest.raises(AvailabilityNotFoundError):
        await books.book.get_availability(b"\x07" * 32)
    with pytest.raises(NotFoundError):
        await books.book.update_availability(b"\x07" * 32, AvailabilityPatch(duration=5))
    with pytest.raises(NotFoundError):
        await books.book.reservations(b"\x07" * 32)


async def test_update_changes_only_the_fields_given(books: Books) -> None:
    a = await books.availability()
    new = await books.book.update_availability(a.id, AvailabilityPatch(duration=99, enabled=False))
    assert (new.duration, new.enabled, new.total_size, new.min_price_per_byte_per_second) == (
        99,
        False,
        a.total_size,
        1,
    )
    assert await books.book.get_availability(a.id) == new


async def test_update_total_size_checks_the_quota_for_the_increase_only_defect_7(books: Books) -> None:
    a = await books.availability(6 * SLOT)  # 4 SLOTs of quota left
    new = await books.book.update_availability(
        a.id, AvailabilityPatch(total_size=QUOTA)
    )  # nim-codex checked all 10 SLOTs: refused
    assert (new.total_size, new.free_size) == (QUOTA, QUOTA)
    assert books.ledger.quota.reserved == QUOTA
    await books.check()


async def test_update_over_quota_raises_quota_not_enough_and_writes_nothing_defect_12(books: Books) -> None:
    a = await books.availability()
    writes = books.kv.writes
    with pytest.raises(QuotaNotEnoughError):  # an API answers 422 for it (nim-codex: 500)
        await books.book.update_availability(a.id, AvailabilityPatch(total_size=QUOTA + 1))
    assert books.kv.writes == writes
    assert await books.book.get_availability(a.id) == a


async def test_update_total_size_down_releases_quota(books: Books) -> None:
    a = await books.availability(4 * SLOT)
    await books.reserve(a)
    new = await books.book.update_availability(a.id, AvailabilityPatch(total_size=SLOT))
    assert (new.total_size, new.free_size) == (SLOT, 0)
    assert books.ledger.quota.reserved == SLOT
    await books.check()


async def test_update_total_size_below_bytes_in_use_is_refused(books: Books) -> None:
    a = await books.availability(4 * SLOT)
    await books.reserve(a)
    with pytest.raises(ValidationError):
        await books.book.update_availability(a.id, AvailabilityPatch(total_size=SLOT - 1))


async def test_update_free_size_is_refused(books: Books) -> None:
    a = await books.availability()
    with pytest.raises(ValidationError, match="freeSize"):
        await books.book.update_availability(a.id, AvailabilityPatch(free_size=1))


async def test_update_until_before_a_hosted_slot_is_refused(books: Books) -> None:
    a = await books.availability()
    await books.reserve(a, until=900)
    with pytest.raises(UntilOutOfBoundsError):
        await books.book.update_availability(a.id, AvailabilityPatch(until=899))
    assert (await books.book.update_availability(a.id, AvailabilityPatch(until=900))).until == 900


async def test_update_total_collateral_keeps_committed_collateral_defect_6(books: Books) -> None:
    a = await books.availability(total_collateral=10 * SLOT)
    await books.reserve(a, cpb=3)  # commits 3 × SLOT
    new = await books.book.update_availability(a.id, AvailabilityPatch(total_collateral=20 * SLOT))
    assert new.total_remaining_collateral == 17 * SLOT  # nim-codex reset it to 20 × SLOT
    with pytest.raises(CollateralOutOfBoundsError):
        await books.book.update_availability(a.id, AvailabilityPatch(total_collateral=3 * SLOT - 1))
    await books.check()


async def test_enabling_a_disabled_availability_fires_the_saved_callback_defect_3(books: Books) -> None:
    a = await books.availability(enabled=False)
    assert books.saved == []
    enabled = await books.book.update_availability(a.id, AvailabilityPatch(enabled=True))
    assert books.saved == [enabled]


async def test_changes_that_admit_no_new_slot_do_not_fire_the_callback(books: Books) -> None:
    a = await books.availability()
    books.saved.clear()
    await books.book.update_availability(a.id, AvailabilityPatch(duration=10))
    await books.book.update_availability(a.id, AvailabilityPatch(min_price_per_byte_per_second=50))
    await books.book.update_availability(a.id, AvailabilityPatch(duration=10))  # no change at all: not even written
    assert books.saved == []


async def test_a_failing_callback_is_logged_and_the_operation_still_succeeds() -> None:
    books = Books()

    def broken(_a: Availability) -> None:
        raise RuntimeError("listener bug")

    books.book.listen_saved(broken)
    with capture_logs() as logs:
        a = await books.availability()
    assert await books.book.get_availability(a.id) == a
    assert any(e["event"] == "availability-saved callback failed" for e in logs)
    assert books.saved == [a]  # the listeners after the broken one are still told


async def test_a_listener_that_stopped_listening_is_not_told() -> None:
    books = Books()
    heard: list[Availability] = []
    stop = books.book.listen_saved(heard.append)
    first = await books.availability()
    stop()
    await books.availability()
    assert heard == [first]


# --- reservations -------------------------------------------------------------------------------------------------


async def test_create_reservation_takes_bytes_and_collateral_in_one_write(books: Books) -> None:
    a = await books.availability(4 * SLOT, total_collateral=10 * SLOT)
    writes = books.kv.writes
    r = await books.reserve(a, n=3, cpb=2, until=777)
    assert books.kv.writes == writes + 1
    assert (r.size, r.slot_size, r.collateral, r.request_id, r.slot_index, r.valid_until) == (
        SLOT,
        SLOT,
        2 * SLOT,
        rid(3),
        3,
        777,
    )
    assert Reservation.decode(books.kv.get(reservation_key(a.id, r.id)) or b"") == r
    a2 = await books.book.get_availability(a.id)
    assert (a2.free_size, a2.total_remaining_collateral) == (3 * SLOT, 8 * SLOT)
    assert books.ledger.quota.reserved == 4 * SLOT  # bytes moved from free to the reservation: both reserved
    await books.check()


async def test_reservations_are_listed_per_availability_and_never_as_availabilities(books: Books) -> None:
    a = await books.availability()
    b = await books.availability()
    ra = await books.reserve(a, n=1)
    rb1 = await books.reserve(b, n=2)
    rb2 = await books.reserve(b, n=3)
    assert await books.book.reservations(a.id) == [ra]
    assert {r.id for r in await books.book.reservations(b.id)} == {rb1.id, rb2.id}
    assert {r.id for r in await books.book.all_reservations()} == {ra.id, rb1.id, rb2.id}
    assert [x.id for x in await books.book.availabilities()] == [a.id, b.id]
    assert await books.book.get_reservation(ra.id, a.id) == ra


async def test_create_reservation_when_bytes_are_gone_raises_bytes_out_of_bounds(books: Books) -> None:
    a = await books.availability(SLOT)
    await books.reserve(a, n=1)
    with pytest.raises(BytesOutOfBoundsError):
        await books.reserve(a, n=2)


async def test_create_reservation_on_a_disabled_availability_raises_bytes_out_of_bounds(books: Books) -> None:
    a = await books.availability(enabled=False)
    with pytest.raises(BytesOutOfBoundsError):
        await books.reserve(a)


async def test_concurrent_reservations_never_share_the_last_bytes(books: Books) -> None:
    a = await books.availability(SLOT)
    results = await asyncio.gather(*(books.reserve(a, n=n) for n in range(1, 5)), return_exceptions=True)
    assert sum(isinstance(r, Reservation) for r in results) == 1
    assert sum(isinstance(r, BytesOutOfBoundsError) for r in results) == 3
    await books.check()


async def test_release_moves_downloaded_bytes_out_of_the_reservation_and_the_quota_reservation(books: Books) -> None:
    a = await books.availability()
    r = await books.reserve(a)
    await books.book.release(r.id, a.id, 1000)
    assert (await books.book.get_reservation(r.id, a.id)).size == SLOT - 1000
    assert books.ledger.quota.reserved == 4 * SLOT - 1000
    with pytest.raises(BytesOutOfBoundsError):
        await books.book.release(r.id, a.id, SLOT)
    with pytest.raises(ReservationNotFoundError):
        await books.book.release(b"\x09" * 32, a.id, 1)
    await books.check()


async def test_cleanup_returns_bytes_exactly_once_defect_9(books: Books) -> None:
    a = await books.availability(4 * SLOT)
    r = await books.reserve(a)
    await books.book.release(r.id, a.id, SLOT // 2)
    books.ledger.store_blocks(SLOT // 2)
    assert await books.book.delete_reservation(r.id, a.id, 0) is True
    assert await books.book.delete_reservation(r.id, a.id, 0) is False  # a second clean-up returns nothing
    a2 = await books.book.get_availability(a.id)
    assert a2.free_size == a2.total_size == 4 * SLOT  # nim-codex could reach freeSize > totalSize here
    assert await books.book.reservations(a.id) == []
    await books.check()


async def test_cleanup_without_collateral_from_chain_returns_all_committed_collateral_defect_4(books: Books) -> None:
    # An errored (or ignored, or failed-before-filling) sale: its collateral never left, so all of it comes back.
    a = await books.availability(total_collateral=10 * SLOT)
    r = await books.reserve(a, cpb=2)
    await books.book.delete_reservation(r.id, a.id, collateral_back(r, None, filled=False))
    assert (await books.book.get_availability(a.id)).total_remaining_collateral == 10 * SLOT


async def test_cleanup_returns_the_collateral_that_came_back_capped_at_what_was_committed(books: Books) -> None:
    a = await books.availability(total_collateral=10 * SLOT)
    r1 = await books.reserve(a, n=1, cpb=2)
    r2 = await books.reserve(a, n=2, cpb=2)
    await books.book.delete_reservation(r1.id, a.id, SLOT)  # half of it slashed
    await books.book.delete_reservation(r2.id, a.id, 100 * SLOT)  # never more than committed
    assert (await books.book.get_availability(a.id)).total_remaining_collateral == 9 * SLOT
    await books.check()


async def test_cleanup_fires_the_saved_callback_because_bytes_came_back(books: Books) -> None:
    a = await books.availability()
    r = await books.reserve(a)
    books.saved.clear()
    await books.book.delete_reservation(r.id, a.id, r.collateral)
    assert [x.id for x in books.saved] == [a.id]


async def test_downloaded_bytes_wait_for_quota_room_then_return_to_the_availability() -> None:
    books = Books(quota=4 * SLOT)
    a = await books.availability(4 * SLOT)  # the whole quota
    r = await books.reserve(a)
    await books.book.release(r.id, a.id, SLOT)
    books.ledger.store_blocks(SLOT)  # the slot's blocks are in the repo
    await books.book.delete_reservation(r.id, a.id, r.collateral)
    ended = await books.book.get_availability(a.id)
    # The blocks still count as used until maintenance deletes them, so the bytes cannot be reserved yet.
    assert (ended.free_size, ended.returning_size) == (3 * SLOT, SLOT)
    assert await books.book.find_availability(4 * SLOT, 1, 1, 0, 0) is None
    await books.check()
    books.ledger.delete_blocks(SLOT)  # maintenance removed the expired blocks
    found = await books.book.find_availability(4 * SLOT, 1, 1, 0, 0)
    assert found is not None
    assert (found.free_size, found.returning_size) == (4 * SLOT, 0)
    assert books.ledger.quota.reserved == 4 * SLOT
    await books.check()


async def test_returning_bytes_are_reclaimed_in_part_when_only_part_fits() -> None:
    books = Books(quota=8 * SLOT)
    a = await books.availability(8 * SLOT)
    r = await books.reserve(a, size=8 * SLOT, cpb=0)
    await books.book.release(r.id, a.id, 8 * SLOT)
    books.ledger.store_blocks(8 * SLOT)
    await books.book.delete_reservation(r.id, a.id, r.collateral)
    books.ledger.delete_blocks(5 * SLOT)
    assert await books.book.reclaim_returning_bytes() == 4 * SLOT  # all (8) and half (4 ≤ 5): half fits
    assert await books.book.reclaim_returning_bytes() == SLOT  # 4, 2 refused; 1 fits
    a2 = await books.book.get_availability(a.id)
    assert (a2.free_size, a2.returning_size) == (5 * SLOT, 3 * SLOT)
    await books.check()


async def test_delete_inactive_reservations_returns_bytes_and_collateral_defect_5(books: Books) -> None:
    a = await books.availability(4 * SLOT, total_collateral=10 * SLOT)
    active = await books.reserve(a, n=1, cpb=1)
    stale = await books.reserve(a, n=2, cpb=1)
    await books.book.release(stale.id, a.id, 100)
    books.ledger.store_blocks(100)
    deleted = await books.book.delete_inactive_reservations(
        {slot_id(active.request_id, active.slot_index)}, returned_collateral=lambda r: r.collateral
    )
    assert deleted == 1
    assert [r.id for r in await books.book.all_reservations()] == [active.id]
    a2 = await books.book.get_availability(a.id)
    assert a2.free_size == 3 * SLOT  # the stale slot's bytes, downloaded ones included, are back
    assert a2.total_remaining_collateral == 9 * SLOT  # and its collateral (nim-codex returned neither)
    await books.check()


async def test_delete_inactive_reservations_can_be_told_what_collateral_came_back(books: Books) -> None:
    a = await books.availability(total_collateral=10 * SLOT)
    await books.reserve(a, cpb=1)
    await books.book.delete_inactive_reservations(set(), returned_collateral=lambda _r: 0)  # slashed out
    assert (await books.book.get_availability(a.id)).total_remaining_collateral == 9 * SLOT


async def test_find_availability_takes_the_best_fit(books: Books) -> None:
    big = await books.availability(4 * SLOT)
    small = await books.availability(SLOT)
    disabled = await books.availability(SLOT, enabled=False)
    assert (await books.book.find_availability(SLOT, 60, 1, 1, 900)) == small
    assert (await books.book.find_availability(2 * SLOT, 60, 1, 1, 900)) == big
    assert await books.book.find_availability(5 * SLOT, 60, 1, 1, 900) is None
    assert disabled.id not in {big.id, small.id}


# --- crashes ------------------------------------------------------------------------------------------------------


async def test_a_failed_write_changes_nothing_and_a_restart_sees_balanced_books(books: Books) -> None:
    a = await books.availability()
    r = await books.reserve(a)
    before = dict(books.kv.iterate(""))
    books.kv.fail_next_write()
    with pytest.raises(KVError):
        await books.book.delete_reservation(r.id, a.id, r.collateral)
    assert dict(books.kv.iterate("")) == before
    assert books.ledger.quota.reserved == 4 * SLOT  # the cache did not move either
    restarted = Books(books.kv)
    assert await restarted.book.all_reservations() == [r]
    await restarted.check()


async def test_lower_collateral_returns_the_difference_in_one_write_and_never_raises_it(books: Books) -> None:
    a = await books.availability(4 * SLOT, total_collateral=10 * SLOT)
    r = await books.reserve(a, n=1, cpb=2)
    writes = books.kv.writes
    lowered = await books.book.lower_collateral(r.id, a.id, 2 * SLOT - 100)
    assert books.kv.writes == writes + 1
    assert lowered.collateral == 2 * SLOT - 100
    assert await books.book.get_reservation(r.id, a.id) == lowered
    assert (await books.book.get_availability(a.id)).total_remaining_collateral == 8 * SLOT + 100
    assert await books.book.lower_collateral(r.id, a.id, 2 * SLOT) == lowered  # never raised
    assert books.kv.writes == writes + 1
    await books.check()
    # Ending the sale now returns at most what is still committed: the availability is whole once more.
    await books.book.delete_reservation(r.id, a.id, returned_collateral=2 * SLOT)
    assert (await books.book.get_availability(a.id)).total_remaining_collateral == 10 * SLOT
    await books.check()
