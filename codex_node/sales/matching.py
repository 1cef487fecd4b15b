"""Which availability takes a slot: the rules of anchor §3.2 ``findAvailability``, then the best fit.

Best fit (MARKETPLACE.md §3) is the matching availability with the *smallest* ``free_size`` that holds the slot, so
a large availability is not carved up while a smaller one would do (nim-codex took the first match in key order).
Ties go to the smaller id, so the choice never depends on storage order. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from codex_node.sales.availability import Availability


def matches(
    availability: Availability,
    *,
    slot_size: int,
    duration: int,
    price_per_byte_per_second: int,
    collateral_per_byte: int,
    valid_until: int,
) -> bool:
    """Every rule of anchor §3.2: enabled, room for the slot, long enough, cheap enough in collateral, paid
    enough, and (when it has an ``until``) lasting at least until the contract ends."""
    a = availability
    return (
        a.enabled
        and slot_size <= a.free_size
        and duration <= a.duration
        and collateral_per_byte <= a.max_collateral_per_byte
        and price_per_byte_per_second >= a.min_price_per_byte_per_second
        and (a.until == 0 or a.until >= valid_until)
    )


def best_fit(
    availabilities: Iterable[Availability],
    *,
    slot_size: int,
    duration: int,
    price_per_byte_per_second: int,
    collateral_per_byte: int,
    valid_until: int,
) -> Availability | None:
    """The matching availability with the least free space (then the smallest id), or ``None``."""
    candidates = [
        a
        for a in availabilities
        if matches(
            a,
            slot_size=slot_size,
            duration=duration,
            price_per_byte_per_second=price_per_byte_per_second,
            collateral_per_byte=collateral_per_byte,
            valid_until=valid_until,
        )
    ]
    return min(candidates, key=lambda a: (a.free_size, a.id), default=None)
