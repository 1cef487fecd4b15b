"""Signed peer records: made, encoded, and decoded by a decoder that trusts nothing."""

from __future__ import annotations

import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codex_node.errors import PeerRecordError
from codex_node.peers.identity import NodeKey
from codex_node.peers.record import (
    DOMAIN,
    MAX_TEXT,
    MAX_URLS,
    PREFIX,
    PeerRecord,
    check_url,
    decode_record,
    make_record,
)

KEY = NodeKey.from_seed(bytes(range(32)))
OTHER = NodeKey.from_seed(bytes(range(1, 33)))
URLS = ("http://127.0.0.1:8080/api/codex/v1", "https://node.example.org/api/codex/v1")


def raw_of(record: PeerRecord) -> bytes:
    text = record.text[len(PREFIX) :]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def text_of(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def resign(body: bytes, key: NodeKey = KEY) -> bytes:
    return body + key.sign(DOMAIN + body)


def test_a_record_round_trips_with_every_field() -> None:
    record = make_record(KEY, URLS, 42)
    assert record.text.startswith("spr:")
    decoded = decode_record(record.text)
    assert decoded == record
    assert (decoded.peer_id, decoded.urls, decoded.seq) == (KEY.peer_id, URLS, 42)


# Offsets in the binary layout: magic 0-3, version 4, peer id 5-42, seq 43-50, count 51, first URL length 52-53.
@pytest.mark.parametrize(
    ("offset", "field"),
    [(0, "magic"), (4, "version"), (12, "peer id"), (50, "seq"), (51, "count"), (53, "url length"), (60, "url")],
)
def test_flipping_any_byte_of_any_field_is_refused(offset: int, field: str) -> None:
    raw = bytearray(raw_of(make_record(KEY, URLS, 7)))
    raw[offset] ^= 0x01
    with pytest.raises(PeerRecordError):
        decode_record(text_of(bytes(raw)))


def test_a_tampered_signature_is_refused() -> None:
    raw = bytearray(raw_of(make_record(KEY, URLS, 7)))
    raw[-1] ^= 0x80
    with pytest.raises(PeerRecordError, match="signature"):
        decode_record(text_of(bytes(raw)))


def test_a_record_signed_by_another_key_than_its_peer_ids_is_refused() -> None:
    raw = raw_of(make_record(KEY, URLS, 7))
    forged = resign(raw[:-64], OTHER)  # the peer id still names KEY
    with pytest.raises(PeerRecordError, match="signature"):
        decode_record(text_of(forged))


def test_a_changed_url_resigned_by_the_right_key_is_accepted_and_by_another_refused() -> None:
    raw = raw_of(make_record(KEY, ("http://a:1",), 7))
    body = raw[:-64].replace(b"http://a:1", b"http://b:1")
    assert decode_record(text_of(resign(body))).urls == ("http://b:1",)
    with pytest.raises(PeerRecordError):
        decode_record(text_of(resign(body, OTHER)))


def test_trailing_bytes_are_refused_even_when_signed() -> None:
    raw = raw_of(make_record(KEY, ("http://a:1",), 7))
    body = raw[:-64] + b"x"
    with pytest.raises(PeerRecordError, match="after its URLs"):
        decode_record(text_of(resign(body)))


def test_a_url_length_past_the_end_is_refused() -> None:
    raw = raw_of(make_record(KEY, ("http://a:1",), 7))
    body = bytearray(raw[:-64])
    struct.pack_into(">H", body, 52, 250)
    with pytest.raises(PeerRecordError, match="bad length"):
        decode_record(text_of(resign(bytes(body))))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://a:1",
        "http://user:pw@a:1",
        "http://a:1?x=1",
        "http://a:1#f",
        "http://a:99999",
        "http://a:1/",
        "http:///nohost",
        "http://a:1/" + "x" * 300,
        "http://a b:1",
    ],
)
def test_urls_a_record_may_not_hold_are_refused_when_signed_and_when_decoded(url: str) -> None:
    with pytest.raises(PeerRecordError):
        check_url(url)
    with pytest.raises(PeerRecordError):
        make_record(KEY, (url,), 1)


def test_url_count_is_bounded_and_urls_are_unique() -> None:
    with pytest.raises(PeerRecordError):
        make_record(KEY, (), 1)
    with pytest.raises(PeerRecordError):
        make_record(KEY, tuple(f"http://h{i}:1" for i in range(MAX_URLS + 1)), 1)
    with pytest.raises(PeerRecordError):
        make_record(KEY, ("http://a:1", "http://a:1"), 1)
    assert len(make_record(KEY, tuple(f"http://h{i}:1" for i in range(MAX_URLS)), 1).urls) == MAX_URLS


def test_an_oversized_text_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(PeerRecordError, match="at most"):
        decode_record("spr:" + "A" * MAX_TEXT)


@pytest.mark.parametrize(
    "text",
    ["", "spr:", "SPR:abc", "spr:!!!!", "spr:AAAA=", "spr:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
)
def test_malformed_texts_are_refused(text: str) -> None:
    with pytest.raises(PeerRecordError):
        decode_record(text)


def test_a_non_canonical_base64_spelling_is_refused() -> None:
    record = make_record(KEY, ("http://a:1",), 7)  # 128 bytes: the last base64 character has 4 unused bits
    assert len(raw_of(record)) % 3 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = record.text[:-1] + alphabet[alphabet.index(record.text[-1]) ^ 1]
    assert raw_of(PeerRecord("", (), 0, changed)) == raw_of(record)  # the same bytes, spelled otherwise
    with pytest.raises(PeerRecordError, match="canonical"):
        decode_record(changed)


def test_a_text_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(PeerRecordError):
        decode_record(b"spr:abc")  # type: ignore[arg-type]


@given(st.binary(max_size=700))
def test_random_bytes_only_ever_raise_a_peer_record_error(raw: bytes) -> None:
    with pytest.raises(PeerRecordError):
        decode_record(text_of(b"cxpr\x01" + raw))
