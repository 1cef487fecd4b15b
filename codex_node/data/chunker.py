"""Cutting a byte stream into fixed-size pieces without holding more than one piece in memory.

The HTTP layer hands over whatever chunk sizes the network produced; the store wants whole blocks, grouped so
that one worker-thread hop and one metadata batch cover many of them. :func:`rechunk` turns the former into the
latter. It never looks at the bytes and never does I/O besides pulling the stream it is given.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def rechunk(stream: AsyncIterable[bytes], size: int) -> AsyncIterator[bytearray]:
    """Yield the stream's bytes in pieces of exactly ``size`` bytes; the last piece holds the rest.

    An empty stream yields nothing. Each yielded buffer is handed over: the chunker never touches it again, so the
    consumer may keep it (e.g. pass it to a worker thread) while the next piece is filled.
    """
    if size <= 0:
        raise ValueError(f"piece size must be positive, not {size}")
    buf = bytearray(size)
    fill = 0
    async for chunk in stream:
        view = memoryview(chunk)
        while view:
            n = min(size - fill, len(view))
            buf[fill : fill + n] = view[:n]
            fill += n
            view = view[n:]
            if fill == size:
                yield buf
                buf = bytearray(size)
                fill = 0
    if fill:
        del buf[fill:]
        yield buf
