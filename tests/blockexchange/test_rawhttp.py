"""The lean HTTP client for peer batches: bodies read whole, connections kept alive, hostile answers refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from codex_node.blockexchange.rawhttp import MAX_HEAD_BYTES, RawHttp
from codex_node.errors import PeerError

Answer = Callable[[bytes], bytes]
Serve = Callable[..., Awaitable["Server"]]


class Server:
    """Answers every request (read up to its body) with ``answer(body)``; then closes if ``close_after``."""

    def __init__(self, answer: Answer, *, close_after: bool = False, one_per_connection: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after
        self.one_per_connection = one_per_connection  # a second request on a connection: closed unanswered
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api/blocks"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                if self.one_per_connection and served:
                    break
                served = True
                writer.write(self.answer(body))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def chunked(*chunks: bytes) -> bytes:
    out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    for c in chunks:
        out += f"{len(c):x}\r\n".encode() + c + b"\r\n"
    return out + b"0\r\n\r\n"


async def read(client: RawHttp, url: str, *, max_body: int = 1 << 20) -> tuple[int, bytes]:
    status, body = 0, b""
    async for answered, piece in client.post_stream(url, b"{}", content_type="a/b", accept="c/d", max_body=max_body):
        status = answered
        body += piece
    return status, body


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[Server] = []

    async def start(answer: Answer, **kw: bool) -> Server:
        server = Server(answer, **kw)
        await server.start()
        servers.append(server)
        return server

    yield start
    for s in servers:
        await s.stop()


async def test_a_chunked_answer_is_read_whole_and_the_connection_is_kept_alive(serve: Serve) -> None:
    server = await serve(lambda body: chunked(b"hello ", b"world"))
    client = RawHttp()
    try:
        assert await read(client, server.url) == (200, b"hello world")
        assert await read(client, server.url) == (200, b"hello world")
    finally:
        await client.close()
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /api/blocks HTTP/1.1\r\n")
    assert server.requests[0].endswith(b"\r\n\r\n{}")


async def test_a_content_length_answer_is_read_whole(serve: Serve) -> None:
    server = await serve(lambda body: b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nnop")
    client = RawHttp()
    try:
        assert await read(client, server.url) == (404, b"nop")
    finally:
        await client.close()


async def test_a_request_on_a_connection_the_peer_closed_is_sent_again_on_a_fresh_one(serve: Serve) -> None:
    # The peer closes a kept-alive connection as the next request arrives (its idle timeout, raced).
    server = await serve(lambda body: chunked(b"x"), one_per_connection=True)
    client = RawHttp()
    try:
        assert await read(client, server.url) == (200, b"x")
        assert await read(client, server.url) == (200, b"x")
    finally:
        await client.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nx: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "longer than allowed"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n", "at most"),
        (chunked(b"a" * 600_000, b"b" * 600_000), "longer than the"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nshort", "ended inside a chunk"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "ValueError"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\naXX", "CRLF"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", "unsupported"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "neither"),
        (b"SMTP ready\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", "twice"),
    ],
)
async def test_a_hostile_answer_is_a_peer_error(serve: Serve, answer: bytes, reason: str) -> None:
    server = await serve(lambda body: answer, close_after=True)
    client = RawHttp()
    try:
        with pytest.raises(PeerError, match=reason):
            await read(client, server.url, max_body=1_000_000)
    finally:
        await client.close()


async def test_nothing_listening_is_a_peer_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    client = RawHttp()
    with pytest.raises(PeerError, match="cannot connect"):
        await read(client, f"http://127.0.0.1:{port}/x")
    await client.close()
