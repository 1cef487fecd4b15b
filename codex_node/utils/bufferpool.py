"""Reusable buffers for data handed to code that keeps views of them for an unknown time (an event loop's send
queue, a block waiting to be stored).

A fresh large ``bytearray`` costs its zeroing and, memory having gone back to the system, a page fault per 4 KiB.
:class:`BufferPool` hands a buffer out again only once nothing but the pool refers to it (its reference count
says so), so a caller may give a buffer back as soon as it has handed it on, views and all: it is reused after the
last view is gone, and never before.
"""

from __future__ import annotations

import mmap
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Final, Generic, TypeVar

_UNREFERENCED: Final = 2
"""``getrefcount`` of a buffer only the pool holds: the pool's reference and the call's argument."""
PROBES: Final = 4
"""Buffers looked at per :meth:`BufferPool.take`."""


_B = TypeVar("_B", bytearray, mmap.mmap)


class BufferPool(Generic[_B]):
    """Buffers of ``size`` bytes made by ``make`` (``bytearray``, or ``page_aligned`` where a buffer's address must be
    a page's), at most ``keep`` of them kept. Thread-safe."""

    def __init__(self, size: int, keep: int, make: Callable[[int], _B]) -> None:
        if size < 1 or keep < 1:
            raise ValueError("size and keep must be at least 1")
        self.size = size
        self._make: Callable[[int], _B] = make
        self._keep = keep
        self._buffers: deque[_B] = deque()
        self._lock = threading.Lock()  # users may run in several threads (event loops, worker threads)

    def take(self) -> _B:
        """A buffer nothing else refers to, else a new one. Only the oldest few are looked at: buffers come free in
        about the order they were given back, and one still referred to goes to the back, so a view kept long
        holds up nothing and a take costs the same however many buffers are in flight."""
        with self._lock:
            for _ in range(min(PROBES, len(self._buffers))):
                buffer = self._buffers.popleft()
                if sys.getrefcount(buffer) == _UNREFERENCED:
                    return buffer
                self._buffers.append(buffer)
        return self._make(self.size)

    def give(self, buffer: _B) -> None:
        """Keep ``buffer`` (of :attr:`size` bytes) for a later :meth:`take`, views of it may still be alive. The
        oldest is dropped when the pool is full."""
        if len(buffer) != self.size:
            raise ValueError(f"a {len(buffer)}-byte buffer given to a pool of {self.size}-byte ones")
        with self._lock:
            if len(self._buffers) >= self._keep:
                self._buffers.popleft()
            self._buffers.append(buffer)


def page_aligned(size: int) -> mmap.mmap:
    """``size`` bytes of anonymous memory starting at a page boundary (what ``O_DIRECT`` writes need)."""
    return mmap.mmap(-1, size)
