"""An in-memory :class:`~codex_node.stores.kv.KVStore` for unit tests, with crash simulation.

``MemoryKV.crash_after(n)`` makes the n-th next write raise, so tests can check that a failed batch leaves
nothing half written.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from codex_node.errors import KVError
from codex_node.stores.kv import WriteBatch, batch_ops, new_batch


class MemoryKV:
    """Sorted in-memory key-value store with the same semantics as ``LevelDBStore``."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._keys: list[str] = []
        self._fail_in: int | None = None
        self.closed = False
        self.writes = 0

    def fail_next_write(self, after: int = 0) -> None:
        """Make the write ``after`` writes from now raise :class:`KVError` (and apply nothing)."""
        self._fail_in = after

    def get(self, key: str) -> bytes | None:
        self._check()
        return self._data.get(key)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check()
        return [self._data.get(key) for key in keys]

    def put(self, key: str, value: bytes) -> None:
        b = new_batch()
        b.put(key, value)
        self.write(b)

    def delete(self, key: str) -> None:
        b = new_batch()
        b.delete(key)
        self.write(b)

    def batch(self) -> WriteBatch:
        return new_batch()

    def write(self, batch: WriteBatch) -> None:
        self._check()
        ops = batch_ops(batch)
        if self._fail_in is not None:
            if self._fail_in == 0:
                self._fail_in = None
                raise KVError("simulated write failure")
            self._fail_in -= 1
        self.writes += 1
        for key, value in ops:
            if value is None:
                if key in self._data:
                    del self._data[key]
                    self._keys.pop(bisect.bisect_left(self._keys, key))
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value

    def iterate(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        self._check()
        if start_after is not None and start_after >= prefix:
            i = bisect.bisect_right(self._keys, start_after)
        else:
            i = bisect.bisect_left(self._keys, prefix)
        out: list[tuple[str, bytes]] = []
        while i < len(self._keys) and self._keys[i].startswith(prefix):
            k = self._keys[i]
            out.append((k, self._data[k]))
            i += 1
            if limit is not None and len(out) >= limit:
                break
        return iter(out)

    def close(self) -> None:
        self.closed = True

    def _check(self) -> None:
        if self.closed:
            raise KVError("metadata store is closed")
