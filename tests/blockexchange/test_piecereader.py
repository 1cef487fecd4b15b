"""PieceReader: what the event loop receives comes back intact, views stay valid, lines are bounded, flow control
pauses and resumes the transport, and a failed connection's error reaches the reader."""

from __future__ import annotations

import asyncio
import os

import pytest
import uvloop

from codex_node.blockexchange.piecereader import HIGH_WATER, LOW_WATER, PIECE_BYTES, PieceReader
from codex_node.blockexchange.rawhttp import RawHttp


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.pauses = 0

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


def connected() -> tuple[PieceReader, FakeTransport]:
    reader, transport = PieceReader(limit=64), FakeTransport()
    reader.connection_made(transport)
    return reader, transport


def receive(reader: PieceReader, data: bytes, *, step: int = 7000) -> None:
    """What the event loop does: receive into the buffer the protocol offers, at most ``step`` bytes at a time."""
    at = 0
    while at < len(data):
        buffer = reader.get_buffer(-1)
        n = min(len(buffer), step, len(data) - at)
        buffer[:n] = data[at : at + n]
        reader.buffer_updated(n)
        at += n


async def test_bytes_come_back_intact_and_earlier_views_survive_later_receives() -> None:
    reader, _ = connected()
    data = os.urandom(3 * PIECE_BYTES + 12345)
    receive(reader, data[: PIECE_BYTES // 2])
    first = await reader.read(1000)
    receive(reader, data[PIECE_BYTES // 2 :])  # fills the first piece and goes on in new ones
    reader.eof_received()
    rest = bytearray()
    while piece := await reader.read(50_000):
        assert len(piece) <= 50_000
        rest += piece
    assert bytes(first) == data[:1000]  # not overwritten by what came after it
    assert bytes(first) + rest == data
    assert reader.at_eof()


async def test_pieces_are_received_into_again_only_once_no_view_of_them_is_left() -> None:
    reader, _ = connected()
    data = os.urandom(40 * PIECE_BYTES)
    kept: list[tuple[int, memoryview]] = []
    at = 0
    for i in range(0, len(data), PIECE_BYTES):
        receive(reader, data[i : i + PIECE_BYTES], step=65_536)
        while at < i + PIECE_BYTES:
            piece = await reader.read(100_000)
            if (at // 100_000) % 7 == 0:
                kept.append((at, piece))  # held on to, like a block waiting to be stored; the rest dropped
            at += len(piece)
    assert at == len(data)
    assert all(bytes(view) == data[start : start + len(view)] for start, view in kept)


async def test_a_line_is_read_across_pieces_and_is_bounded() -> None:
    reader, _ = connected()
    receive(reader, b"HTTP/1.1 200 OK\r\nx: y\r\n\r\nbody", step=3)
    assert await reader.readuntil(b"\n") == b"HTTP/1.1 200 OK\r\n"
    assert await reader.readuntil(b"\n") == b"x: y\r\n"
    assert await reader.readuntil(b"\n") == b"\r\n"
    assert await reader.readexactly(4) == b"body"
    receive(reader, b"a" * 100 + b"\n")
    with pytest.raises(asyncio.LimitOverrunError):
        await reader.readuntil(b"\n")


async def test_the_end_of_the_stream_inside_a_line_or_a_read_is_incomplete() -> None:
    reader, _ = connected()
    receive(reader, b"no end")
    reader.eof_received()
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.readuntil(b"\n")
    reader, _ = connected()
    receive(reader, b"abc")
    reader.eof_received()
    with pytest.raises(asyncio.IncompleteReadError) as e:
        await reader.readexactly(5)
    assert e.value.partial == b"abc"


async def test_reading_waits_for_bytes_then_wakes() -> None:
    reader, _ = connected()
    waiting = asyncio.ensure_future(reader.read(10))
    await asyncio.sleep(0)
    assert not waiting.done()
    receive(reader, b"hello")
    assert bytes(await waiting) == b"hello"


async def test_reading_pauses_past_the_high_water_mark_and_resumes_under_the_low_one() -> None:
    reader, transport = connected()
    receive(reader, bytes(HIGH_WATER))
    assert transport.paused
    taken = 0
    while transport.paused:
        taken += len(await reader.read(PIECE_BYTES))
    assert HIGH_WATER - LOW_WATER <= taken <= HIGH_WATER - LOW_WATER + PIECE_BYTES
    assert transport.pauses == 1


async def test_a_connection_lost_with_an_error_raises_it_to_the_reader() -> None:
    reader, _ = connected()
    waiting = asyncio.ensure_future(reader.readexactly(2))
    await asyncio.sleep(0)
    reader.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(ConnectionResetError):
        await waiting


def test_the_lean_client_reads_an_answer_through_it_on_uvloop_as_the_node_runs() -> None:
    # The node runs on uvloop, whose transports are not asyncio's classes: a real round trip on it.
    body = os.urandom(PIECE_BYTES + 999)

    async def scenario() -> bytes:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RawHttp()
        got = bytearray()
        try:
            async with asyncio.timeout(30):  # a reader that never hears of its connection would wait forever
                async for status, piece in client.post_stream(
                    f"http://127.0.0.1:{port}/x", b"{}", content_type="a/b", accept="c/d", max_body=len(body)
                ):
                    assert status == 200
                    got += piece
        finally:
            await client.close()
            server.close()
            await server.wait_closed()
        return bytes(got)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(scenario()) == body
