"""The compiled batch keccak (data/_keccak.c): every implementation this machine runs gives, for every chunk size
and count, exactly what keccak256 of each chunk alone gives (pycryptodome through eth_hash as the reference).

The extension is imported directly: the test set-up compiles it (pyproject ext-modules, gcc is on every machine
that runs the suite), so a missing one fails here rather than silently testing the fallback twice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest
from eth_hash.auto import keccak as reference_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_node.data import _keccak
from codex_node.data.merkle import batch_implementation, hash_chunks, hash_chunks_one_by_one

IMPLEMENTATIONS = _keccak.implementations()
RATE = 136


def reference(data: bytes, size: int) -> bytes:
    return b"".join(reference_keccak(data[i : i + size]) for i in range(0, len(data), size))


def test_the_portable_implementation_is_always_there_and_last() -> None:
    assert IMPLEMENTATIONS[-1] == "portable"
    assert len(set(IMPLEMENTATIONS)) == len(IMPLEMENTATIONS)
    assert batch_implementation() == f"_keccak {IMPLEMENTATIONS[0]}"


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("size", [1, 8, 64, RATE - 1, RATE, RATE + 1, 2 * RATE, 2048])
@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 9, 17])
def test_each_implementation_matches_keccak256_at_the_rate_edges_and_widths(impl: str, size: int, count: int) -> None:
    """Sizes around the 136-byte rate (a padding block of its own when a multiple of it), counts around the
    widths of 4 and 8 (a group's unused lanes must not be written)."""
    data = os.urandom(size * count)
    assert _keccak.hash_chunks_with(impl, data, size) == reference(data, size)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 700), count=st.integers(0, 20), seed=st.binary(min_size=1, max_size=32))
def test_every_implementation_matches_keccak256_for_any_size_and_count(size: int, count: int, seed: bytes) -> None:
    data = (seed * (size * count // len(seed) + 1))[: size * count]
    data = bytes(b ^ (i * 7 & 0xFF) for i, b in enumerate(data))
    expected = reference(data, size)
    for impl in IMPLEMENTATIONS:
        assert _keccak.hash_chunks_with(impl, data, size) == expected, impl
    assert hash_chunks_one_by_one(data, size) == expected


def test_any_contiguous_buffer_is_read() -> None:
    assert _keccak.hash_chunks(b"", 1) == b""
    data = os.urandom(3 * 2048)
    expected = reference(data, 2048)
    assert hash_chunks(bytearray(data), 2048) == hash_chunks(memoryview(data), 2048) == expected
    assert hash_chunks(memoryview(data)[2048:], 2048) == expected[32:]
    assert _keccak.hash_chunks(b"\x00", 1) == reference_keccak(b"\x00")


@pytest.mark.parametrize("hasher", [_keccak.hash_chunks, hash_chunks_one_by_one])
def test_bad_arguments_are_refused_with_what_to_fix(hasher: Callable[[Any, int], bytes]) -> None:
    with pytest.raises(ValueError, match="2049 bytes are not a whole number of 2048-byte chunks"):
        hasher(bytes(2049), 2048)
    with pytest.raises(ValueError, match="chunk size must be positive, got 0"):
        hasher(bytes(4), 0)
    with pytest.raises(TypeError):
        hasher("not bytes", 1)


def test_an_unknown_implementation_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="keccak implementation avx1024 is not available"):
        _keccak.hash_chunks_with("avx1024", b"", 1)


def test_a_non_contiguous_buffer_is_refused() -> None:
    with pytest.raises(BufferError):
        _keccak.hash_chunks(memoryview(bytes(64))[::2], 32)


def test_threads_hashing_at_once_each_get_their_own_answer() -> None:
    """Large inputs are hashed with the GIL released: threads must not share any state."""
    inputs = [os.urandom(64 * 2048) for _ in range(4)]
    expected = [reference(data, 2048) for data in inputs]
    results: list[bytes | None] = [None] * len(inputs)

    def work(i: int) -> None:
        for _ in range(5):
            results[i] = _keccak.hash_chunks(inputs[i], 2048)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == expected


def test_the_buffer_is_let_go_after_each_call_even_a_refused_one() -> None:
    """A bytearray still held by the extension could not be resized (BufferError): each call releases it."""
    data = bytearray(os.urandom(8 * 2048))
    assert _keccak.hash_chunks(data, 2048) == reference(bytes(data), 2048)
    data.extend(b"x")
    with pytest.raises(ValueError, match="whole number"):
        _keccak.hash_chunks(data, 2048)
    data.extend(b"y")
    assert len(data) == 8 * 2048 + 2
