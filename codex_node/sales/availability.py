"""Availability and Reservation records: their fields, their JSON encoding and their keys in the metadata store.

An **availability** is space and collateral an operator offers for sale; a **reservation** is the part of one
availability set aside for one slot. Keys follow nim-codex (anchor §3.1)::

    meta/sales/reservations/<availabilityId>                   an availability
    meta/sales/reservations/<availabilityId>/<reservationId>   one of its reservations

Ids are 32 random bytes, written as 64 lowercase hex digits in keys and as ``0x``-prefixed hex in JSON. One
availability's reservations are scanned with the prefix ``.../<availabilityId>/``: the trailing slash keeps it from
matching any other availability, and a listing tells the two record types apart by that slash.

Each field is written once, on its record, with its width (:data:`Uint64`, :data:`TokenAmount`: what the
contract's ``uint64``/``uint256`` and the node can hold); the JSON encoding, the API's request and response
models (``api/routes/sales.py``) and the PATCH are all derived from these declarations (:func:`field_kinds`).

Amounts of tokens (prices, collateral) are JSON strings, as in the REST API, so no reader rounds them through a
float; sizes, durations and timestamps are JSON integers.

This module is pure: no I/O, no arithmetic beyond what a record says about itself (``sales/accounting.py`` does
the bookkeeping).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, TypeVar

from annotated_types import Interval

from codex_node.errors import ReservationsError
from codex_node.market.types import RequestId

RESERVATIONS_PREFIX = "meta/sales/reservations/"

UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1


class _DecimalString:
    """Marks a field written as a decimal string in JSON: token amounts, which no reader may round via a float."""

    def __repr__(self) -> str:
        return "DECIMAL_STRING"


DECIMAL_STRING = _DecimalString()

Uint64 = Annotated[int, Interval(ge=0, le=UINT64_MAX)]
"""Sizes, durations and timestamps: the contract holds them as ``uint64``."""
TokenAmount = Annotated[int, Interval(ge=0, le=UINT256_MAX), DECIMAL_STRING]
"""Prices and collateral, in the token's smallest unit: the contract holds them as ``uint256``."""

T = TypeVar("T")


