"""The metadata key-value port: namespaced keys and atomic write batches.

Everything except block data lives in one LevelDB per data dir. Keys are ``/``-separated namespaces
(``meta/ttl/<cid>``, ``meta/quota/used``, ``meta/sales/reservations/<id>``). Every multi-key change goes through
one :class:`WriteBatch` so a crash leaves either all of it or none of it.

This module must never know what the values mean; records encode themselves (see ``stores/records.py``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import plyvel
import structlog

from codex_node.errors import KVError
from codex_node.stores.diskspace import disk_full, is_disk_full

log = structlog.get_logger(__name__)


class WriteBatch(Protocol):
    """A set of puts and deletes applied atomically by :meth:`KVStore.write`."""

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...


class KVStore(Protocol):
    """The metadata store port. Implementations: :class:`LevelDBStore`, ``testing.MemoryKV``."""

    def get(self, key: str) -> bytes | None: ...

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The value of each key (``None``: absent), in order: one call for a group of reads."""
        ...

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
    """:class:`KVStore` on plyvel. Writes are synchronous (fsync) so an acknowledged write survives a crash.

    After a failed write (a full disk) the database is reopened before anything else is done with it. LevelDB
    would otherwise go on appending to a log that may end in a torn record, and its recovery at the next open
    drops that record together with the records after it in the same log block: writes acknowledged after the
    failure would be lost. Reopening replays the log once and starts a fresh one. While the reopen itself fails
    (the disk is still full), every operation fails with the reason instead.
    """

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._db: plyvel.DB | None = open_leveldb(path, "metadata store")
        self._path = path
        self._sync = sync
        self._closed = False
        # plyvel is thread-safe, but close() while another thread iterates crashes LevelDB; the lock keeps
        # close() out while an operation runs (operations may run in worker threads via asyncio.to_thread).
        self._lock = threading.RLock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value: bytes | None = self._live().get(key.encode())
            return value

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        # One lock hold for the group: a lock taken per key by threads that also wait for the GIL convoys (a peer's
        # batch of 64 blocks spent more time here than reading the blocks).
        with self._lock:
            db = self._live()
            return [db.get(key.encode()) for key in keys]

    def put(self, key: str, value: bytes) -> None:
        b = _Batch()
        b.put(key, value)
        self.write(b)

    def delete(self, key: str) -> None:
        b = _Batch()
        b.delete(key)
        self.write(b)

    def batch(self) -> WriteBatch:
        return _Batch()

    def write(self, batch: WriteBatch) -> None:
        ops = batch_ops(batch)
        if not ops:
            return
        with self._lock:
            db = self._live()
            try:
                with db.write_batch(sync=self._sync) as wb:
                    for key, value in ops:
                        if value is None:
                            wb.delete(key.encode())
                        else:
                            wb.put(key.encode(), value)
            except plyvel.Error as e:
                self._reopen_after_failure()
                if is_disk_full(e):
                    raise disk_full(self._path) from e
                raise KVError(f"metadata write failed: {e}") from e

    def iterate(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        # Materialise under the lock: a generator that outlives close() would touch a closed DB.
        with self._lock:
            db = self._live()
            p = prefix.encode()
            if start_after is not None and start_after.encode() >= p:
                it = db.iterator(start=start_after.encode(), include_start=False)
            else:
                it = db.iterator(prefix=p)
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
                if self._db is not None:
                    self._db.close()
                    self._db = None

    def _live(self) -> plyvel.DB:
        """The open database; reopened first if a failed write left it closed (under the lock)."""
        if self._closed:
            raise KVError("metadata store is closed")
        if self._db is None:
            try:
                self._db = plyvel.DB(str(self._path), create_if_missing=True)
            except plyvel.Error as e:
                if is_disk_full(e):
                    raise disk_full(self._path) from e
                raise KVError(f"metadata store unavailable since a failed write, cannot reopen it: {e}") from e
            log.warning("metadata store reopened after a failed write", path=str(self._path))
        return self._db

    def _reopen_after_failure(self) -> None:
        """Close the database after a failed write; the next operation reopens it (see the class docstring)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        with contextlib.suppress(KVError):  # the disk may still be full: the next operation tries again
            self._live()
