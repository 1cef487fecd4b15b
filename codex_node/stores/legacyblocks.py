"""The old block layout (before pack files), kept only to convert a data dir (``stores/migration.py``): one
file per block, ``<root>/blocks/<last two chars of the CID>/<cid>``.

A block is written to ``<cid>.tmp`` in its own shard directory and renamed to ``<cid>``, so a file under its final
name is always complete. The temp name is fixed rather than unique because the repo store lets only one writer
handle a CID at a time; that lets crash recovery find every leftover of a CID from its name alone
(:meth:`BlockFiles.remove`), without listing any directory. Temp files live beside their block rather than in one
shared folder so that concurrent writers do not queue on one directory's lock.

Which files *count* is decided by the metadata in LevelDB, never by this module: it does not know about quota,
expiry or crash recovery (``stores/repostore.py`` does), and it never reads LevelDB.

When :meth:`BlockFiles.store` or :meth:`BlockFiles.remove` returns, the change is durable, by one of three
policies (:data:`SyncMode`):

* ``syncfs`` (default on Linux): write and rename all files, then one ``syncfs(2)`` for the whole batch. One flush
  per batch instead of one per block; it also flushes other dirty data on the same filesystem, which is why the
  data dir belongs on its own volume.
* ``fsync``: ``fdatasync`` every temp file (in parallel threads, so the filesystem merges the journal commits),
  rename, then fsync each shard directory that changed. Portable, but one device flush per block: on the machine
  this was measured on it caps ingest near 120 MiB/s for 64 KiB blocks.
* ``none``: no flush. A killed process loses nothing (the kernel still holds the pages); a power loss may.
  For tests.

All methods block; call them from a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from codex_node.data.cid import Cid

Buffer = bytes | bytearray | memoryview
SyncMode = Literal["syncfs", "fsync", "none"]

TMP_SUFFIX = ".tmp"
_SHARD_CHARS = 2
_T = TypeVar("_T")


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return fn


_syncfs = _load_syncfs() if sys.platform.startswith("linux") else None
DEFAULT_SYNC: SyncMode = "syncfs" if _syncfs is not None else "fsync"


class LegacyBlockFiles:
    """The file-per-block layer, as data dirs made before pack files hold it (``stores/migration.py`` reads it)."""

    def __init__(
        self, root: Path, *, sync: SyncMode = DEFAULT_SYNC, sync_workers: int = 16, read_workers: int = 4
    ) -> None:
        if sync == "syncfs" and _syncfs is None:
            raise ValueError("syncfs(2) is not available on this system; use sync='fsync'")
        self.root = root
        self.blocks_dir = root / "blocks"
        self.sync = sync
        self.blocks_dir.mkdir(parents=True, exist_ok=True)
        self._sync_workers = sync_workers
        self._read_workers = max(1, read_workers)
        self._pool: ThreadPoolExecutor | None = None
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def path(self, cid: Cid) -> Path:
        return self.blocks_dir / cid.text[-_SHARD_CHARS:] / cid.text

    def temp_path(self, cid: Cid) -> Path:
        return self.blocks_dir / cid.text[-_SHARD_CHARS:] / (cid.text + TMP_SUFFIX)

    # --- writing ----------------------------------------------------------------------------------------------

    def store(self, items: Sequence[tuple[Cid, Buffer]]) -> None:
        """Write every block and make it durable under its final name. One writer per CID at a time."""
        written: list[tuple[int, Cid]] = []
        try:
            for cid, data in items:
                written.append((self.create_temp(cid, data), cid))
            if self.sync == "fsync":
                self._parallel(os.fdatasync, [fd for fd, _ in written])
            dirs: dict[Path, None] = {}
            for _, cid in written:
                dirs[self.publish(cid)] = None
            self._flush(dirs)
        finally:
            for fd, _ in written:
                os.close(fd)

    def create_temp(self, cid: Cid, data: Buffer) -> int:
        """Write ``data`` to the block's temp file; return its open descriptor (the caller closes it)."""
        tmp = self.temp_path(cid)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:
            tmp.parent.mkdir(exist_ok=True)  # first block of this shard
            if self.sync == "fsync":
                self.sync_dirs([self.blocks_dir])
            fd = os.open(tmp, flags, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            raise
        return fd

    def publish(self, cid: Cid) -> Path:
        """Rename the block's temp file to its final name; return the shard directory."""
        final = self.path(cid)
        os.replace(self.temp_path(cid), final)
        return final.parent

    # --- deleting ---------------------------------------------------------------------------------------------

    def remove(self, cids: Iterable[Cid]) -> None:
        """Unlink these blocks' files and temp files (missing ones are fine) and make the removal durable."""
        dirs: dict[Path, None] = {}
        for cid in cids:
            dirs[self.unlink(cid)] = None
        if dirs:
            # A shard directory may never have been made (a put that failed first, e.g. on a full disk): nothing
            # was removed from it, so there is nothing to flush.
            self._flush(dirs, missing_ok=True)

    def remove_temps(self, cids: Iterable[Cid]) -> None:
        """Unlink only the temp files of these blocks (their final files are kept)."""
        for cid in cids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp_path(cid))

    def unlink(self, cid: Cid) -> Path:
        path = self.path(cid)
        for name in (path, self.temp_path(cid)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        return path.parent

    # --- reading ----------------------------------------------------------------------------------------------

    def read(self, cid: Cid) -> bytes:
        """The block's bytes; raises ``FileNotFoundError`` when there is no file."""
        with open(self.path(cid), "rb", buffering=0) as f:
            return f.read()

    def read_into(self, cid: Cid, buf: memoryview) -> int:
        """Read the block into ``buf``; return how many bytes it has (``len(buf) + 1`` if it is longer).

        Raises ``FileNotFoundError`` when there is no file.
        """
        with open(self.path(cid), "rb", buffering=0) as f:
            n = f.readinto(buf) or 0
            if n == len(buf) and f.read(1):
                return n + 1
            return n

    def read_run(self, cids: Sequence[Cid], block_size: int, length: int) -> tuple[memoryview, list[int | None]]:
        """Read consecutive blocks (each ``block_size`` bytes, the last maybe shorter) into one ``length`` buffer.

        Returns the buffer and, per block, the size found on disk (``None``: no file) so the caller can judge.
        Parts of the run are read by parallel threads: on a cold cache each block is a separate small read, and the
        device serves several at once far faster than one after the other.
        """
        view = memoryview(bytearray(length))
        sizes: list[int | None] = [None] * len(cids)

        def read_part(part: range) -> None:
            for i in part:
                try:
                    sizes[i] = self.read_into(cids[i], view[i * block_size : min((i + 1) * block_size, length)])
                except FileNotFoundError:
                    sizes[i] = None

        workers = min(self._read_workers, len(cids))
        step = -(-len(cids) // workers) if workers else 1
        self._parallel(read_part, [range(i, min(i + step, len(cids))) for i in range(0, len(cids), step)])
        return view, sizes

    def exists(self, cid: Cid) -> bool:
        return self.path(cid).is_file()

    def iter_files(self) -> Iterator[tuple[str, int]]:
        """``(file name, size)`` of every file under ``blocks/``, temp files included.

        A full walk: for checks and tests, never at start-up.
        """
        for shard in os.scandir(self.blocks_dir):
            if shard.is_dir(follow_symlinks=False):
                for entry in os.scandir(shard.path):
                    yield entry.name, entry.stat(follow_symlinks=False).st_size

    # --- durability -------------------------------------------------------------------------------------------

    def _flush(self, dirs: Iterable[Path], *, missing_ok: bool = False) -> None:
        if self.sync == "fsync":
            self._parallel(_fsync_dir_if_present if missing_ok else _fsync_dir, list(dirs))
        elif self.sync == "syncfs" and _syncfs is not None and _syncfs(self._root_fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}")

    def sync_dirs(self, dirs: Iterable[Path]) -> None:
        self._parallel(_fsync_dir, list(dirs))

    def _parallel(self, fn: Callable[[_T], object], args: Sequence[_T]) -> None:
        if not args:
            return
        if len(args) == 1:
            fn(args[0])
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._sync_workers, thread_name_prefix="blockfiles")
        # list() re-raises the first failure after all have run.
        list(self._pool.map(fn, args))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _fsync_dir(path)
