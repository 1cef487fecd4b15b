"""Crash simulation for the repo store: stop the world at the n-th write to LevelDB or to the block files.

A :class:`CrashSwitch` counts every mutating step (a LevelDB write, half of an append to a pack, a pack created,
truncated or unlinked, a flush). When armed with ``n``, the n-th step raises :class:`SimulatedCrashError` *instead
of happening*, and from then on every step and every read raises too: the "process" is dead, nothing it does
afterwards (clean-up in ``finally`` blocks, other worker threads) reaches the disk. Reopening a store over the
wrapped (inner) KV and the same directory is then exactly a restart after a kill at that instant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from codex_node.stores.blockfiles import DIRECT_ALIGN, BlockFiles, Buffer, Location
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

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.switch.alive()
        return self.inner.get_many(keys)

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
    """:class:`BlockFiles` whose every file-system mutation is a step of the switch.

    An append is two steps, each writing half of the bytes: a crash at the second leaves a torn record at the
    pack's tail, as a kill in the middle of a write does.
    """

    def __init__(self, root: Path, switch: CrashSwitch, **kw: Any) -> None:
        super().__init__(root, sync="none", **kw)
        self.switch = switch
        self.direct_writes = 0

    def _create_pack(self, pack: int) -> int:
        self.switch.step(f"create pack {pack}")
        return super()._create_pack(pack)

    def _write_region(self, fd: int, offset: int, buffers: list[Buffer]) -> None:
        data = b"".join(bytes(b) for b in buffers)
        half = len(data) // 2
        self.switch.step(f"append at {offset}")
        super()._write_region(fd, offset, [data[:half]])
        self.switch.step(f"append at {offset + half}")
        super()._write_region(fd, offset + half, [data[half:]])

    def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
        self.direct_writes += 1
        half = len(data) // 2 // DIRECT_ALIGN * DIRECT_ALIGN or len(data)
        self.switch.step(f"append directly at {offset}")
        super()._write_direct(fd, offset, data[:half])
        if half < len(data):
            self.switch.step(f"append directly at {offset + half}")
            super()._write_direct(fd, offset + half, data[half:])

    def _cut_back(self, fd: int, size: int) -> None:
        self.switch.step("cut back a failed append")
        super()._cut_back(fd, size)

    def _sync(self, fd: int) -> None:
        self.switch.step("flush")
        super()._sync(fd)

    def delete_pack(self, pack: int) -> None:
        self.switch.step(f"unlink pack {pack}")
        super().delete_pack(pack)

    def _truncate(self, pack: int, size: int) -> None:
        self.switch.step(f"truncate pack {pack}")
        super()._truncate(pack, size)

    def read(self, loc: Location) -> bytes:
        self.switch.alive()
        return super().read(loc)

    def read_into(self, locs: Sequence[Location], dests: Sequence[memoryview]) -> list[int | None]:
        self.switch.alive()
        return super().read_into(locs, dests)

    def walk(self, pack: int, size: int) -> Iterator[tuple[str, Location]]:
        self.switch.alive()
        return super().walk(pack, size)
