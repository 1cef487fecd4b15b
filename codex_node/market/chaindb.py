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
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB
from eth.db.schema import SchemaV1

from codex_node.stores.kv import open_leveldb

_CANONICAL_HEAD_KEY = SchemaV1.make_canonical_head_hash_lookup_key()


class LevelChainDB(BaseAtomicDB):
    """A py-evm atomic database on plyvel. Open with the path of a directory (created if missing)."""

    def __init__(self, path: Path, *, sync: bool = True) -> None:
        self._db = open_leveldb(path, "the embedded chain's database")
        self.path = path
        self.sync = sync
        """Fsync the batches that move the canonical head."""

    # --- DatabaseAPI --------------------------------------------------------------------------------------------

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes | None = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value)

    def __delitem__(self, key: bytes) -> None:
        if self._db.get(key) is None:
            raise KeyError(key)
        self._db.delete(key)

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
            with self._db.write_batch(sync=sync) as wb:
                for key in diff.deleted_keys():
                    wb.delete(key)
                for key, value in diff.pending_items():
                    wb.put(key, value)

    # --- lifetime -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    @property
    def closed(self) -> bool:
        return bool(self._db.closed)


class _LevelWriteBatch(AtomicDBWriteBatch):
    """py-evm's diff-tracking write batch over ``LevelChainDB``; committed by ``atomic_batch`` in one write."""

    def _close(self) -> None:
        # A batch used after its block ends raises py-evm's ValidationError, as py-evm's own batches do.
        self._track_diff = None  # type: ignore[assignment]
        self._write_target_db = None  # type: ignore[assignment]
