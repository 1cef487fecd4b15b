"""The batched block answer's framing: parsed in any chunking, hostile frames refused before they are buffered."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codex_node.blockexchange.wire import FrameReader, frame
from codex_node.errors import PeerError


def encode(blocks: list[bytes | None]) -> bytes:
    return b"".join(frame(b) + (b or b"") for b in blocks)


@given(
    st.lists(st.one_of(st.none(), st.binary(max_size=300)), min_size=1, max_size=8),
    st.lists(st.integers(1, 50), min_size=1, max_size=20),
)
def test_frames_parse_back_whatever_the_chunking(blocks: list[bytes | None], cuts: list[int]) -> None:
    wire = encode(blocks)
    reader = FrameReader(len(blocks), 300)
    out: list[bytes | None] = []
    pos = 0
    for cut in cuts * (len(wire) // max(sum(cuts), 1) + 1):
        out.extend(reader.feed(wire[pos : pos + cut]))
        pos += cut
        if pos >= len(wire):
            break
    assert out == blocks
    assert reader.done == len(blocks)


def test_a_frame_longer_than_the_bound_is_refused_from_its_header() -> None:
    reader = FrameReader(1, 1024)
    with pytest.raises(PeerError, match="at most 1024"):
        list(reader.feed(frame(b"x" * 2000)[:5]))  # only the header: nothing of the payload is awaited
    assert reader.buffered == 0  # the header was read; nothing of the payload was waited for


def test_more_frames_than_asked_are_refused() -> None:
    with pytest.raises(PeerError, match="more than the 1 blocks"):
        list(FrameReader(1, 10).feed(encode([b"a", b"b"])))


def test_bytes_after_the_last_frame_are_refused() -> None:
    with pytest.raises(PeerError, match="after the last"):
        list(FrameReader(1, 10).feed(encode([b"a"]) + b"\x00"))


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(PeerError, match="malformed"):
        list(FrameReader(1, 10).feed(b"\x07\x00\x00\x00\x01a"))
