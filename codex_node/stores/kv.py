"""The metadata key-value port: namespaced keys and atomic write batches.

Everything except block data lives in one LevelDB per data dir. Keys are ``/``-separated namespaces
(``meta/ttl/<cid>``, ``meta/quota/used``, ``meta/sales/reservations/<id>``). Every multi-key change goes through
one :class:`WriteBatch` so a crash leaves either all of it or none of it.

This module must never know what the values mean; records encode themselves (see ``stores/records.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import plyvel

from codex_node.errors import KVError
from codex_node.stores.diskspace import disk_full, is_disk_full


class WriteBatch(Protocol):
    """A set of puts and deletes applied atomically by :meth:`KVStore.write`."""

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class KVStore(Protocol):
    """The metadata store port. Implementations: :class:`LevelDBStore`, ``testing.MemoryKV``."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def batch(self) -> WriteBatch: ...

    def write(self, batch: WriteBatch) -> None:
        """Apply every operation of ``batch`` atomically and durably."""
        ...

    def iterate(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """Yield ``(key, value)`` in key order for keys starting with ``prefix``."""
        ...

    def close(self) -> None: ...


class _Batch:
    """A plain list of operations; the store turns it into its native batch on write."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[str, bytes | None]] = []

    def put(self, key: str, value: bytes) -> None:
        self.ops.append((key, value))

    def delete(self, key: str) -> None:
        self.ops.append((key, None))


def new_batch() -> WriteBatch:
    """A batch usable with any :class:`KVStore` implementation in this package."""
    return _Batch()


def batch_ops(batch: WriteBatch) -> list[tuple[str, bytes | None]]:
    """The operations of a batch made by :func:`new_batch`, in order (``None`` value = delete), for any store."""
    if not isinstance(batch, _Batch):
        raise TypeError("batch must come from KVStore.batch()")
    return batch.ops


def open_leveldb(path: Path, what: str) -> plyvel.DB:
    """Open (creating if missing) the LevelDB at ``path``; a failure (e.g. another process holds its lock) is a
    :class:`KVError` naming ``what`` it is."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        return plyvel.DB(str(path), create_if_missing=True)
    except plyvel.Error as e:
        raise KVError(f"cannot open {what} at {path}: {e}") from e


class LevelDBStore:
    """:class:`KVStore` on plyvel. Writes are synchronous (fsync) so an acknowledged write survives a crash."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._db = open_leveldb(path, "metadata store")
        self._path = path
        self._sync = sync
        self._closed = False
        # plyvel is thread-safe, but close() while another thread iterates crashes LevelDB; the lock keeps
        # close() out while an operation runs (operations may run in worker threads via asyncio.to_thread).
        self._lock = threading.RLock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            self._check_open()
            value: bytes | None = self._db.get(key.encode())
            return value

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._check_open()
            self._db.put(key.encode(), value, sync=self._sync)

    def delete(self, key: str) -> None:
        with self._lock:
            self._check_open()
            self._db.delete(key.encode(), sync=self._sync)

    def batch(self) -> WriteBatch:
        return _Batch()

    def write(self, batch: WriteBatch) -> None:
        ops = batch_ops(batch)
        if not ops:
            return
        with self._lock:
            self._check_open()
            try:
                with self._db.write_batch(sync=self._sync) as wb:
                    for key, value in ops:
                        if value is None:
                            wb.delete(key.encode())
                        else:
                            wb.put(key.encode(), value)
            except plyvel.Error as e:
                if is_disk_full(e):
                    raise disk_full(self._path) from e
                raise KVError(f"metadata write failed: {e}") from e

    def iterate(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        # Materialise under the lock: a generator that outlives close() would touch a closed DB.
        with self._lock:
            self._check_open()
            p = prefix.encode()
            if start_after is not None and start_after.encode() >= p:
                it = self._db.iterator(start=start_after.encode(), include_start=False)
            else:
                it = self._db.iterator(prefix=p)
            out: list[tuple[str, bytes]] = []
            with it:
                for k, v in it:
                    if not k.startswith(p):
                        break
                    out.append((k.decode(), v))
                    if limit is not None and len(out) >= limit:
                        break
        return iter(out)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise KVError("metadata store is closed")
