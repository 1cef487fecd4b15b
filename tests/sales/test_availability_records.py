"""The availability and reservation records: each field declared once, the JSON encoding and the API models
derived from the declarations, and records written before this encoding still read back."""

from __future__ import annotations

import dataclasses
import json

from codex_node.api.routes.sales import SalesAvailability, SalesAvailabilityPatch, SalesAvailabilityRead
from codex_node.market.types import RequestId
from codex_node.sales.availability import (
    Availability,
    AvailabilityPatch,
    AvailabilityTerms,
    Kind,
    Reservation,
    field_kinds,
)

# Written by the encoder this module replaced (one to_json per record): the on-disk format must not change.
STORED_AVAILABILITY = (
    '{"id":"0x' + "ab" * 32 + '","totalSize":655360,"freeSize":524288,"duration":7200,'
    '"minPricePerBytePerSecond":"115792089237316195423570985008687907853269984665640564039457584007913129639935",'
    '"totalCollateral":"6553600","totalRemainingCollateral":"6356992","enabled":false,"until":2000000000,'
    '"returningSize":65536}'
)
STORED_BEFORE_RETURNING_SIZE = (
    '{"id":"0x' + "cd" * 32 + '","totalSize":1,"freeSize":1,"duration":1,"minPricePerBytePerSecond":"1",'
    '"totalCollateral":"1","totalRemainingCollateral":"1","enabled":true,"until":0}'
)
STORED_RESERVATION = (
    '{"id":"0x'
    + "01" * 32
    + '","availabilityId":"0x'
    + "ab" * 32
    + '","size":65536,"requestId":"0x'
    + "02" * 32
    + '","slotIndex":3,"validUntil":2000000000,"slotSize":131072,"collateral":"196608"}'
)


def test_a_stored_availability_reads_back_and_encodes_to_the_same_json() -> None:
    a = Availability.decode(STORED_AVAILABILITY.encode())
    assert a == Availability(
        id=b"\xab" * 32,
        total_size=655360,
        free_size=524288,
        duration=7200,
        min_price_per_byte_per_second=2**256 - 1,
        total_collateral=6553600,
        total_remaining_collateral=6356992,
        enabled=False,
        until=2_000_000_000,
        returning_size=65536,
    )
    assert json.loads(a.encode()) == json.loads(STORED_AVAILABILITY)


def test_an_availability_stored_before_returning_size_existed_reads_with_zero() -> None:
    assert Availability.decode(STORED_BEFORE_RETURNING_SIZE.encode()).returning_size == 0


def test_a_stored_reservation_reads_back_and_encodes_to_the_same_json() -> None:
    r = Reservation.decode(STORED_RESERVATION.encode())
    assert r.request_id == RequestId(b"\x02" * 32)
    assert (r.slot_index, r.collateral, r.downloaded) == (3, 196608, 65536)
    assert json.loads(r.encode()) == json.loads(STORED_RESERVATION)


def test_an_availability_is_its_terms_plus_its_books() -> None:
    terms = {f.name for f in dataclasses.fields(AvailabilityTerms)}
    assert terms < {f.name for f in dataclasses.fields(Availability)}
    patchable = {f.name for f in dataclasses.fields(AvailabilityPatch)}
    assert patchable == terms | {"free_size"}  # free_size: only to refuse it with a clear message


def test_token_amounts_and_ids_are_written_as_strings() -> None:
    kinds = field_kinds(Availability)
    assert [n for n, k in kinds.items() if k is Kind.DECIMAL] == [
        "min_price_per_byte_per_second",
        "total_collateral",
        "total_remaining_collateral",
    ]
    assert kinds["id"] is Kind.HEX
    assert field_kinds(Reservation)["request_id"] is Kind.HEX
    assert field_kinds(AvailabilityPatch)["total_collateral"] is Kind.DECIMAL


def test_the_api_models_are_the_records() -> None:
    assert issubclass(SalesAvailability, AvailabilityTerms)
    assert issubclass(SalesAvailabilityPatch, AvailabilityPatch)
    assert issubclass(SalesAvailabilityRead, Availability)
    for model, record in (
        (SalesAvailability, AvailabilityTerms),
        (SalesAvailabilityPatch, AvailabilityPatch),
        (SalesAvailabilityRead, Availability),
    ):
        assert [f.name for f in dataclasses.fields(model)] == [f.name for f in dataclasses.fields(record)]


def test_the_api_shows_an_availability_as_its_record_json() -> None:
    a = Availability.decode(STORED_AVAILABILITY.encode())
    shown = SalesAvailabilityRead.__pydantic_serializer__.to_python(SalesAvailabilityRead.of(a), by_alias=True)
    assert shown == a.to_json()
