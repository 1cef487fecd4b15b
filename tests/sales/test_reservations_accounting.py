"""The pure parts of the reservations book: records, keys, bookkeeping arithmetic and matching (no I/O)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codex_node.errors import (
    BytesOutOfBoundsError,
    CollateralOutOfBoundsError,
    ReservationsError,
    UntilOutOfBoundsError,
    ValidationError,
)
from codex_node.market.types import RequestId, SlotState
from codex_node.sales import accounting
from codex_node.sales.accounting import SlotOnChain
from codex_node.sales.availability import (
    RESERVATIONS_PREFIX,
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Reservation,
    after_reservations_of,
    availability_key,
    is_availability_key,
    reservation_key,
    reservations_prefix,
)
from codex_node.sales.matching import best_fit, matches

AID = bytes.fromhex("aa" * 32)
RID = RequestId(bytes.fromhex("cc" * 32))


def avail(**kw: object) -> Availability:
    base = accounting.new_availability(
        AID, AvailabilityTerms(total_size=1000, duration=3600, min_price_per_byte_per_second=10, total_collateral=5000)
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def reserve(
    a: Availability, slot_size: int = 100, cpb: int = 2, valid_until: int = 500, n: int = 1
) -> tuple[Availability, Reservation]:
    return accounting.reserve(
        a,
        reservation_id=bytes([n]) * 32,
        slot_size=slot_size,
        request_id=RID,
        slot_index=n,
        collateral_per_byte=cpb,
        valid_until=valid_until,
    )


def books_balance(a: Availability, held: list[Reservation]) -> bool:
    return accounting.check_books([a], held) == []


# --- records and keys -----------------------------------------------------------------------------------------------


def test_availability_and_reservation_round_trip_through_json() -> None:
    a = avail(total_collateral=1 << 200, total_remaining_collateral=(1 << 200) - 1, until=99, returning_size=3)
    assert Availability.decode(a.encode()) == a
    _, r = reserve(avail())
    assert Reservation.decode(r.encode()) == r


def test_token_amounts_are_json_strings_and_ids_are_0x_hex() -> None:
    d = avail().to_json()
    assert d["id"] == "0x" + "aa" * 32
    assert d["totalCollateral"] == "5000"
    assert d["minPricePerBytePerSecond"] == "10"
    assert d["totalSize"] == 1000


def test_corrupt_record_raises_a_reservations_error() -> None:
    with pytest.raises(ReservationsError):
        Availability.decode(b"{not json")
    with pytest.raises(ReservationsError):
        Reservation.decode(b'{"id": "0x00"}')


def test_keys_follow_the_anchor_layout() -> None:
    assert availability_key(AID) == "meta/sales/reservations/" + "aa" * 32
    assert reservation_key(AID, b"\x01" * 32) == "meta/sales/reservations/" + "aa" * 32 + "/" + "01" * 32
    assert is_availability_key(availability_key(AID))
    assert not is_availability_key(reservation_key(AID, b"\x01" * 32))


def test_one_availabilitys_reservation_prefix_matches_no_other_availability() -> None:
    short, longer = b"\x01", b"\x01\x02"  # one id's hex is a prefix of the other's
    prefix = reservations_prefix(short)
    assert reservation_key(short, b"\x09").startswith(prefix)
    assert not availability_key(longer).startswith(prefix)
    assert not reservation_key(longer, b"\x09").startswith(prefix)


def test_after_reservations_of_sorts_between_an_availabilitys_reservations_and_the_next_availability() -> None:
    a, b = b"\x10" * 32, b"\x11" * 32
    marker = after_reservations_of(a)
    assert reservation_key(a, b"\xff" * 32) < marker < availability_key(b)
    assert marker.startswith(RESERVATIONS_PREFIX)


# --- creating and patching --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["total_size", "duration", "min_price_per_byte_per_second", "total_collateral"])
def test_new_availability_requires_positive_values(field: str) -> None:
    values = {"total_size": 1, "duration": 1, "min_price_per_byte_per_second": 1, "total_collateral": 1, field: 0}
    with pytest.raises(ValidationError):
        accounting.new_availability(AID, AvailabilityTerms(**values))


def test_new_availability_refuses_negative_until() -> None:
    with pytest.raises(UntilOutOfBoundsError):
        accounting.new_availability(
            AID,
            AvailabilityTerms(total_size=1, duration=1, min_price_per_byte_per_second=1, total_collateral=1, until=-1),
        )


def test_new_availability_has_everything_free() -> None:
    a = avail()
    assert (a.free_size, a.total_remaining_collateral, a.enabled, a.until) == (1000, 5000, True, 0)


def test_patch_cannot_set_free_size() -> None:
    with pytest.raises(ValidationError, match="freeSize"):
        accounting.apply_patch(avail(), AvailabilityPatch(free_size=5), [])


def test_patch_total_size_moves_free_size_and_reserves_only_the_difference_defect_7() -> None:
    a, _ = reserve(avail())
    new, delta = accounting.apply_patch(a, AvailabilityPatch(total_size=1500), [])
    assert delta == 500  # nim-codex checked the quota for all 1500
    assert (new.total_size, new.free_size) == (1500, 1400)
    smaller, delta = accounting.apply_patch(a, AvailabilityPatch(total_size=100), [])
    assert delta == -900
    assert (smaller.total_size, smaller.free_size) == (100, 0)


def test_patch_total_size_below_the_bytes_in_use_is_refused() -> None:
    a, _ = reserve(avail(), slot_size=300)
    a = replace(a, returning_size=50, free_size=a.free_size - 50)  # returning bytes count as in use too
    with pytest.raises(ValidationError, match="350"):
        accounting.apply_patch(a, AvailabilityPatch(total_size=349), [])


def test_patch_total_collateral_keeps_collateral_committed_to_hosted_slots_defect_6() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=3)  # commits 300 of 5000
    new, _ = accounting.apply_patch(a, AvailabilityPatch(total_collateral=6000), [r])
    assert new.total_remaining_collateral == 5700  # nim-codex: 6000, as if nothing were committed
    assert books_balance(new, [r])
    lower, _ = accounting.apply_patch(a, AvailabilityPatch(total_collateral=1000), [r])
    assert lower.total_remaining_collateral == 700
    assert books_balance(lower, [r])


def test_patch_total_collateral_below_committed_is_refused() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=3)
    with pytest.raises(CollateralOutOfBoundsError):
        accounting.apply_patch(a, AvailabilityPatch(total_collateral=299), [r])


def test_patch_total_collateral_never_makes_the_remainder_negative() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=3)
    slashed = replace(a, total_remaining_collateral=a.total_remaining_collateral - 4500)  # 4500 lost on chain
    new, _ = accounting.apply_patch(slashed, AvailabilityPatch(total_collateral=300), [r])
    assert new.total_remaining_collateral == 0
    assert books_balance(new, [r])


def test_patch_until_before_a_hosted_slot_is_refused_but_zero_and_equal_are_fine() -> None:
    a, r = reserve(avail(), valid_until=500)
    with pytest.raises(UntilOutOfBoundsError):
        accounting.apply_patch(a, AvailabilityPatch(until=499), [r])
    assert accounting.apply_patch(a, AvailabilityPatch(until=500), [r])[0].until == 500
    assert accounting.apply_patch(a, AvailabilityPatch(until=0), [r])[0].until == 0
    with pytest.raises(UntilOutOfBoundsError):
        accounting.apply_patch(a, AvailabilityPatch(until=-1), [])


@pytest.mark.parametrize("field", ["total_size", "duration", "min_price_per_byte_per_second", "total_collateral"])
def test_patch_refuses_zero_values(field: str) -> None:
    with pytest.raises(ValidationError):
        accounting.apply_patch(avail(), AvailabilityPatch(**{field: 0}), [])


def test_patch_of_plain_fields() -> None:
    new, delta = accounting.apply_patch(
        avail(), AvailabilityPatch(duration=9, min_price_per_byte_per_second=3, enabled=False), []
    )
    assert (new.duration, new.min_price_per_byte_per_second, new.enabled, delta) == (9, 3, False, 0)


# --- reservations -------------------------------------------------------------------------------------------------


def test_reserve_moves_bytes_and_collateral_without_quota_change() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2, valid_until=700)
    assert (a.free_size, a.total_remaining_collateral) == (900, 4800)
    assert (r.size, r.slot_size, r.collateral, r.valid_until, r.availability_id) == (100, 100, 200, 700, AID)
    assert books_balance(a, [r])


@pytest.mark.parametrize(
    ("availability", "kwargs", "error"),
    [
        (avail(), {"slot_size": 1001}, BytesOutOfBoundsError),
        (avail(enabled=False), {}, BytesOutOfBoundsError),
        (avail(), {"slot_size": 100, "cpb": 51}, CollateralOutOfBoundsError),
        (avail(until=499), {"valid_until": 500}, UntilOutOfBoundsError),
    ],
    ids=["too-big", "disabled", "collateral", "until"],
)
def test_reserve_rechecks_the_availability(availability: Availability, kwargs: dict[str, int], error: type) -> None:
    with pytest.raises(error):
        reserve(availability, **kwargs)


def test_release_shrinks_the_reservation_and_the_quota_reservation() -> None:
    _, r = reserve(avail(), slot_size=100)
    r2, delta = accounting.release(r, 40)
    assert (r2.size, r2.downloaded, delta) == (60, 40, -40)
    with pytest.raises(BytesOutOfBoundsError):
        accounting.release(r2, 61)


def test_end_reservation_returns_every_byte_once_defect_9() -> None:
    a, r = reserve(avail(), slot_size=100)
    r, _ = accounting.release(r, 30)
    ended = accounting.end_reservation(a, r, r.collateral)
    # the 70 never downloaded are free again; the 30 downloaded wait for quota room; nothing counted twice
    assert (ended.free_size, ended.returning_size) == (970, 30)
    assert books_balance(ended, [])
    assert ended.free_size + ended.returning_size == ended.total_size


def test_end_reservation_returns_all_committed_collateral_when_it_never_went_on_chain_defect_4() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2)
    back = accounting.collateral_back(r, SlotOnChain(SlotState.FREE, hosted=False), filled=False)
    assert accounting.end_reservation(a, r, back).total_remaining_collateral == 5000


def test_end_reservation_returns_what_came_back_capped_at_what_was_committed() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2)
    assert accounting.end_reservation(a, r, 150).total_remaining_collateral == 4950  # 50 slashed
    assert accounting.end_reservation(a, r, 10_000).total_remaining_collateral == 5000
    assert accounting.end_reservation(a, r, -5).total_remaining_collateral == 4800


def test_reclaim_moves_returning_bytes_to_free_and_reserves_them() -> None:
    a = avail(free_size=900, returning_size=100)
    new, delta = accounting.reclaim(a, 60)
    assert (new.free_size, new.returning_size, delta) == (960, 40, 60)
    with pytest.raises(BytesOutOfBoundsError):
        accounting.reclaim(new, 41)


# --- when the slot queue deserves another look ----------------------------------------------------------------------


def test_a_new_enabled_availability_admits_more_and_a_disabled_one_does_not() -> None:
    assert accounting.admits_more(None, avail())
    assert not accounting.admits_more(None, avail(enabled=False))


def test_enabling_alone_admits_more_defect_3() -> None:
    assert accounting.admits_more(avail(enabled=False), avail(enabled=True))


@pytest.mark.parametrize(
    "change",
    [
        {"free_size": 1001, "total_size": 1001},
        {"duration": 3601},
        {"min_price_per_byte_per_second": 9},
        {"total_remaining_collateral": 5001},
        {"until": 0},
    ],
)
def test_changes_that_could_match_more_slots_admit_more(change: dict[str, int]) -> None:
    old = avail(until=100) if "until" in change else avail()
    assert accounting.admits_more(old, replace(old, **change))  # type: ignore[arg-type]


def test_later_until_admits_more() -> None:
    assert accounting.admits_more(avail(until=100), avail(until=101))


@pytest.mark.parametrize(
    "change",
    [{"duration": 10}, {"min_price_per_byte_per_second": 11}, {"until": 50}, {"enabled": False}, {}],
)
def test_changes_that_match_no_new_slot_do_not_admit_more(change: dict[str, object]) -> None:
    old = avail(until=100)
    assert not accounting.admits_more(old, replace(old, **change))  # type: ignore[arg-type]


# --- matching -------------------------------------------------------------------------------------------------------


ASK = {
    "slot_size": 100,
    "duration": 3600,
    "price_per_byte_per_second": 10,
    "collateral_per_byte": 5,
    "valid_until": 900,
}


def test_an_availability_meeting_every_rule_matches() -> None:
    assert matches(avail(), **ASK)


@pytest.mark.parametrize(
    ("availability", "ask_change"),
    [
        (avail(enabled=False), {}),
        (avail(), {"slot_size": 1001}),
        (avail(), {"duration": 3601}),
        (avail(), {"collateral_per_byte": 6}),  # 5000 remaining over 1000 free bytes: at most 5 per byte
        (avail(), {"price_per_byte_per_second": 9}),
        (avail(until=899), {}),
    ],
    ids=["disabled", "too-big", "too-long", "collateral", "price", "until"],
)
def test_each_rule_can_exclude_an_availability(availability: Availability, ask_change: dict[str, int]) -> None:
    assert not matches(availability, **{**ASK, **ask_change})


def test_max_collateral_per_byte_of_a_full_availability_is_its_remaining_collateral() -> None:
    assert avail(free_size=0, total_remaining_collateral=7).max_collateral_per_byte == 7


def test_best_fit_takes_the_smallest_free_size_that_holds_the_slot() -> None:
    big = avail(id=b"\x01" * 32, free_size=1000, total_remaining_collateral=100_000)
    small = avail(id=b"\x02" * 32, free_size=200, total_remaining_collateral=100_000)
    too_small = avail(id=b"\x03" * 32, free_size=99, total_remaining_collateral=100_000)
    assert best_fit([big, small, too_small], **ASK) == small
    assert best_fit([too_small], **ASK) is None
    assert best_fit([], **ASK) is None


def test_best_fit_breaks_ties_by_id_whatever_the_order() -> None:
    a = avail(id=b"\x02" * 32)
    b = avail(id=b"\x01" * 32)
    assert best_fit([a, b], **ASK) == b
    assert best_fit([b, a], **ASK) == b


def test_lower_collateral_moves_the_difference_back_and_keeps_the_books() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2)
    a2, r2 = accounting.lower_collateral(a, r, 150)
    assert (r2.collateral, a2.total_remaining_collateral) == (150, a.total_remaining_collateral + 50)
    assert books_balance(a2, [r2])
    assert accounting.lower_collateral(a, r, 200) == (a, r)
    assert accounting.lower_collateral(a, r, 300) == (a, r)
    with pytest.raises(CollateralOutOfBoundsError):
        accounting.lower_collateral(a, r, -1)


# --- the collateral that comes back at the end of a sale -----------------------------------------------------------


def chain(state: SlotState, *, hosted: bool, held: int = 0) -> SlotOnChain:
    return SlotOnChain(state, hosted, held)


@pytest.mark.parametrize(
    ("on_chain", "filled", "back"),
    [
        # never went on chain: all of it (nim-codex returned none, defects #4 and #5)
        (chain(SlotState.FREE, hosted=False), False, 200),
        (chain(SlotState.FILLED, hosted=False), False, 200),  # another host won the slot
        (chain(SlotState.CANCELLED, hosted=False), None, 200),
        (None, False, 200),  # the chain could not be read, and no fill of ours is known
        (None, None, 200),
        # ours and paid: what the payout sent back, never more than was committed
        (chain(SlotState.PAID, hosted=True, held=200), True, 200),
        (chain(SlotState.PAID, hosted=True, held=150), None, 150),  # slashed before the payout
        (chain(SlotState.PAID, hosted=True, held=260), True, 200),  # a repair fill committed less
        # ours and not paid: still in the contract, or kept by it
        (chain(SlotState.FAILED, hosted=True, held=200), True, 0),
        (chain(SlotState.FILLED, hosted=True, held=200), True, 0),
        (chain(SlotState.FINISHED, hosted=True, held=200), True, 0),  # freeSlot failed: not collected yet
        (chain(SlotState.CANCELLED, hosted=True, held=200), False, 0),  # a fill mined though its call failed
        (None, True, 0),
        # our fill went through and the slot is not ours any more: slashed out
        (chain(SlotState.REPAIR, hosted=False), True, 0),
    ],
)
def test_collateral_back_is_decided_by_the_chain_and_the_fill(
    on_chain: SlotOnChain | None, filled: bool | None, back: int
) -> None:
    _, r = reserve(avail(), slot_size=100, cpb=2)
    assert accounting.collateral_back(r, on_chain, filled=filled) == back


def test_at_start_up_a_fully_stored_slot_now_in_repair_returns_nothing_and_a_partial_one_everything() -> None:
    _, r = reserve(avail(), slot_size=100, cpb=2)
    stored, _ = accounting.release(r, 100)
    repair = chain(SlotState.REPAIR, hosted=False)
    assert accounting.collateral_back(stored, repair, filled=None) == 0  # most likely slashed out
    assert accounting.collateral_back(r, repair, filled=None) == 200
    assert accounting.collateral_back(stored, repair, filled=False) == 200  # a running agent knows it never filled


# --- the books -------------------------------------------------------------------------------------------------------


def test_check_books_finds_nothing_wrong_in_balanced_books() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2)
    r, _ = accounting.release(r, 40)
    reserved = a.free_size + r.size
    assert accounting.check_books([a], [r], reserved=reserved, used=40, stored=40, quota_max=reserved + 40) == []


def test_check_books_names_every_broken_rule() -> None:
    a, r = reserve(avail(), slot_size=100, cpb=2)
    problems = accounting.check_books(
        [replace(a, free_size=a.free_size + 1, total_remaining_collateral=a.total_collateral)],
        [r, replace(r, id=b"\x09" * 32, availability_id=b"\x77" * 32)],
        reserved=0,
        used=5,
        stored=4,
        quota_max=1,
    )
    text = "\n".join(problems)
    assert "does not exist" in text
    assert "!= totalSize" in text
    assert "> totalCollateral" in text
    assert "quota: reserved 0" in text
    assert "used 5 != the 4 bytes stored" in text
    assert "> max 1" in text
    assert len(problems) == 6
