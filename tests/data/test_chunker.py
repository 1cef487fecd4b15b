from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codex_node.data.chunker import rechunk


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _collect(chunks: list[bytes], size: int) -> list[bytes]:
    return [bytes(piece) async for piece in rechunk(_stream(chunks), size)]


@given(st.lists(st.binary(max_size=50), max_size=20), st.integers(min_value=1, max_value=40))
async def test_pieces_are_full_size_except_the_last_and_concatenate_to_the_input(
    chunks: list[bytes], size: int
) -> None:
    pieces = await _collect(chunks, size)
    assert b"".join(pieces) == b"".join(chunks)
    assert all(len(p) == size for p in pieces[:-1])
    if pieces:
        assert 0 < len(pieces[-1]) <= size


async def test_empty_stream_yields_nothing() -> None:
    assert await _collect([b"", b""], 4) == []


async def test_exact_multiple_has_no_short_tail() -> None:
    assert await _collect([b"abcdef", b"gh"], 4) == [b"abcd", b"efgh"]


async def test_yielded_buffers_are_not_reused() -> None:
    pieces = [piece async for piece in rechunk(_stream([b"abcdefgh"]), 4)]
    assert pieces == [bytearray(b"abcd"), bytearray(b"efgh")]
    assert pieces[0] is not pieces[1]


async def test_non_positive_size_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        await _collect([b"a"], 0)
