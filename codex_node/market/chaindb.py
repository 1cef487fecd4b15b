"""py-evm's database on LevelDB: where the embedded chain keeps its blocks, receipts and state.

:class:`LevelChainDB` implements py-evm's ``AtomicDatabaseAPI`` (``BaseAtomicDB``): get/set/delete/exists on raw
bytes plus ``atomic_batch()``, whose writes reach LevelDB in one plyvel write batch when the block exits without
an exception, and not at all otherwise. py-evm persists state tries and each imported block (header, body,
receipts, canonical head) through such batches, so a crash leaves the chain at a block boundary, never half a
block.

It is a LevelDB of its own (``<data-dir>/chain/db``), not the node's metadata store: the chain writes a block a
second and its keys are py-evm's (hashes, schema prefixes), so the two never share a lock, a compaction or a key
space, and removing ``<data-dir>/chain`` resets the embedded chain without touching the node's records.

Durability: LevelDB applies writes in order and recovers a prefix of them, so the chain on disk is always a
chain py-evm wrote, whatever is lost. Only the batch that moves the canonical head (the last write of each
imported block) is fsynced, when ``sync`` is on (the default): that one fsync makes the block and every state
node before it durable, so an acknowledged block survives a power loss, at one fsync per block instead of one
per batch (six per block). Tests, and the chain's catch-up from genesis, turn ``sync`` off. The database is used
from one thread at a time (the embedded chain's worker thread).

A failed write (disk full) poisons the database until :meth:`LevelChainDB.reopen`: LevelDB may have left a torn
record in its log, and every record it appends after it, although applied in memory and readable at once, is
dropped when the log is replayed at the next open (seen: blocks mined after the disk was freed, visible to the
event stream, gone after a restart). So after a failure every write raises :class:`ChainDBWriteError` until the
owner reopens the database; reopening replays the log, which is then what the chain shows and what is on disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.db.schema import SchemaV1

from codex_node.errors import KVError
from codex_node.stores.kv import open_leveldb

_CANONICAL_HEAD_KEY = SchemaV1.make_canonical_head_hash_lookup_key()
_WHAT = "the embedded chain's database"


class ChainDBWriteError(KVError):
    """A write to the chain's database failed, or came after a failure and before :meth:`LevelChainDB.reopen`."""


class LevelChainDB(BaseAtomicDB):
    """A py-evm atomic database on plyvel. Open with the path of a directory (created if missing)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._db = open_leveldb(path, _WHAT)
        self.path = path
        self.sync = sync
        """Fsync the batches that move the canonical head."""
        self.failure: str | None = None
        """Why the last write failed, while the database needs :meth:`reopen`; None when it is sound."""

    # --- DatabaseAPI --------------------------------------------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes | None = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._write([], [(key, value)], sync=False)

    def __delitem__(self, key: bytes) -> None:
        if not self._exists(key):
            raise KeyError(key)
        self._write([key], [], sync=False)

    def _exists(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    # --- AtomicDatabaseAPI --------------------------------------------------------------------------------------

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        """Reads inside the block see its own writes; the writes land together on exit, or not at all."""
        batch = _LevelWriteBatch(self)
        try:
            yield batch
        except BaseException:
            batch._close()
            raise
        else:
            diff = batch._diff()
            batch._close()
            sync = self.sync and _CANONICAL_HEAD_KEY in diff
            self._write(list(diff.deleted_keys()), list(diff.pending_items()), sync=sync)

    def _write(self, deletes: list[bytes], puts: list[tuple[bytes, bytes]], *, sync: bool) -> None:
        """One LevelDB write batch; a failure poisons the database until :meth:`reopen` (module docstring)."""
        if self.failure is not None:
            raise ChainDBWriteError(f"{_WHAT} must be reopened after a failed write ({self.failure})")
        try:
            self._apply(deletes, puts, sync=sync)
        except plyvel.Error as e:
            self.failure = _message(e)
            raise ChainDBWriteError(f"writing {_WHAT} failed: {self.failure}") from e

    def _apply(self, deletes: list[bytes], puts: list[tuple[bytes, bytes]], *, sync: bool) -> None:
        with self._db.write_batch(sync=sync) as wb:
            for key in deletes:
                wb.delete(key)
            for key, value in puts:
                wb.put(key, value)

    # --- lifetime -----------------------------------------------------------------------------------------------

    def reopen(self) -> None:
        """Close and open the database again: LevelDB replays its log, so what it then holds is what is on disk.
        Raises :class:`~codex_node.errors.KVError` when that fails (the disk still full); then call again."""
        if not self._db.closed:
            self._db.close()
        self._db = open_leveldb(self.path, _WHAT)
        self.failure = None

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)


def _message(e: plyvel.Error) -> str:
    """plyvel's message (it raises with bytes) as one line of text."""
    raw = e.args[0] if e.args else e
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split()) or type(e).__name__


class _LevelWriteBatch(AtomicDBWriteBatch):
    """py-evm's diff-tracking write batch over ``LevelChainDB``; committed by ``atomic_batch`` in one write."""

    def _close(self) -> None:
        # A batch used after its block ends raises py-evm's ValidationError, as py-evm's own batches do.
        self._track_diff = None  # type: ignore[assignment]
        self._write_target_db = None  # type: ignore[assignment]
