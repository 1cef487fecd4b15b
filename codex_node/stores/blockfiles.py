"""Block data on disk: one file per block, ``<root>/blocks/<last two chars of the CID>/<cid>``.

Blocks are written under ``<root>/tmp/`` first and then hard-linked into place, so a file under ``blocks/`` is
always complete, and a block that is already there (another upload of the same bytes) is never replaced.
``tmp/`` only ever holds writes in flight; :meth:`BlockFiles.wipe_tmp` empties it at start-up. Which files
*count* is decided by the metadata in LevelDB, never by this module: it does not know about quota, expiry or
crash recovery (``stores/repostore.py`` does), and it never reads LevelDB.

When :meth:`BlockFiles.store` or :meth:`BlockFiles.remove` returns, the change is durable, by one of three
policies (:data:`SyncMode`):

* ``syncfs`` (default on Linux): write all files, link them, then one ``syncfs(2)`` for the whole batch. One
  flush per batch instead of one per block; it also flushes other dirty data on the same filesystem, which is
  why the data dir belongs on its own volume.
* ``fsync``: ``fdatasync`` every temp file (in parallel threads, so the filesystem merges the journal commits),
  link, then fsync each shard directory that changed. Portable, but on the machine this was measured on it
  caps ingest at ~120 MiB/s for 64 KiB blocks: one device flush per block.
* ``none``: no flush. A killed process loses nothing (the kernel still holds the pages); a power loss may.
  For tests.

All methods block; call them from a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from codex_node.data.cid import Cid

Buffer = bytes | bytearray | memoryview

_SHARD_CHARS = 2
_T = TypeVar("_T")


SyncMode = Literal["syncfs", "fsync", "none"]


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return fn


_syncfs = _load_syncfs() if sys.platform.startswith("linux") else None
DEFAULT_SYNC: SyncMode = "syncfs" if _syncfs is not None else "fsync"


class BlockFiles:
    """The file layer of the repo."""

    def __init__(self, root: Path, *, sync: SyncMode = DEFAULT_SYNC, sync_workers: int = 16) -> None:
        if sync == "syncfs" and _syncfs is None:
            raise ValueError("syncfs(2) is not available on this system; use sync='fsync'")
        self.root = root
        self.blocks_dir = root / "blocks"
        self.tmp_dir = root / "tmp"
        self.sync = sync
        self.blocks_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._seq = itertools.count()
        self._sync_workers = sync_workers
        self._pool: ThreadPoolExecutor | None = None
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def path(self, cid: Cid) -> Path:
        return self.blocks_dir / cid.text[-_SHARD_CHARS:] / cid.text

    # --- writing ----------------------------------------------------------------------------------------------

    def store(self, items: Sequence[tuple[Cid, Buffer]]) -> None:
        """Write every block and make it durable under its final name."""
        written: list[tuple[int, Path, Cid]] = []
        try:
            for cid, data in items:
                tmp = self.tmp_dir / f"{cid.text}.{next(self._seq)}"
                written.append((self.create_temp(tmp, data), tmp, cid))
            if self.sync == "fsync":
                self._parallel(os.fdatasync, [fd for fd, _, _ in written])
            dirs: dict[Path, None] = {}
            for _, tmp, cid in written:
                dirs[self.publish(tmp, cid)] = None
            self._flush(dirs)
        finally:
            for fd, _, _ in written:
                os.close(fd)

    def create_temp(self, tmp: Path, data: Buffer) -> int:
        """Write ``data`` to a new temp file; return its open descriptor (the caller closes it)."""
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            raise
        return fd

    def publish(self, tmp: Path, cid: Cid) -> Path:
        """Link a temp file to the block's final name (unless a complete copy is there) and drop the temp name.

        Returns the shard directory. Linking instead of renaming never replaces a file another writer of the
        same block has already made durable with one that is not yet.
        """
        final = self.path(cid)
        try:
            os.link(tmp, final)
        except FileExistsError:
            pass
        except FileNotFoundError:
            if not tmp.exists():
                raise
            final.parent.mkdir(exist_ok=True)
            if self.sync == "fsync":
                self.sync_dirs([self.blocks_dir])
            with contextlib.suppress(FileExistsError):
                os.link(tmp, final)
        os.unlink(tmp)
        return final.parent

    # --- deleting ---------------------------------------------------------------------------------------------

    def remove(self, cids: Iterable[Cid]) -> None:
        """Unlink these blocks' files (missing ones are fine) and make the removal durable."""
        dirs: dict[Path, None] = {}
        for cid in cids:
            dirs[self.unlink(cid)] = None
        if dirs:
            self._flush(dirs)

    def unlink(self, cid: Cid) -> Path:
        path = self.path(cid)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return path.parent

    def wipe_tmp(self) -> int:
        """Delete every leftover temp file; return how many there were. Only in-flight writes live here."""
        count = 0
        for entry in os.scandir(self.tmp_dir):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            count += 1
        return count

    # --- reading ----------------------------------------------------------------------------------------------

    def read(self, cid: Cid) -> bytes:
        """The block's bytes; raises ``FileNotFoundError`` when there is no file."""
        with open(self.path(cid), "rb", buffering=0) as f:
            return f.read()

    def exists(self, cid: Cid) -> bool:
        return self.path(cid).is_file()

    def iter_files(self) -> Iterable[tuple[str, int]]:
        """``(cid text, size)`` of every block file (a full walk: for checks and tests, never at start-up)."""
        for shard in os.scandir(self.blocks_dir):
            if shard.is_dir(follow_symlinks=False):
                for entry in os.scandir(shard.path):
                    yield entry.name, entry.stat(follow_symlinks=False).st_size

    # --- durability -------------------------------------------------------------------------------------------

    def _flush(self, dirs: Iterable[Path]) -> None:
        if self.sync == "fsync":
            self.sync_dirs(dirs)
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
            self._pool = ThreadPoolExecutor(self._sync_workers, thread_name_prefix="blockfiles-sync")
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
