"""Which availability takes a slot: the rules of anchor §3.2 ``findAvailability``, then the best fit.

Best fit (MARKETPLACE.md §3) is the matching availability with the *smallest* ``free_size`` that holds the slot, so
a large availability is not carved up while a smaller one would do (nim-codex took the first match in key order).
Ties go to the smaller id, so the choice never depends on storage order.

:func:`explain` states each rule's verdict for one availability (the request explainer,
``GET /sales/requests/{requestId}/match``, and the reason an ignored sale gives); :func:`matches` is "every rule
passes". Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from codex_node.sales.availability import Availability, hex0x

RULES = ("enabled", "size", "duration", "collateral", "price", "until")
"""The rules in the order they are checked and reported."""


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """One rule's verdict: ``detail`` gives the numbers compared, so the operator sees what to change."""

    rule: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class AvailabilityVerdict:
    """Whether one availability takes the slot, and why (every rule, passed or not)."""

    availability_id: bytes
    checks: tuple[RuleCheck, ...]

    @property
    def matches(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[RuleCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)


def explain(
    availability: Availability,
    *,
    slot_size: int,
    duration: int,
    price_per_byte_per_second: int,
    collateral_per_byte: int,
    valid_until: int,
) -> AvailabilityVerdict:
    """Every rule of anchor §3.2 for ``availability`` against a slot, with the numbers compared."""
    a = availability
    until_ok = a.until == 0 or a.until >= valid_until
    checks = (
        RuleCheck("enabled", a.enabled, "enabled" if a.enabled else "the availability is disabled"),
        RuleCheck("size", slot_size <= a.free_size, f"slot size {slot_size} vs free size {a.free_size}"),
        RuleCheck("duration", duration <= a.duration, f"duration {duration} vs availability duration {a.duration}"),
        RuleCheck(
            "collateral",
            collateral_per_byte <= a.max_collateral_per_byte,
            f"collateral per byte {collateral_per_byte} vs maxCollateralPerByte {a.max_collateral_per_byte}",
        ),
        RuleCheck(
            "price",
            price_per_byte_per_second >= a.min_price_per_byte_per_second,
            f"price per byte per second {price_per_byte_per_second} vs minPricePerBytePerSecond "
            f"{a.min_price_per_byte_per_second}",
        ),
        RuleCheck(
            "until",
            until_ok,
            "no until" if a.until == 0 else f"contract ends at {valid_until} vs availability until {a.until}",
        ),
    )
    return AvailabilityVerdict(a.id, checks)


def why_not(verdicts: Sequence[AvailabilityVerdict]) -> str:
    """The reason an ignored sale gives: each availability with the rules it failed (or that there is none)."""
    if not verdicts:
        return "no availability matches: there are no availabilities"
    parts = [
        f"{hex0x(v.availability_id)[:10]}… failed {', '.join(f'{c.rule} ({c.detail})' for c in v.failed)}"
        for v in verdicts
        if not v.matches
    ]
    return "no availability matches: " + "; ".join(parts)


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
    return explain(
        availability,
        slot_size=slot_size,
        duration=duration,
        price_per_byte_per_second=price_per_byte_per_second,
        collateral_per_byte=collateral_per_byte,
        valid_until=valid_until,
    ).matches


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
