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
from collections.abc import Iterator

from codex_node.errors import PeerError

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


class FrameReader:
    """Parses a batched answer of ``expected`` frames fed in arbitrary chunks; payloads at most ``max_bytes``."""

    def __init__(self, expected: int, max_bytes: int) -> None:
        self.expected = expected
        self.max_bytes = max_bytes
        self.done = 0
        self._buf = bytearray()
        self._need: int | None = None  # payload length of the frame being read, once its header is in
        self._status = FOUND

    def feed(self, chunk: bytes) -> Iterator[bytes | None]:
        """The frames completed by ``chunk``: the payload, or ``None`` for "not here"."""
        self._buf += chunk
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_SIZE:
                    break
                if self.done >= self.expected:
                    raise PeerError(f"the peer sent more than the {self.expected} blocks asked for")
                status, length = _HEADER.unpack_from(self._buf)
                if status not in (FOUND, MISSING) or (status == MISSING and length):
                    raise PeerError(f"malformed block frame (status {status}, length {length})")
                if length > self.max_bytes:
                    raise PeerError(f"the peer announced a {length}-byte block; at most {self.max_bytes} accepted")
                del self._buf[:HEADER_SIZE]
                self._status, self._need = status, length
            if len(self._buf) < self._need:
                break
            payload = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            status, self._need = self._status, None
            self.done += 1
            yield payload if status == FOUND else None
        if self.done >= self.expected and self._buf:
            raise PeerError("the peer sent bytes after the last block asked for")

    @property
    def buffered(self) -> int:
        return len(self._buf)
