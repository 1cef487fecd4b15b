"""The bookkeeping of availabilities and reservations, as pure functions over records.

Each function takes records and returns new records plus the change to the repo quota's ``reserved`` bytes; the
shell (``sales/reservations.py``) writes the result and the quota in one batch. The books they keep
(ARCHITECTURE.md rule 1), for every availability ``a`` with reservations ``R``:

- bytes: ``a.free_size + a.returning_size + Σ r.slot_size == a.total_size``;
- quota: ``reserved == Σ a.free_size + Σ r.size`` over all availabilities and reservations;
- collateral: ``0 <= a.total_remaining_collateral`` and ``a.total_remaining_collateral + Σ r.collateral <=
  a.total_collateral``.

Where nim-codex got these wrong (MARKETPLACE.md §5) the rule is stated at the function that fixes it.
This module must never do I/O or read a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

from codex_node.errors import (
    BytesOutOfBoundsError,
    CollateralOutOfBoundsError,
    UntilOutOfBoundsError,
    ValidationError,
)
from codex_node.market.types import RequestId, SlotState
from codex_node.sales.availability import Availability, AvailabilityPatch, AvailabilityTerms, Reservation


def new_availability(availability_id: bytes, terms: AvailabilityTerms) -> Availability:
    """A fresh availability on ``terms``; the caller reserves ``terms.total_size`` in the quota with it."""
    _require_positive(
        totalSize=terms.total_size,
        duration=terms.duration,
        minPricePerBytePerSecond=terms.min_price_per_byte_per_second,
        totalCollateral=terms.total_collateral,
    )
    _check_until(terms.until, ())
    given = {f.name: getattr(terms, f.name) for f in fields(AvailabilityTerms)}
    return Availability(
        **given, id=availability_id, free_size=terms.total_size, total_remaining_collateral=terms.total_collateral
    )


def apply_patch(
    availability: Availability, patch: AvailabilityPatch, hosted: Sequence[Reservation]
) -> tuple[Availability, int]:
    """The availability after ``patch`` and the quota change, given the reservations it ``hosted``.

    - ``freeSize`` cannot be set; ``totalSize`` cannot go below the bytes in use (``totalSize - freeSize``) and
      moves ``freeSize`` by the same amount. Only the *difference* is reserved or released (anchor defect #7
      checked the quota for the whole new size).
    - ``totalCollateral`` moves the remaining collateral by the same amount, so collateral committed to hosted
      slots stays committed (defect #6 reset the remainder to the new total). Collateral already lost to
      slashing is not refunded by re-stating the total; the remainder never goes below zero, and the total may
      not go below what hosted slots have committed.
    - ``until`` may not end before a hosted slot's contract does.
    """
    if patch.free_size is not None:
        raise ValidationError("Updating freeSize is not allowed")
    _require_positive(
        totalSize=patch.total_size,
        duration=patch.duration,
        minPricePerBytePerSecond=patch.min_price_per_byte_per_second,
        totalCollateral=patch.total_collateral,
    )
    a = availability
    reserved_delta = 0
    if patch.total_size is not None and patch.total_size != a.total_size:
        in_use = a.total_size - a.free_size
        if patch.total_size < in_use:
            raise ValidationError(f"totalSize must not be less than the {in_use} bytes in use (totalSize - freeSize)")
        reserved_delta = patch.total_size - a.total_size
        a = replace(a, total_size=patch.total_size, free_size=a.free_size + reserved_delta)
    if patch.total_collateral is not None and patch.total_collateral != a.total_collateral:
        committed = sum(r.collateral for r in hosted)
        if patch.total_collateral < committed:
            raise CollateralOutOfBoundsError(
                f"totalCollateral must not be less than the {committed} committed to hosted slots"
            )
        remaining = max(0, a.total_remaining_collateral + patch.total_collateral - a.total_collateral)
        a = replace(a, total_collateral=patch.total_collateral, total_remaining_collateral=remaining)
    if patch.until is not None:
        _check_until(patch.until, hosted)
        a = replace(a, until=patch.until)
    if patch.duration is not None:
        a = replace(a, duration=patch.duration)
    if patch.min_price_per_byte_per_second is not None:
        a = replace(a, min_price_per_byte_per_second=patch.min_price_per_byte_per_second)
    if patch.enabled is not None:
        a = replace(a, enabled=patch.enabled)
    return a, reserved_delta


def reserve(
    availability: Availability,
    *,
    reservation_id: bytes,
    slot_size: int,
    request_id: RequestId,
    slot_index: int,
    collateral_per_byte: int,
    valid_until: int,
) -> tuple[Availability, Reservation]:
    """Take a slot's bytes and collateral from the availability. No quota change: free bytes were reserved already.

    The availability is checked again (it may have changed since it was matched): a refusal here is a lost race,
    and :class:`BytesOutOfBoundsError` says so for bytes and for a disabled availability alike.
    """
    if slot_size <= 0:
        raise ValueError("slot_size must be positive")
    if collateral_per_byte < 0:
        raise ValueError("collateral_per_byte must not be negative")
    a = availability
    if not a.enabled:
        raise BytesOutOfBoundsError("availability is disabled: it reserves no more bytes")
    if slot_size > a.free_size:
        raise BytesOutOfBoundsError(f"slot of {slot_size} bytes does not fit the {a.free_size} free bytes")
    collateral = slot_size * collateral_per_byte
    if collateral > a.total_remaining_collateral:
        raise CollateralOutOfBoundsError(f"slot needs {collateral} collateral, {a.total_remaining_collateral} remains")
    if a.until != 0 and valid_until > a.until:
        raise UntilOutOfBoundsError(f"slot ends at {valid_until}, after the availability's until {a.until}")
    reservation = Reservation(
        id=reservation_id,
        availability_id=a.id,
        size=slot_size,
        request_id=request_id,
        slot_index=slot_index,
        valid_until=valid_until,
        slot_size=slot_size,
        collateral=collateral,
    )
    a = replace(
        a, free_size=a.free_size - slot_size, total_remaining_collateral=a.total_remaining_collateral - collateral
    )
    return a, reservation


def release(reservation: Reservation, nbytes: int) -> tuple[Reservation, int]:
    """``nbytes`` of the slot were stored: they leave the reservation and the quota's reserved bytes (the repo
    counts them as used instead). Returns the reservation and the quota change (``-nbytes``)."""
    if nbytes < 0:
        raise ValueError("nbytes must not be negative")
    if nbytes > reservation.size:
        raise BytesOutOfBoundsError(f"cannot release {nbytes} bytes, the reservation holds {reservation.size}")
    return replace(reservation, size=reservation.size - nbytes), -nbytes


def lower_collateral(
    availability: Availability, reservation: Reservation, collateral: int
) -> tuple[Availability, Reservation]:
    """The slot will take only ``collateral`` (a repair's discounted fill): the rest of what the reservation set
    aside goes back to the availability now. Quota change: none. Never raises a reservation's collateral.

    Without this, an ending in which the contract keeps what was posted (request failed) lost the full
    ``collateralPerSlot`` from the availability, though only the discounted amount ever left the wallet.
    """
    if collateral < 0:
        raise CollateralOutOfBoundsError(f"collateral must not be negative, got {collateral}")
    if collateral >= reservation.collateral:
        return availability, reservation
    back = reservation.collateral - collateral
    return (
        replace(availability, total_remaining_collateral=availability.total_remaining_collateral + back),
        replace(reservation, collateral=collateral),
    )


@dataclass(frozen=True, slots=True)
class SlotOnChain:
    """What the chain says about a sale's slot when the sale ends (read after any ``freeSlot`` of the ending)."""

    state: SlotState
    hosted: bool
    """The contract names this node as the slot's host (``getHost``; it stays set once the slot is paid)."""
    held: int = 0
    """The slot's ``currentCollateral``: what the contract holds for the host, and what a payout sent back."""


def collateral_back(reservation: Reservation, chain: SlotOnChain | None, *, filled: bool | None) -> int:
    """The collateral that returns to the availability when ``reservation``'s sale ends. The one place this is
    decided: the ending states (through ``SalesAgent.end_sale``) and the start-up clean-up of leftover
    reservations both call it.

    ``chain`` is the slot as read at the end (``None``: it could not be read). ``filled`` says whether this node's
    fill is known to have gone through: ``True``/``False`` for a running agent, ``None`` at start-up for a
    reservation whose sale is over (nobody remembers).

    - We host the slot and it is **paid**: the payout sent ``held`` back (capped at what the reservation
      committed; a repair fill committed less than the contract pays back, the difference was its reward).
    - We host it in any other state: the collateral is in the contract — kept for good (request failed), or
      still there because the sale is abandoned or its collection failed; a restart that still finds the slot
      in ``mySlots`` resumes it and collects then. Nothing comes back now.
    - We do not host it and our fill went through: we were slashed out (repair). Nothing comes back.
    - At start-up (``filled`` unknown), a slot in repair whose reservation holds no bytes any more was stored in
      full and then, most likely, lost to slashing: nothing comes back.
    - Otherwise the collateral never went on chain, and all of it comes back (nim-codex returned none, §5 #4/#5).
      The same when the chain cannot be read and no fill of ours is known.
    """
    committed = reservation.collateral
    if chain is None:
        return 0 if filled else committed
    if chain.hosted:
        return max(0, min(chain.held, committed)) if chain.state == SlotState.PAID else 0
    if filled:
        return 0
    if filled is None and chain.state == SlotState.REPAIR and reservation.size == 0:
        return 0
    return committed


def end_reservation(availability: Availability, reservation: Reservation, returned_collateral: int) -> Availability:
    """The availability once ``reservation``'s sale has ended, whatever the ending. Quota change: none.

    All the slot's bytes come back, once (defect #9 returned the downloaded ones twice): the part never
    downloaded straight to ``free_size`` (it is still reserved), the downloaded part to ``returning_size`` until
    the quota has room for it again (:func:`reclaim`). Collateral comes back as ``returned_collateral`` (decided by
    :func:`collateral_back`), capped at what the reservation committed.
    """
    returned = max(0, min(returned_collateral, reservation.collateral))
    return replace(
        availability,
        free_size=availability.free_size + reservation.size,
        returning_size=availability.returning_size + reservation.downloaded,
        total_remaining_collateral=availability.total_remaining_collateral + returned,
    )


def check_books(
    availabilities: Sequence[Availability],
    reservations: Sequence[Reservation],
    *,
    reserved: int | None = None,
    used: int | None = None,
    stored: int | None = None,
    quota_max: int | None = None,
) -> list[str]:
    """Every way the books break ARCHITECTURE.md rule 1 (and the collateral rules above); ``[]`` when they balance.

    ``reserved``/``used``/``quota_max`` are the repo quota's and ``stored`` the sum of the stored blocks' sizes; each
    is checked when given (``None``: the caller cannot say, e.g. a check of the records alone). The one
    statement of the invariant: the tests, the debug route and any operator check use it.
    """
    problems: list[str] = []
    by_availability: dict[bytes, list[Reservation]] = {a.id: [] for a in availabilities}
    for r in reservations:
        name = f"reservation {r.id.hex()}"
        if r.availability_id not in by_availability:
            problems.append(f"{name}: its availability {r.availability_id.hex()} does not exist")
            continue
        by_availability[r.availability_id].append(r)
        if not 0 <= r.size <= r.slot_size:
            problems.append(f"{name}: size {r.size} is outside 0..slotSize {r.slot_size}")
        if r.collateral < 0:
            problems.append(f"{name}: collateral {r.collateral} is negative")
    for a in availabilities:
        name = f"availability {a.id.hex()}"
        held = by_availability[a.id]
        if a.free_size < 0 or a.returning_size < 0:
            problems.append(f"{name}: freeSize {a.free_size} or returningSize {a.returning_size} is negative")
        in_slots = sum(r.slot_size for r in held)
        if a.free_size + a.returning_size + in_slots != a.total_size:
            problems.append(
                f"{name}: freeSize {a.free_size} + returningSize {a.returning_size} + slot bytes {in_slots} "
                f"!= totalSize {a.total_size}"
            )
        if a.total_remaining_collateral < 0:
            problems.append(f"{name}: remaining collateral {a.total_remaining_collateral} is negative")
        committed = sum(r.collateral for r in held)
        if a.total_remaining_collateral + committed > a.total_collateral:
            problems.append(
                f"{name}: remaining collateral {a.total_remaining_collateral} + committed {committed} "
                f"> totalCollateral {a.total_collateral}"
            )
    expected = sum(a.free_size for a in availabilities) + sum(r.size for r in reservations)
    if reserved is not None and reserved != expected:
        problems.append(f"quota: reserved {reserved} != Σ freeSize + Σ reservation size {expected}")
    if used is not None and stored is not None and used != stored:
        problems.append(f"quota: used {used} != the {stored} bytes stored")
    if quota_max is not None and used is not None and reserved is not None and used + reserved > quota_max:
        problems.append(f"quota: used {used} + reserved {reserved} > max {quota_max}")
    return problems


def reclaim(availability: Availability, nbytes: int) -> tuple[Availability, int]:
    """Move ``nbytes`` of returning bytes back to ``free_size``; they are reserved in the quota again (``+nbytes``)."""
    if not 0 <= nbytes <= availability.returning_size:
        raise BytesOutOfBoundsError(f"cannot reclaim {nbytes} of {availability.returning_size} returning bytes")
    a = replace(
        availability,
        free_size=availability.free_size + nbytes,
        returning_size=availability.returning_size - nbytes,
    )
    return a, nbytes


def admits_more(old: Availability | None, new: Availability) -> bool:
    """Whether ``new`` could match a slot that ``old`` could not: the slot queue then deserves another look.

    True for a new or newly enabled availability (defect #3 ignored enabling), more free bytes, a longer
    duration, a lower minimum price, more remaining collateral or more per byte, or a later (or no) ``until``.
    """
    if not new.enabled:
        return False
    if old is None or not old.enabled:
        return True
    return (
        new.free_size > old.free_size
        or new.duration > old.duration
        or new.min_price_per_byte_per_second < old.min_price_per_byte_per_second
        or new.total_remaining_collateral > old.total_remaining_collateral
        or new.max_collateral_per_byte > old.max_collateral_per_byte
        or (old.until != 0 and (new.until == 0 or new.until > old.until))
    )


def _require_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ValidationError(f"{name} must be greater than 0")


def _check_until(until: int, hosted: Sequence[Reservation]) -> None:
    if until < 0:
        raise UntilOutOfBoundsError("until must not be negative")
    if until == 0 or not hosted:
        return
    latest = max(r.valid_until for r in hosted)
    if latest > until:
        raise UntilOutOfBoundsError(
            f"until must be greater than or equal to the longest currently hosted slot ({latest})"
        )
