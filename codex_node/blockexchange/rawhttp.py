"""A lean HTTP/1.1 client for one job: posting a batch request to a peer and reading its answer's body as it
arrives, over keep-alive connections read by a :class:`~codex_node.blockexchange.piecereader.PieceReader`.

Why not httpx here: a peer's batched block answer is most of a download's bytes, and parsing it through httpx and
h11 cost the downloader more CPU than storing the blocks (``benchmarks/network_download.py``). This client reads
the status line and headers with bounded reads, then hands the body on in the pieces the socket gave it
(``Content-Length`` or ``chunked``) as views of the buffers the socket was read into: no copy in user space.

Every byte is hostile: the status line and headers are bounded (:data:`MAX_HEAD_BYTES`), a chunk size line too,
the body may not be longer than the caller's ``max_body`` bound, and anything malformed, early EOF or a refused
connection raises :class:`~codex_node.errors.PeerError`. A connection goes back to the pool only after an answer
was read to its end and the peer did not ask to close it; a cancelled or failed read closes it. A request sent on
a pooled connection that the peer had closed meanwhile (no byte of an answer came back) is sent once more on a
fresh one. Only ``http://`` URLs: the caller keeps its general client for anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from urllib.parse import urlsplit

from codex_node.blockexchange.piecereader import PieceReader
from codex_node.errors import PeerError

MAX_HEAD_BYTES = 16 * 1024
"""The longest status line plus headers accepted."""
MAX_CHUNK_LINE = 1024
"""The longest chunk size line (with extensions) accepted."""
READ_BYTES = 1024 * 1024
"""The most one read asks of the socket buffer."""
MAX_IDLE_PER_PEER = 8
"""Idle keep-alive connections kept per peer address."""
_STREAM_LIMIT = 256 * 1024


class _Conn:
    def __init__(self, transport: asyncio.Transport, reader: PieceReader) -> None:
        self.transport = transport
        self.reader = reader

    def close(self) -> None:
        self.transport.close()


class RawHttp:
    """Keep-alive connections per ``host:port``; :meth:`post_stream` posts and yields the answer body's pieces."""

    def __init__(self, *, connect_timeout: float = 5.0) -> None:
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._connect_timeout = connect_timeout
        self._closed = False

    @staticmethod
    def supports(url: str) -> bool:
        return urlsplit(url).scheme == "http"

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def post_stream(
        self, url: str, body: bytes, *, content_type: str, accept: str, max_body: int
    ) -> AsyncGenerator[tuple[int, bytes | memoryview], None]:
        """POST ``body`` to ``url``; yield ``(status, b"")`` once the head is in, then ``(status, piece)`` for each
        piece of the answer's body, at most ``max_body`` bytes in all (more raises :class:`PeerError`)."""
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise PeerError(f"not an http:// URL: {url}")
        address = (parts.hostname, parts.port or 80)
        host = parts.netloc.rsplit("@", 1)[-1]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n"
            f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        conn, reused = await self._connection(address)
        done = False
        headers: dict[str, str] = {}
        try:
            try:
                status, headers = await self._send(conn, request)
            except PeerError:
                if not reused:
                    raise
                conn.close()  # the peer closed the idle connection meanwhile: once more on a fresh one
                conn, reused = await self._open(address), False
                status, headers = await self._send(conn, request)
            yield status, b""
            async for piece in _body(conn.reader, headers, max_body):
                yield status, piece
            done = True
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            raise PeerError(f"peer at {url}: {type(e).__name__} {e}") from e
        finally:
            if done and headers.get("connection", "").lower() != "close" and not self._closed:
                idle = self._idle.setdefault(address, [])
                if len(idle) < MAX_IDLE_PER_PEER:
                    idle.append(conn)
                else:
                    conn.close()
            else:
                conn.close()

    async def _connection(self, address: tuple[str, int]) -> tuple[_Conn, bool]:
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if not conn.reader.at_eof() and not conn.transport.is_closing():
                return conn, True
            conn.close()
        return await self._open(address), False

    async def _open(self, address: tuple[str, int]) -> _Conn:
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, reader = await asyncio.get_running_loop().create_connection(
                    lambda: PieceReader(limit=_STREAM_LIMIT), *address
                )
        except (OSError, TimeoutError) as e:
            raise PeerError(f"cannot connect to {address[0]}:{address[1]}: {type(e).__name__} {e}") from e
        return _Conn(transport, reader)

    @staticmethod
    async def _send(conn: _Conn, request: bytes) -> tuple[int, dict[str, str]]:
        try:
            conn.transport.write(request)  # a few KiB at most: the transport buffers it, no drain needed
            head = await _read_head(conn.reader)
        except (OSError, asyncio.IncompleteReadError) as e:
            raise PeerError(f"no answer: {type(e).__name__} {e}") from e
        return _parse_head(head)