class Kind(Enum):
    """How a record field is written in JSON."""

    INT = "int"
    BOOL = "bool"
    DECIMAL = "decimal"
    """An integer written as a decimal string (:data:`TokenAmount`)."""
    HEX = "hex"
    """Bytes written as ``0x`` + lowercase hex."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AvailabilityTerms:
    """What an operator offers: the fields ``POST /sales/availability`` takes."""

    total_size: Uint64
    """Bytes offered; reserved in the repo quota."""
    duration: Uint64
    """Longest contract duration (seconds) this availability accepts."""
    min_price_per_byte_per_second: TokenAmount
    total_collateral: TokenAmount
    """Collateral budget for all slots of this availability."""
    enabled: bool = True
    """When false no new slot is matched; slots already hosted are not affected."""
    until: Uint64 = 0
    """Latest time (absolute, seconds) a hosted slot may end; 0: no limit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Availability(AvailabilityTerms):
    """Space and collateral offered for sale: the operator's terms and what is left of them.

    Books (ARCHITECTURE.md rule 1), kept by ``sales/accounting.py``:
    ``free_size + returning_size + Σ reservation.slot_size == total_size`` and
    ``total_remaining_collateral + Σ reservation.collateral <= total_collateral``.
    """

    id: bytes
    free_size: Uint64
    """Bytes not promised to any slot; reserved in the repo quota."""
    total_remaining_collateral: TokenAmount
    """Collateral not committed to a reservation (and not lost to slashing)."""
    returning_size: Uint64 = 0
    """Bytes of ended sales whose blocks still count as used in the quota: they return to ``free_size`` once the
    quota has room for them again (when the repo's maintenance has deleted the expired blocks)."""

    @property
    def max_collateral_per_byte(self) -> int:
        """The most collateral per byte a new slot may ask (anchor §3.1): what is left, spread over the free bytes."""
        if self.free_size == 0:
            return self.total_remaining_collateral
        return self.total_remaining_collateral // self.free_size

    def to_json(self) -> dict[str, Any]:
        return record_json(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Availability:
        return record_from_json(cls, d)

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Availability:
        return _decode(cls.from_json, raw, "availability")


@dataclass(frozen=True, slots=True, kw_only=True)
class AvailabilityPatch:
    """A PATCH of an availability's terms: every field ``None`` stays as it is. ``free_size`` exists only to be
    refused with a clear message (``accounting.apply_patch``)."""

    total_size: Uint64 | None = None
    free_size: Uint64 | None = None
    duration: Uint64 | None = None
    min_price_per_byte_per_second: TokenAmount | None = None
    total_collateral: TokenAmount | None = None
    enabled: bool | None = None
    until: Uint64 | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Bytes and collateral of one availability set aside for one slot."""

    id: bytes
    availability_id: bytes
    size: Uint64
    """Bytes still to download; reserved in the repo quota. Shrinks as blocks arrive (``release``)."""
    request_id: RequestId
    slot_index: Uint64
    valid_until: Uint64
    """When the slot's contract ends (absolute seconds); the availability's ``until`` may not go below it."""
    slot_size: Uint64
    """The slot's full size: ``slot_size - size`` bytes have been downloaded and are held as used quota."""
    collateral: TokenAmount
    """Collateral taken from the availability for this slot; at most this much goes back when the sale ends."""

    @property
    def downloaded(self) -> int:
        return self.slot_size - self.size

    def to_json(self) -> dict[str, Any]:
        return record_json(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Reservation:
        return record_from_json(cls, d)

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Reservation:
        return _decode(cls.from_json, raw, "reservation")


# --- the JSON encoding, from the declarations --------------------------------------------------------------------


_KINDS: dict[type, dict[str, Kind]] = {}


def field_kinds(cls: type) -> dict[str, Kind]:
    """Each field of the record class ``cls`` (in declaration order) and how it is written in JSON."""
    kinds = _KINDS.get(cls)
    if kinds is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        kinds = _KINDS[cls] = {f.name: _kind(hints[f.name]) for f in dataclasses.fields(cls)}
    return kinds


def _kind(hint: Any) -> Kind:
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union or type(hint).__name__ == "UnionType":
        (hint,) = [a for a in args if a is not type(None)]  # an optional field: its kind is the value's
        args = typing.get_args(hint)
    if typing.get_origin(hint) is Annotated:
        base, *meta = args
        return Kind.DECIMAL if DECIMAL_STRING in meta else _kind(base)
    hint = getattr(hint, "__supertype__", hint)  # RequestId and the like
    if hint is bool:
        return Kind.BOOL
    if hint is bytes:
        return Kind.HEX
    if hint is int:
        return Kind.INT
    raise TypeError(f"no JSON kind for {hint!r}")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def hex0x(b: bytes) -> str:
    return "0x" + b.hex()


_ENCODE: dict[Kind, Callable[[Any], Any]] = {Kind.INT: int, Kind.BOOL: bool, Kind.DECIMAL: str, Kind.HEX: hex0x}


def _decode_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value


_DECODE: dict[Kind, Callable[[Any], Any]] = {
    Kind.INT: int,
    Kind.BOOL: _decode_bool,
    Kind.DECIMAL: int,
    Kind.HEX: lambda s: bytes.fromhex(str(s).removeprefix("0x")),
}


def record_json(record: Any) -> dict[str, Any]:
    """The JSON object of a record: camelCase names, amounts as decimal strings, bytes as ``0x`` hex."""
    return {camel(name): _ENCODE[kind](getattr(record, name)) for name, kind in field_kinds(type(record)).items()}


def record_from_json(cls: type[T], d: dict[str, Any]) -> T:
    """The record ``cls`` of a JSON object :func:`record_json` wrote; a field with a default may be absent."""
    defaults = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}  # type: ignore[arg-type]
    values = {
        name: _DECODE[kind](d[camel(name)])
        for name, kind in field_kinds(cls).items()
        if name not in defaults or camel(name) in d
    }
    return cls(**values)


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


def _decode(from_json: Callable[[dict[str, Any]], T], raw: bytes, what: str) -> T:
    try:
        return from_json(json.loads(raw))
    except (ValueError, KeyError, TypeError) as e:
        raise ReservationsError(f"corrupt {what} record: {e!r}") from e
