"""A fault-injecting :class:`~codex_node.market.chaindb.LevelChainDB`: a disk that fills up on demand, and LevelDB's
torn-log behaviour after a failed write.

``full = True`` makes every write fail as LevelDB does on ENOSPC (``plyvel.IOError``) and :meth:`reopen` fail too.
A write that fails tears the log: writes that still reach the database afterwards (only code that ignores the
failure lets them through) are readable at once but gone at the next open, exactly as LevelDB drops the records
appended after a torn one when it replays its log. ``lost_writes`` counts them.
"""

from __future__ import annotations

from pathlib import Path

import plyvel

from codex_node.errors import KVError
from codex_node.market.chaindb import LevelChainDB


class FaultyChainDB(LevelChainDB):
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        super().__init__(path, sync=sync)
        self.full = False
        """While set, every write and every reopen fails with "No space left on device"."""
        self.failed_writes = 0
        self.lost_writes = 0
        """Writes applied after a torn record: visible until the database is reopened, then gone."""
        self._torn = False
        self._overlay: dict[bytes, bytes | None] = {}

    def _apply(self, deletes: list[bytes], puts: list[tuple[bytes, bytes]], *, sync: bool) -> None:
        if self.full:
            self.failed_writes += 1
            self._torn = True
            raise plyvel.IOError(f"IO error: {self.path}/000003.log: No space left on device".encode())
        if self._torn:
            self.lost_writes += 1
            self._overlay.update(dict.fromkeys(deletes))
            self._overlay.update(puts)
            return
        super()._apply(deletes, puts, sync=sync)

    def __getitem__(self, key: bytes) -> bytes:
        if key in self._overlay:
            value = self._overlay[key]
            if value is None:
                raise KeyError(key)
            return value
        return super().__getitem__(key)

    def _exists(self, key: bytes) -> bool:
        if key in self._overlay:
            return self._overlay[key] is not None
        return super()._exists(key)

    def reopen(self) -> None:
        if self.full:
            raise KVError(f"cannot open the embedded chain's database at {self.path}: No space left on device")
        self._forget_torn()
        super().reopen()

    def close(self) -> None:
        self._forget_torn()
        super().close()

    def _forget_torn(self) -> None:
        self._overlay.clear()
        self._torn = False
