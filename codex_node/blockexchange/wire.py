"""The block exchange's wire format: the batched block answer, framed (pure: no I/O).

``POST {peer}/blocks`` takes ``{"cids": [...]}`` (at most :data:`MAX_BATCH_CIDS`) and answers
``application/vnd.codex.blocks``: one frame per requested CID, in the request's order, and nothing after the last::

    status (1 byte: 0 found, 1 not here)  length (4 bytes, big-endian)  payload (length bytes; 0 when not here)

A frame is never longer than :data:`MAX_FRAME_BYTES` (a block larger than that is answered "not here": the batch
route is for data blocks; a manifest is fetched alone). The reader (:class:`FrameReader`) treats every byte as
hostile: a length over the caller's bound, an unknown status, more frames than asked or bytes after the last
frame raise :class:`~codex_node.errors.PeerError` before anything is buffered past one frame. It never checks the
bytes against their CID: the fetcher does, before anything is stored.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator

from codex_node.errors import PeerError
from codex_node.utils.viewqueue import pop_views

MAX_BATCH_CIDS = 256
"""CIDs one batched request may name (a batch of 64 KiB blocks is then at most 16 MiB)."""
MAX_FRAME_BYTES = 1024 * 1024
"""The largest payload of a frame the server sends."""
MEDIA_TYPE = "application/vnd.codex.blocks"

FOUND = 0
MISSING = 1
_HEADER = struct.Struct(">BI")
HEADER_SIZE = _HEADER.size


def frame(data: bytes | memoryview | None) -> bytes:
    """The frame header for ``data`` (``None``: not here); the payload follows it on the wire."""
    if data is None:
        return _HEADER.pack(MISSING, 0)
    return _HEADER.pack(FOUND, len(data))


def frame_into(buffer: bytearray | memoryview, offset: int, size: int | None) -> None:
    """Write at ``offset`` of ``buffer`` the frame header of a ``size``-byte payload (``None``: not here)."""
    if size is None:
        _HEADER.pack_into(buffer, offset, MISSING, 0)
    else:
        _HEADER.pack_into(buffer, offset, FOUND, size)


class FrameReader:
    """Parses a batched answer of ``expected`` frames fed in arbitrary chunks; payloads at most ``max_bytes``.

    Chunks are kept as views (they must never change: ``bytes``, or views of buffers never written again); a
    payload that lies in one chunk is handed on as a view of it (no copy), one split across chunks is joined into
    one copy.
    """

    def __init__(self, expected: int, max_bytes: int) -> None:
        self.expected = expected
        self.max_bytes = max_bytes
        self.done = 0
        self._chunks: deque[memoryview] = deque()
        self._have = 0
        self._need: int | None = None  # payload length of the frame being read, once its header is in
        self._status = FOUND

    def feed(self, chunk: bytes | memoryview) -> Iterator[bytes | memoryview | None]:
        """The frames completed by ``chunk``: the payload, or ``None`` for "not here"."""
        if chunk:
            self._chunks.append(memoryview(chunk))
            self._have += len(chunk)
        while True:
            if self._need is None:
                if self._have < HEADER_SIZE:
                    break
                if self.done >= self.expected:
                    raise PeerError(f"the peer sent more than the {self.expected} blocks asked for")
                status, length = _HEADER.unpack(self._take(HEADER_SIZE))
                if status not in (FOUND, MISSING) or (status == MISSING and length):
                    raise PeerError(f"malformed block frame (status {status}, length {length})")
                if length > self.max_bytes:
                    raise PeerError(f"the peer announced a {length}-byte block; at most {self.max_bytes} accepted")
                self._status, self._need = status, length
            if self._have < self._need:
                break
            payload = self._take(self._need)
            status, self._need = self._status, None
            self.done += 1
            yield payload if status == FOUND else None
        if self.done >= self.expected and self._have:
            raise PeerError("the peer sent bytes after the last block asked for")

    @property
    def buffered(self) -> int:
        return self._have

    def _take(self, n: int) -> bytes | memoryview:
        """The next ``n`` buffered bytes (``n <= self._have``): a view of the chunk that holds them all (the chunks
        fed are immutable ``bytes``), else joined into one copy."""
        parts = pop_views(self._chunks, n)
        self._have -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)
