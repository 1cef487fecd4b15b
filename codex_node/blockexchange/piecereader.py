"""A socket reader that receives straight into buffers it never reuses, and hands out views of them.

``asyncio.StreamReader`` copies every byte three times on its way to the caller (the event loop's ``bytes``, the
reader's own buffer, the slice ``read`` returns). :class:`PieceReader` is an :class:`asyncio.BufferedProtocol`:
the event loop receives into the free end of the current *piece* (a :data:`PIECE_BYTES` ``bytearray``), and
``read`` returns a ``memoryview`` of the bytes received. A piece's filled part is not written again while anything
refers to it (a full piece is replaced by another), so a view stays valid for as long as its holder keeps it: a
peer's block that came in one piece reaches the hash and the pack file without a copy in user space.

Full pieces go to a small pool (:class:`~codex_node.utils.bufferpool.BufferPool`) and are received into again once
nothing refers to them any more: allocating fresh pieces was once the largest cost of the download loop.

It offers the part of the ``StreamReader`` interface the lean HTTP client uses (``read``, ``readuntil``,
``readexactly``, ``at_eof``) with its exceptions (``IncompleteReadError``, ``LimitOverrunError``, the connection's
``OSError``), and flow control: reading pauses once :data:`HIGH_WATER` bytes wait to be read, and resumes when
they drop under :data:`LOW_WATER` (memory per connection: about ``HIGH_WATER + PIECE_BYTES``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, cast

from codex_node.utils.bufferpool import BufferPool
from codex_node.utils.viewqueue import pop_views

PIECE_BYTES: Final = 256 * 1024
HIGH_WATER: Final = 4 * 1024 * 1024
LOW_WATER: Final = 1024 * 1024
FIND_WINDOW: Final = 1024
"""Bytes copied at a time while looking for the end of a line."""


POOL_PIECES: Final = 64
"""Full pieces kept for reuse (16 MiB at most, shared by the readers of a process)."""


_POOL = BufferPool(PIECE_BYTES, POOL_PIECES, bytearray)


class PieceReader(asyncio.BufferedProtocol):
    def __init__(self, *, limit: int = PIECE_BYTES) -> None:
        self.limit = limit
        """The longest ``readuntil`` result (its separator included)."""
        self.transport: asyncio.Transport | None = None
        self._buffer = _POOL.take()
        self._piece = memoryview(self._buffer)
        self._used = 0  # bytes of the current piece filled
        self._ready: deque[memoryview] = deque()  # received, not read yet
        self._have = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # --- the protocol side --------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's subclasses

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._used >= len(self._piece):
            self._piece.release()  # the views handed out keep their own hold on the piece
            _POOL.give(self._buffer)
            self._buffer = _POOL.take()
            self._piece, self._used = memoryview(self._buffer), 0
        return self._piece[self._used :]

    def buffer_updated(self, nbytes: int) -> None:
        self._ready.append(self._piece[self._used : self._used + nbytes])
        self._used += nbytes
        self._have += nbytes
        if self._have >= HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()

    # --- the reader side ----------------------------------------------------------------------------------------

    def at_eof(self) -> bool:
        return self._eof and not self._have

    async def read(self, n: int) -> memoryview:
        """Up to ``n`` bytes (at least one), as soon as any are here; empty at the end of the stream."""
        if n <= 0:
            return memoryview(b"")
        await self._wait_for(1)
        if not self._have:
            return memoryview(b"")
        head = self._ready[0]
        if len(head) <= n:
            self._ready.popleft()
        else:
            self._ready[0] = head[n:]
            head = head[:n]
        self._consumed(len(head))
        return head

    async def readexactly(self, n: int) -> bytes:
        await self._wait_for(n)
        if self._have < n:
            partial = self._take(self._have)
            raise asyncio.IncompleteReadError(partial, n)
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The bytes up to and including ``separator`` (one byte); :class:`asyncio.LimitOverrunError` past
        :attr:`limit` bytes without it, :class:`asyncio.IncompleteReadError` at the end of the stream without it."""
        if len(separator) != 1:
            raise ValueError("readuntil takes a one-byte separator")
        scanned = 0
        while True:
            found = self._find(separator, scanned)
            if found >= 0:
                if found + 1 > self.limit:
                    raise asyncio.LimitOverrunError("separator found past the limit", found)
                return self._take(found + 1)
            scanned = self._have
            if scanned > self.limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", scanned)
            if self._eof:
                raise asyncio.IncompleteReadError(self._take(self._have), None)
            await self._wait_for(scanned + 1)

    # --- internals ----------------------------------------------------------------------------------------------

    def _find(self, separator: bytes, start: int) -> int:
        """Where the one-byte ``separator`` is in the buffered bytes, from ``start`` on; -1 if not there. Searched
        in small windows: the line sought is short, and the bytes after it (a body) are not copied."""
        offset = 0
        for view in self._ready:
            at = max(0, start - offset)
            while at < len(view):
                found = bytes(view[at : at + FIND_WINDOW]).find(separator)
                if found >= 0:
                    return offset + at + found
                at += FIND_WINDOW
            offset += len(view)
        return -1

    def _take(self, n: int) -> bytes:
        """The next ``n`` buffered bytes, as one ``bytes`` (for heads and short reads)."""
        parts = pop_views(self._ready, n)
        self._consumed(n)
        return b"".join(parts)

    def _consumed(self, n: int) -> None:
        self._have -= n
        if self._paused and self._have < LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    async def _wait_for(self, n: int) -> None:
        """Until ``n`` bytes are buffered or the stream ended; raises the connection's error if it failed."""
        while self._have < n and not self._eof:
            if self._paused and self.transport is not None:  # the caller needs more than the high water mark
                self._paused = False
                self.transport.resume_reading()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._have < n and self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
