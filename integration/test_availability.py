"""Anchor §8.2 "Sales" over a real process on Hardhat: availability create, list and update, and every refusal of
``POST``/``PATCH /sales/availability`` with its status and message, each leaving the books and the quota as they
were. (A ``totalSize`` below the bytes in use and an ``until`` before a hosted slot's end need a hosted slot: they
are checked in ``test_marketplace.py``.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from codex_node.client.errors import ApiError, BadRequestError, NotFoundApiError, UnprocessableError
from integration.localnet import LocalNet, LocalNode

QUOTA = 8 * 1024 * 1024
SIZE = 1024 * 1024
WALLET = 10**24  # what codex-node deploy --fund minted


@pytest.fixture(scope="module")
def seller(net: LocalNet) -> LocalNode:
    return net.add_node("seller", "--storage-quota", str(QUOTA))


def snapshot(node: LocalNode) -> tuple[Any, ...]:
    """What a refused request must leave as it was: the availabilities, the reserved quota, the books."""
    space = node.api.space()
    return (node.api.list_availabilities(), space.quota_reserved_bytes, node.api.debug_books().balanced)


def test_availabilities_are_created_listed_and_updated_with_the_quota_following(seller: LocalNode) -> None:
    reserved = seller.api.space().quota_reserved_bytes
    created = seller.api.create_availability(
        total_size=SIZE, duration=3600, min_price_per_byte_per_second=2, total_collateral=5000, until=0
    )
    assert (created.total_size, created.free_size, created.duration) == (SIZE, SIZE, 3600)
    assert (created.min_price_per_byte_per_second, created.total_collateral) == (2, 5000)
    assert created.total_remaining_collateral == 5000
    assert created.enabled
    assert [a.id for a in seller.api.list_availabilities()] == [created.id]
    assert seller.api.space().quota_reserved_bytes == reserved + SIZE  # the offered bytes are set aside

    seller.api.update_availability(created.id, total_size=2 * SIZE, enabled=False, until=2_000_000_000)
    (updated,) = seller.api.list_availabilities()
    assert (updated.total_size, updated.free_size, updated.enabled, updated.until) == (
        2 * SIZE,
        2 * SIZE,
        False,
        2_000_000_000,
    )
    assert seller.api.space().quota_reserved_bytes == reserved + 2 * SIZE
    seller.api.update_availability(created.id, total_collateral=7000, min_price_per_byte_per_second=3, duration=60)
    (updated,) = seller.api.list_availabilities()
    assert (updated.total_collateral, updated.total_remaining_collateral) == (7000, 7000)
    assert (updated.min_price_per_byte_per_second, updated.duration) == (3, 60)
    assert seller.api.debug_books().balanced


def offer(**change: int) -> dict[str, int]:
    return {
        "total_size": SIZE,
        "duration": 3600,
        "min_price_per_byte_per_second": 1,
        "total_collateral": 1000,
        "until": 0,
    } | change


CREATE_REFUSALS: list[tuple[str, dict[str, int], type[ApiError], str]] = [
    ("a size of 0", offer(total_size=0), UnprocessableError, "totalSize"),
    ("a duration of 0", offer(duration=0), UnprocessableError, "duration"),
    ("a price of 0", offer(min_price_per_byte_per_second=0), UnprocessableError, "minPricePerBytePerSecond"),
    ("a collateral of 0", offer(total_collateral=0), UnprocessableError, "totalCollateral"),
    ("a negative until", offer(until=-1), UnprocessableError, "until"),
    ("more bytes than the quota", offer(total_size=QUOTA + 1), UnprocessableError, "quota"),
    ("more collateral than the wallet", offer(total_collateral=WALLET + 1), UnprocessableError, "collateral"),
]


@pytest.mark.parametrize(("what", "body", "error", "fragment"), CREATE_REFUSALS, ids=[c[0] for c in CREATE_REFUSALS])
def test_a_refused_availability_is_a_4xx_naming_the_field_and_nothing_is_written(
    seller: LocalNode, what: str, body: dict[str, int], error: type[ApiError], fragment: str
) -> None:
    before = snapshot(seller)
    with pytest.raises(error) as refused:
        seller.api.create_availability(**body)  # type: ignore[arg-type]
    assert fragment.lower() in refused.value.message.lower(), refused.value.message
    assert snapshot(seller) == before


RAW_REFUSALS: list[tuple[str, str, Callable[[str], str], bytes, int, str]] = [
    ("POST malformed JSON", "POST", lambda _: "/sales/availability", b"{not json", 400, "json"),
    ("POST a missing field", "POST", lambda _: "/sales/availability", b'{"totalSize": 1024}', 400, "duration"),
    ("PATCH a malformed id", "PATCH", lambda _: "/sales/availability/0x12", b"{}", 400, "availability id"),
    ("PATCH freeSize", "PATCH", lambda i: f"/sales/availability/{i}", b'{"freeSize": 1}', 422, "freeSize"),
]


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "status", "fragment"), RAW_REFUSALS, ids=[c[0] for c in RAW_REFUSALS]
)
def test_a_malformed_request_is_refused_with_a_message_saying_what_to_fix(
    seller: LocalNode, what: str, method: str, path: Callable[[str], str], body: bytes, status: int, fragment: str
) -> None:
    """What the typed client cannot send (it only builds well-formed bodies), sent as raw HTTP."""
    target = existing(seller)
    before = snapshot(seller)
    answer = httpx.request(
        method, seller.url + path(target), content=body, headers={"content-type": "application/json"}, timeout=10
    )
    assert answer.status_code == status, answer.text
    assert fragment.lower() in answer.text.lower(), answer.text
    assert snapshot(seller) == before


def existing(node: LocalNode) -> str:
    """The id of an availability of ``node`` (one is created if it has none)."""
    found = node.api.list_availabilities()
    if found:
        return found[0].id
    return node.api.create_availability(
        total_size=SIZE, duration=3600, min_price_per_byte_per_second=1, total_collateral=1000
    ).id


PATCH_REFUSALS: list[tuple[str, dict[str, int], type[ApiError], str]] = [
    ("a size of 0", {"total_size": 0}, UnprocessableError, "totalSize"),
    ("more bytes than the quota", {"total_size": QUOTA + 1}, UnprocessableError, "quota"),
    ("more collateral than the wallet", {"total_collateral": WALLET + 1}, UnprocessableError, "collateral"),
    ("a negative until", {"until": -1}, UnprocessableError, "until"),
]


@pytest.mark.parametrize(("what", "change", "error", "fragment"), PATCH_REFUSALS, ids=[c[0] for c in PATCH_REFUSALS])
def test_a_refused_update_is_a_4xx_naming_the_field_and_changes_nothing(
    seller: LocalNode, what: str, change: dict[str, int], error: type[ApiError], fragment: str
) -> None:
    target = existing(seller)
    before = snapshot(seller)
    with pytest.raises(error) as refused:
        seller.api.update_availability(target, **change)  # type: ignore[arg-type]
    assert fragment.lower() in refused.value.message.lower(), refused.value.message
    assert snapshot(seller) == before


def test_updating_an_unknown_availability_is_404(seller: LocalNode) -> None:
    with pytest.raises(NotFoundApiError):
        seller.api.update_availability("0x" + "ab" * 32, total_size=SIZE)
    with pytest.raises(NotFoundApiError):
        seller.api.list_reservations("0x" + "ab" * 32)


def test_a_malformed_id_is_400(seller: LocalNode) -> None:
    with pytest.raises(BadRequestError):
        seller.api.list_reservations("not-an-id")