async def _read_head(reader: PieceReader) -> bytes:
    head = bytearray()
    while True:
        line = await _bounded_line(reader, MAX_HEAD_BYTES - len(head), "answer head")
        if line in (b"\r\n", b"\n"):
            if not head:  # tolerate nothing but a proper head
                raise PeerError("the answer starts with an empty line")
            return bytes(head)
        head += line


async def _bounded_line(reader: PieceReader, limit: int, what: str) -> bytes:
    if limit <= 0:
        raise PeerError(f"the peer's {what} is longer than allowed")
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as e:
        raise PeerError(f"the peer's {what} is longer than allowed") from e
    if len(line) > limit:
        raise PeerError(f"the peer's {what} is longer than allowed")
    return line


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\n")
    status_line = lines[0].strip().split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
        raise PeerError(f"malformed status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or name != name.strip():
            raise PeerError(f"malformed header line {line[:80]!r}")
        key = name.lower()
        if key in headers and key in ("content-length", "transfer-encoding"):
            raise PeerError(f"the peer sent {name} twice")
        headers[key] = value.strip()
    return int(status_line[1]), headers


async def _body(reader: PieceReader, headers: dict[str, str], max_body: int) -> AsyncIterator[memoryview]:
    encoding = headers.get("transfer-encoding", "").lower()
    if encoding:
        if encoding != "chunked":
            raise PeerError(f"unsupported transfer encoding {encoding[:40]!r}")
        async for piece in _chunked(reader, max_body):
            yield piece
        return
    length_text = headers.get("content-length")
    if length_text is None or not length_text.isdigit():
        raise PeerError("the answer has neither a valid Content-Length nor chunked encoding")
    left = int(length_text)
    if left > max_body:
        raise PeerError(f"the peer announced {left} bytes; at most {max_body} accepted")
    while left:
        piece = await reader.read(min(left, READ_BYTES))
        if not piece:
            raise PeerError(f"the answer ended {left} bytes early")
        left -= len(piece)
        yield piece


async def _chunked(reader: PieceReader, max_body: int) -> AsyncIterator[memoryview]:
    total = 0
    while True:
        line = await _bounded_line(reader, MAX_CHUNK_LINE, "chunk size line")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 16:
            raise PeerError(f"malformed chunk size {line[:40]!r}")
        size = int(size_text, 16)  # ValueError: malformed, turned into a PeerError by the caller
        if size == 0:
            break
        left = size
        while left:
            # Bounded as it is read, not when announced: the caller's parser sees the bytes up to the bound first
            # and may name a better reason (an oversized frame), and no piece is longer than READ_BYTES.
            if total >= max_body:
                raise PeerError(f"the answer is longer than the {max_body} bytes accepted")
            piece = await reader.read(min(left, READ_BYTES, max_body - total))
            if not piece:
                raise PeerError("the answer ended inside a chunk")
            left -= len(piece)
            total += len(piece)
            yield piece
        if await reader.readexactly(2) != b"\r\n":
            raise PeerError("a chunk does not end with CRLF")
    trailer = 0
    while True:  # trailers, then the empty line
        line = await _bounded_line(reader, MAX_HEAD_BYTES - trailer, "trailer")
        trailer += len(line)
        if line in (b"\r\n", b"\n"):
            return
