"""Crash simulation for the repo store: stop the world at the n-th write to LevelDB or to the block files.

A :class:`CrashSwitch` counts every mutating step (a LevelDB write, a temp file written, a file linked into place,
an unlink, a flush). When armed with ``n``, the n-th step raises :class:`SimulatedCrashError` *instead of happening*,
and from then on every step and every read raises too: the "process" is dead, nothing it does afterwards (clean-up
in ``finally`` blocks, other worker threads) reaches the disk. Reopening a store over the wrapped (inner) KV and
the same directory is then exactly a restart after a kill at that instant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from codex_node.data.cid import Cid
from codex_node.stores.blockfiles import BlockFiles, Buffer
from codex_node.stores.kv import KVStore, WriteBatch


class SimulatedCrashError(Exception):
    """The simulated process died here."""


class CrashSwitch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self.steps = 0
        self.tripped = False

    def arm(self, n: int) -> None:
        """Crash at the n-th step from now (0: the very next one)."""
        self._remaining = n

    def step(self, what: str) -> None:
        with self._lock:
            if self.tripped:
                raise SimulatedCrashError(f"dead (at {what})")
            self.steps += 1
            if self._remaining is not None:
                if self._remaining == 0:
                    self.tripped = True
                    raise SimulatedCrashError(f"crash at {what}")
                self._remaining -= 1

    def alive(self) -> None:
        if self.tripped:
            raise SimulatedCrashError("dead")


class CrashingKV:
    """A :class:`KVStore` that dies with its switch."""

    def __init__(self, inner: KVStore, switch: CrashSwitch) -> None:
        self.inner = inner
        self.switch = switch

    def get(self, key: str) -> bytes | None:
        self.switch.alive()
        return self.inner.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.switch.step(f"kv put {key}")
        self.inner.put(key, value)

    def delete(self, key: str) -> None:
        self.switch.step(f"kv delete {key}")
        self.inner.delete(key)

    def batch(self) -> WriteBatch:
        return self.inner.batch()

    def write(self, batch: WriteBatch) -> None:
        self.switch.step("kv batch")
        self.inner.write(batch)

    def iterate(
        self, prefix: str, *, start_after: str | None = None, limit: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        self.switch.alive()
        return self.inner.iterate(prefix, start_after=start_after, limit=limit)

    def close(self) -> None:
        self.inner.close()


class CrashingFiles(BlockFiles):
    """:class:`BlockFiles` whose every file-system mutation is a step of the switch."""

    def __init__(self, root: Path, switch: CrashSwitch) -> None:
        super().__init__(root, sync="none")
        self.switch = switch

    def create_temp(self, cid: Cid, data: Buffer) -> int:
        self.switch.step(f"write {cid}.tmp")
        return super().create_temp(cid, data)

    def publish(self, cid: Cid) -> Path:
        self.switch.step(f"rename {cid}")
        return super().publish(cid)

    def unlink(self, cid: Cid) -> Path:
        self.switch.step(f"unlink {cid}")
        return super().unlink(cid)

    def _flush(self, dirs: Iterable[Path], *, missing_ok: bool = False) -> None:
        self.switch.step("flush")
        super()._flush(dirs, missing_ok=missing_ok)

    def read(self, cid: Cid) -> bytes:
        self.switch.alive()
        return super().read(cid)

    def remove_temps(self, cids: Iterable[Cid]) -> None:
        self.switch.step("remove temps")
        super().remove_temps(cids)
