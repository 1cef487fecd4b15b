"""A quota ledger for unit tests: the ``RepoStore.commit_with_quota`` contract on any KV store, without blocks.

It keeps the repo store's own quota record (``stores/quota.py``: one ``{max, used, reserved}`` record at
``meta/quota/used``, written in the same batch as the caller's records) with the same arithmetic: growth is refused
when ``used + reserved`` would pass ``max`` (reaching it is fine), nothing goes below zero, and a refused or failed
commit writes nothing and leaves the cached quota as it was. ``store_blocks`` / ``delete_blocks`` stand in for
block puts and maintenance.

Crash simulation: build the ledger over a ``MemoryKV``, make a write fail with ``fail_next_write``, then
``reopen()`` a fresh ledger from what was persisted.
"""

from __future__ import annotations

from codex_node.stores.kv import KVStore, WriteBatch
from codex_node.stores.quota import QUOTA_KEY, Quota


class FakeQuotaLedger:
    """Implements ``sales.reservations.QuotaLedger``."""

    def __init__(self, kv: KVStore, max_bytes: int = 1 << 30) -> None:
        """Loads ``used`` and ``reserved`` from the persisted record if there is one; ``max`` is ``max_bytes``
        (the configured quota wins over the persisted one, as in the repo store)."""
        self._kv = kv
        raw = kv.get(QUOTA_KEY)
        persisted = Quota(max_bytes) if raw is None else Quota.decode(raw)
        self._quota = Quota(max_bytes, persisted.used, persisted.reserved)
        self.commits = 0

    @property
    def kv(self) -> KVStore:
        return self._kv

    @property
    def quota(self) -> Quota:
        return self._quota

    def commit_with_quota(self, batch: WriteBatch, reserved_delta: int) -> Quota:
        """Check the new quota, add its record to ``batch`` and write all of it atomically."""
        return self._commit(batch, reserved=reserved_delta)

    def store_blocks(self, nbytes: int) -> Quota:
        """As if the repo stored ``nbytes`` of blocks (``used`` grows, checked against ``max``)."""
        return self._commit(self._kv.batch(), used=nbytes)

    def delete_blocks(self, nbytes: int) -> Quota:
        """As if maintenance deleted ``nbytes`` of expired blocks."""
        return self._commit(self._kv.batch(), used=-nbytes)

    def reopen(self) -> FakeQuotaLedger:
        """A new ledger over the same store, as after a restart (the cache is rebuilt from disk)."""
        return FakeQuotaLedger(self._kv, self._quota.max)

    def _commit(self, batch: WriteBatch, *, used: int = 0, reserved: int = 0) -> Quota:
        new = self._quota.change(used=used, reserved=reserved)  # raises before anything is written
        batch.put(QUOTA_KEY, new.encode())
        self._kv.write(batch)  # raises (and applies nothing) on a simulated failure: the cache stays as it was
        self._quota = new
        self.commits += 1
        return new
