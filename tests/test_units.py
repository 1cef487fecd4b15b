"""Sizes and durations: parsing what operators write, and the compact forms logs show."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codex_node.units import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("10B", 10),
        ("1KB", 1000),
        ("1kB", 1000),
        ("500MB", 500_000_000),
        ("2GB", 2_000_000_000),
        ("1TB", 10**12),
        ("1KiB", 1024),
        ("64 KiB", 65536),
        ("20GiB", 20 * 2**30),
        ("20gib", 20 * 2**30),
        ("1TiB", 2**40),
        ("1.5GiB", 3 * 2**29),
        (".5KiB", 512),
        ("1.0001KiB", 1024),  # fractions of a byte are dropped
        (" 7MiB ", 7 * 2**20),
    ],
)
def test_parse_size_reads_decimal_and_binary_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "1 2", "-1", "1e9", "20G", "5K", "1,5GiB", "1GiBs", "0x10"])
def test_parse_size_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|unit"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("45", 45),
        ("10s", 10),
        ("10m", 600),
        ("1h", 3600),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 86400 + 7200 + 180 + 4),
        ("1H", 3600),
    ],
)
def test_parse_duration_reads_units_and_plain_seconds(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "1.5h", "-1s", "10 m", "1y", "h1", "1h 30m", "30days"])
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0B"),
        (100, "100B"),
        (1023, "1023B"),
        (1024, "1KiB"),
        (65536, "64KiB"),
        (1536 * 1024, "1.5MiB"),
        (20 * 2**30, "20GiB"),
        (-2048, "-2KiB"),
        (2**50, "1PiB"),
    ],
)
def test_format_size_is_compact(n: int, text: str) -> None:
    assert format_size(n) == text


@pytest.mark.parametrize(("n", "text"), [(0, "0s"), (59, "59s"), (90, "1m30s"), (3600, "1h"), (30 * 86400, "30d")])
def test_format_duration_is_compact(n: int, text: str) -> None:
    assert format_duration(n) == text


@given(st.integers(min_value=0, max_value=10**10))
def test_format_duration_reads_back_to_the_same_seconds(n: int) -> None:
    assert parse_duration(format_duration(n)) == n


@given(st.integers(min_value=0, max_value=2**50))
def test_an_exact_formatted_size_reads_back_to_the_same_bytes(n: int) -> None:
    text = format_size(n)
    if "." not in text:
        assert parse_size(text) == n
