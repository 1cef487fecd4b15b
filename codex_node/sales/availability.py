"""Availability and Reservation records: their fields, their JSON encoding and their keys in the metadata store.

An **availability** is space and collateral an operator offers for sale; a **reservation** is the part of one
availability set aside for one slot. Keys follow nim-codex (anchor §3.1)::

    meta/sales/reservations/<availabilityId>                   an availability
    meta/sales/reservations/<availabilityId>/<reservationId>   one of its reservations

Ids are 32 random bytes, written as 64 lowercase hex digits in keys and as ``0x``-prefixed hex in JSON. One
availability's reservations are scanned with the prefix ``.../<availabilityId>/``: the trailing slash keeps it from
matching any other availability, and a listing tells the two record types apart by that slash.

Amounts of tokens (prices, collateral) are JSON strings, as in the REST API, so no reader rounds them through a
float; sizes, durations and timestamps are JSON integers.

This module is pure: no I/O, no arithmetic beyond what a record says about itself (``sales/accounting.py`` does
the bookkeeping).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from codex_node.errors import ReservationsError
from codex_node.market.types import RequestId

RESERVATIONS_PREFIX = "meta/sales/reservations/"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Availability:
    """Space and collateral offered for sale.

    Books (ARCHITECTURE.md rule 1), kept by ``sales/accounting.py``:
    ``free_size + returning_size + Σ reservation.slot_size == total_size`` and
    ``total_remaining_collateral + Σ reservation.collateral <= total_collateral``.
    """

    id: bytes
    total_size: int
    free_size: int
    """Bytes not promised to any slot; reserved in the repo quota."""
    duration: int
    """Longest contract duration (seconds) this availability accepts."""
    min_price_per_byte_per_second: int
    total_collateral: int
    total_remaining_collateral: int
    """Collateral not committed to a reservation (and not lost to slashing)."""
    enabled: bool = True
    """When false no new slot is matched; slots already hosted are not affected."""
    until: int = 0
    """Latest time (absolute, seconds) a hosted slot may end; 0: no limit."""
    returning_size: int = 0
    """Bytes of ended sales whose blocks still count as used in the quota: they return to ``free_size`` once the
    quota has room for them again (when the repo's maintenance has deleted the expired blocks)."""

    @property
    def max_collateral_per_byte(self) -> int:
        """The most collateral per byte a new slot may ask (anchor §3.1): what is left, spread over the free bytes."""
        if self.free_size == 0:
            return self.total_remaining_collateral
        return self.total_remaining_collateral // self.free_size

    def to_json(self) -> dict[str, Any]:
        return {
            "id": _hex(self.id),
            "totalSize": self.total_size,
            "freeSize": self.free_size,
            "duration": self.duration,
            "minPricePerBytePerSecond": str(self.min_price_per_byte_per_second),
            "totalCollateral": str(self.total_collateral),
            "totalRemainingCollateral": str(self.total_remaining_collateral),
            "enabled": self.enabled,
            "until": self.until,
            "returningSize": self.returning_size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Availability:
        return cls(
            id=_unhex(d["id"]),
            total_size=int(d["totalSize"]),
            free_size=int(d["freeSize"]),
            duration=int(d["duration"]),
            min_price_per_byte_per_second=int(d["minPricePerBytePerSecond"]),
            total_collateral=int(d["totalCollateral"]),
            total_remaining_collateral=int(d["totalRemainingCollateral"]),
            enabled=bool(d["enabled"]),
            until=int(d["until"]),
            returning_size=int(d.get("returningSize", 0)),
        )

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Availability:
        return _decode(cls.from_json, raw, "availability")


@dataclass(frozen=True, slots=True)
class Reservation:
    """Bytes and collateral of one availability set aside for one slot."""

    id: bytes
    availability_id: bytes
    size: int
    """Bytes still to download; reserved in the repo quota. Shrinks as blocks arrive (``release``)."""
    request_id: RequestId
    slot_index: int
    valid_until: int
    """When the slot's contract ends (absolute seconds); the availability's ``until`` may not go below it."""
    slot_size: int
    """The slot's full size: ``slot_size - size`` bytes have been downloaded and are held as used quota."""
    collateral: int
    """Collateral taken from the availability for this slot; at most this much goes back when the sale ends."""

    @property
    def downloaded(self) -> int:
        return self.slot_size - self.size

    def to_json(self) -> dict[str, Any]:
        return {
            "id": _hex(self.id),
            "availabilityId": _hex(self.availability_id),
            "size": self.size,
            "requestId": _hex(self.request_id),
            "slotIndex": self.slot_index,
            "validUntil": self.valid_until,
            "slotSize": self.slot_size,
            "collateral": str(self.collateral),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Reservation:
        return cls(
            id=_unhex(d["id"]),
            availability_id=_unhex(d["availabilityId"]),
            size=int(d["size"]),
            request_id=RequestId(_unhex(d["requestId"])),
            slot_index=int(d["slotIndex"]),
            valid_until=int(d["validUntil"]),
            slot_size=int(d["slotSize"]),
            collateral=int(d["collateral"]),
        )

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Reservation:
        return _decode(cls.from_json, raw, "reservation")


# --- keys -------------------------------------------------------------------------------------------------------


def availability_key(availability_id: bytes) -> str:
    return f"{RESERVATIONS_PREFIX}{availability_id.hex()}"


def reservations_prefix(availability_id: bytes) -> str:
    """Prefix of exactly one availability's reservations (the trailing ``/`` matters)."""
    return f"{RESERVATIONS_PREFIX}{availability_id.hex()}/"


def reservation_key(availability_id: bytes, reservation_id: bytes) -> str:
    return f"{reservations_prefix(availability_id)}{reservation_id.hex()}"


def is_availability_key(key: str) -> bool:
    """True for ``.../<availabilityId>``, false for ``.../<availabilityId>/<reservationId>``."""
    return key.startswith(RESERVATIONS_PREFIX) and "/" not in key[len(RESERVATIONS_PREFIX) :]


def after_reservations_of(availability_id: bytes) -> str:
    """A key that sorts after every reservation of ``availability_id`` and before the next availability.

    ``~`` sorts after every hex digit, and ids are fixed-length hex, so no real key falls between.
    """
    return f"{reservations_prefix(availability_id)}~"


# --- helpers ------------------------------------------------------------------------------------------------------


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s.removeprefix("0x"))


def _decode(from_json: Callable[[dict[str, Any]], T], raw: bytes, what: str) -> T:
    try:
        return from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        raise ReservationsError(f"corrupt {what} record: {e!r}") from e
