"""Block data on disk: blocks appended to pack files, ``<root>/packs/<id as 16 hex digits>.pack``.

A pack is a sequence of records, each ``header · CID text · data``; the header (:data:`HEADER`) holds a magic, the
length of the CID text and the length of the data. A block's place is a :class:`Location` (pack, offset of its
data, length), which the repo store keeps in its LevelDB index; reads are positioned reads (``pread``/``preadv``)
at that place. Pack format and crash-safety argument: ``docs/packs.md``.

Blocks go to a few *open* packs, one per expiry bucket (``expiry // bucket_seconds``), so blocks that expire
together (a slot's, an upload's) sit together and go together. A pack is *sealed* once it reaches
``pack_limit`` bytes, when its bucket has passed, or when too many are open; a sealed pack is never written again.
Packs of an earlier run are all sealed. Appends to one pack are serialized; a group of blocks is written
directly (``O_DIRECT``, from an aligned staging buffer, between padding records), a small append through the page
cache (:meth:`BlockFiles.append`). A write that fails is cut back off the file, so a pack is always a run of whole
records (plus, after a kill, a torn tail that start-up truncates: ``RepoStore`` knows each pack's committed size).

Which bytes *count* is decided by the index in LevelDB, never by this module: it does not read LevelDB. It tells
its owner about a new pack (``on_new_pack``) before it creates the file, so no pack file exists that the index
does not name.

When :meth:`BlockFiles.append` returns, the bytes are durable, by one of the :data:`SyncMode` policies:
``fsync``/``syncfs`` (``fdatasync`` of the pack after the write — one flush per group of blocks, not per block;
``syncfs`` is kept as a name for compatibility and means the same), or ``none`` (no flush: a killed process loses
nothing, a power loss may; for tests and benchmarks of the code itself).

All methods block; call them from a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import structlog

from codex_node.data.cid import Cid
from codex_node.utils.bufferpool import BufferPool, page_aligned

log = structlog.get_logger(__name__)

Buffer = bytes | bytearray | memoryview
SyncMode = Literal["syncfs", "fsync", "none"]

DEFAULT_SYNC: SyncMode = "syncfs" if sys.platform.startswith("linux") else "fsync"
MAGIC = b"CXB1"
HEADER = struct.Struct(">4sHI")  # magic, CID text length, data length
DEFAULT_PACK_LIMIT = 256 << 20
DEFAULT_BUCKET_SECONDS = 24 * 3600
DEFAULT_MAX_OPEN = 16
PACKS_DIR = "packs"
_IOV_MAX = 512
_MAX_NAME = 256  # longest CID text a record may hold (ours are 59 characters)
_WALK_WINDOW = 1 << 20
DIRECT_ALIGN = 4096
"""What a direct write's offset, length and memory are aligned to (a page: the largest logical block size of
the disks in use, so it suits 512-byte and 4 KiB ones alike)."""
DIRECT_MIN_BYTES = 256 * 1024
"""Appends of at least this many bytes are written directly (``O_DIRECT``); smaller ones through the page cache
(the padding a direct write needs would weigh on them)."""
STAGE_BYTES = 4 << 20
"""The aligned staging buffer a direct append is copied into and written from, one buffer-full at a time."""
_STAGES_KEPT = 4
"""Staging buffers kept for reuse (appends to different packs may run at once)."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a block's bytes are: ``length`` bytes at ``offset`` of pack ``pack``."""

    pack: int
    offset: int
    length: int


@dataclass(slots=True)
class _Pack:
    """A pack this process writes or wrote: its write descriptor and how far it has been appended."""

    id: int
    bucket: int
    fd: int
    size: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    writers: int = 0  # appends not yet committed or abandoned by the owner (:meth:`BlockFiles.done`)
    sealed: bool = False
    direct_fd: int | None = None  # the pack opened for direct writes, once one was made


class BlockFiles:
    """The file layer of the repo: pack files."""

    def __init__(
        self,
        root: Path,
        *,
        sync: SyncMode = DEFAULT_SYNC,
        pack_limit: int = DEFAULT_PACK_LIMIT,
        bucket_seconds: int = DEFAULT_BUCKET_SECONDS,
        max_open: int = DEFAULT_MAX_OPEN,
        direct: bool = True,
        direct_min: int = DIRECT_MIN_BYTES,
    ) -> None:
        """``direct``: write appends of ``direct_min`` bytes or more with ``O_DIRECT`` (see :meth:`append`); turned
        off by itself, with one warning, on a file system that refuses it."""
        if pack_limit <= 0 or bucket_seconds <= 0 or max_open <= 0:
            raise ValueError("pack_limit, bucket_seconds and max_open must be positive")
        self.root = root
        self.packs_dir = root / PACKS_DIR
        self.sync = sync
        self.pack_limit = pack_limit
        self.bucket_seconds = bucket_seconds
        self.max_open = max_open
        self.direct = direct and hasattr(os, "O_DIRECT")
        self.direct_min = direct_min
        self._stages = BufferPool(STAGE_BYTES, _STAGES_KEPT, page_aligned)
        self.packs_dir.mkdir(parents=True, exist_ok=True)
        self.on_new_pack: Callable[[int], None] = lambda _id: None
        self._lock = threading.Lock()
        self._open: dict[int, _Pack] = {}  # bucket → its open pack
        self._live: dict[int, _Pack] = {}  # pack id → packs with a descriptor (open, or sealed with writers)
        self._retired: set[int] = set()
        self._next_id = 1

    def pack_path(self, pack: int) -> Path:
        return self.packs_dir / f"{pack:016x}.pack"

    def bucket(self, expiry: int) -> int:
        return expiry // self.bucket_seconds

    def start(self, next_id: int) -> None:
        """Set the id the next new pack gets (the owner keeps the counter, so ids are never reused)."""
        self._next_id = max(self._next_id, next_id)

    # --- writing ----------------------------------------------------------------------------------------------

    def append(self, expiry: int, items: Sequence[tuple[Cid, Buffer]]) -> list[Location]:
        """Append the blocks to the open pack of ``expiry``'s bucket, durably; return their locations.

        An append of :attr:`direct_min` bytes or more is written with ``O_DIRECT``, from an aligned staging
        buffer, at an aligned offset (:meth:`_append_direct`): the bytes go from that buffer to the disk, not
        through the page cache. Written through the page cache, 256 MiB in 4 MiB groups cost 0.09–0.47 s of CPU
        (allocating page-cache pages for it; the spread is from run to run), directly 0.02 s; with the copy into the
        staging buffer and the repo's bookkeeping, storing them took 0.12 s of CPU instead of 0.17–0.45 s
        (``docs/packs.md``). Smaller appends go through the page cache, unpadded.

        The pack counts one more writer until the owner calls :meth:`done` with its id (after committing the
        index, or giving up): a pack with writers is never retired.
        """
        heads = [_record_head(cid.text.encode(), len(data)) for cid, data in items]
        total = sum(len(head) + len(data) for head, (_, data) in zip(heads, items, strict=True))
        pack = self._pack_for(self.bucket(expiry))
        try:
            with pack.lock:
                start = pack.size
                if self.direct and total >= self.direct_min:
                    first = self._append_direct(pack, heads, items, total)
                else:
                    first = start
                    buffers: list[Buffer] = []
                    for head, (_, data) in zip(heads, items, strict=True):
                        buffers += (head, data)
                    self._write_or_cut(pack, start, lambda: self._write_region(pack.fd, start, buffers))
                    pack.size = start + total
                locations = []
                offset = first
                for head, (_, data) in zip(heads, items, strict=True):
                    locations.append(Location(pack.id, offset + len(head), len(data)))
                    offset += len(head) + len(data)
                if pack.size >= self.pack_limit:
                    with self._lock:  # lock order: a pack's lock, then the allocation lock
                        self._seal(pack)
            self._sync(pack.fd)
        except BaseException:
            self.done([pack.id])
            raise
        return locations

    def _append_direct(self, pack: _Pack, heads: list[bytes], items: Sequence[tuple[Cid, Buffer]], total: int) -> int:
        """Write the records at the pack's first aligned offset (a padding record before them if the pack's end is
        not aligned, one after them so the next append starts aligned); caller holds the pack's lock. Returns the
        offset of the first record."""
        start = pack.size
        lead = _padding(start)
        first = start + len(lead)
        tail = _padding(first + total)
        end = first + total + len(tail)

        def write() -> None:
            if lead:  # a few bytes after a small buffered append: through the page cache, like it
                self._write_region(pack.fd, start, [lead])
            buffer = self._stages.take()
            self._stages.give(buffer)  # taken again only once no view of it is left (an error's traceback may keep one)
            stage = memoryview(buffer)
            at, used = first, 0
            for part in _record_parts(heads, items, tail):
                view = memoryview(part).cast("B")
                while view:
                    n = min(len(view), len(stage) - used)
                    stage[used : used + n] = view[:n]
                    used, view = used + n, view[n:]
                    if used == len(stage):
                        self._write_staged(pack, at, stage)
                        at, used = at + used, 0
            if used:
                self._write_staged(pack, at, stage[:used])

        self._write_or_cut(pack, start, write)
        pack.size = end
        return first

    def _write_staged(self, pack: _Pack, offset: int, data: memoryview) -> None:
        """Write ``data`` (aligned: its address, length and ``offset``) directly; through the page cache, for good,
        if the file system refuses direct writes."""
        if self.direct:
            try:
                if pack.direct_fd is None:
                    pack.direct_fd = os.open(self.pack_path(pack.id), os.O_WRONLY | os.O_DIRECT)
                self._write_direct(pack.direct_fd, offset, data)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                self.direct = False
                log.warning(
                    "direct writes refused by the file system; block writes go through the page cache",
                    root=str(self.root),
                    error=str(e),
                )
            else:
                return
        self._write_region(pack.fd, offset, [data])

    def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
        """Write all of ``data`` at ``offset`` of a descriptor opened with ``O_DIRECT``."""
        while data:
            n = os.pwrite(fd, data, offset)
            if n <= 0 or n % DIRECT_ALIGN:
                raise OSError(errno.EIO, f"a direct write wrote {n} of {len(data)} bytes")
            offset, data = offset + n, data[n:]

    def _write_or_cut(self, pack: _Pack, start: int, write: Callable[[], None]) -> None:
        try:
            write()
        except BaseException:
            with contextlib.suppress(OSError):
                self._cut_back(pack.fd, start)  # a pack is whole records: cut off what this write left
            raise

    def done(self, packs: Sequence[int]) -> None:
        """The appends to these packs are committed (or abandoned): drop their writer counts."""
        with self._lock:
            for pid in packs:
                pack = self._live.get(pid)
                if pack is None:
                    continue
                pack.writers -= 1
                if pack.sealed and pack.writers == 0:
                    self._close(pack)

    def _pack_for(self, bucket: int) -> _Pack:
        with self._lock:
            pack = self._open.get(bucket)
            if pack is None:
                if len(self._open) >= self.max_open:
                    self._seal(min(self._open.values(), key=lambda p: p.id))
                pid = self._next_id
                self.on_new_pack(pid)  # the owner records it before the file exists
                self._next_id = pid + 1
                fd = self._create_pack(pid)
                pack = _Pack(pid, bucket, fd, 0)
                self._open[bucket] = pack
                self._live[pid] = pack
            pack.writers += 1
            return pack

    def _create_pack(self, pack: int) -> int:
        fd = os.open(self.pack_path(pack), os.O_RDWR | os.O_CREAT, 0o644)
        if self.sync != "none":
            _fsync_dir(self.packs_dir)
        return fd

    def _write_region(self, fd: int, offset: int, buffers: list[Buffer]) -> None:
        """Write ``buffers`` one after the other at ``offset`` (all of them, or raise)."""
        views = [memoryview(b).cast("B") for b in buffers if len(b)]
        i = 0
        while i < len(views):
            batch = views[i : i + _IOV_MAX]
            n = os.pwritev(fd, batch, offset)
            offset += n
            for v in batch:
                if n >= len(v):
                    n -= len(v)
                    i += 1
                else:
                    views[i] = v[n:]
                    break

    def _cut_back(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def _sync(self, fd: int) -> None:
        if self.sync != "none":
            os.fdatasync(fd)

    def _seal(self, pack: _Pack) -> None:
        """No more appends to ``pack``; caller holds ``self._lock``."""
        if self._open.get(pack.bucket) is pack:
            del self._open[pack.bucket]
        pack.sealed = True
        if pack.writers == 0:
            self._close(pack)

    def _close(self, pack: _Pack) -> None:
        if self._live.pop(pack.id, None) is not None:
            os.close(pack.fd)
            if pack.direct_fd is not None:
                os.close(pack.direct_fd)

    def seal_before(self, bucket: int) -> None:
        """Seal the open packs of buckets before ``bucket`` (their blocks expire; nothing new goes there)."""
        with self._lock:
            for pack in [p for b, p in self._open.items() if b < bucket]:
                self._seal(pack)

    def is_sealed(self, pack: int) -> bool:
        """Whether ``pack`` takes no more appends and has none in flight (every pack of an earlier run is)."""
        with self._lock:
            live = self._live.get(pack)
            return live is None or (live.sealed and live.writers == 0)

    # --- deleting and repairing ---------------------------------------------------------------------------------

    def retire(self, pack: int) -> bool:
        """Take ``pack`` out of use if nothing writes to it; True once per pack (the caller then deletes it)."""
        with self._lock:
            live = self._live.get(pack)
            if pack in self._retired or (live is not None and live.writers > 0):
                return False
            if live is not None:
                self._seal(live)
            self._retired.add(pack)
            return True

    def unretire(self, pack: int) -> None:
        """Undo :meth:`retire` (the owner found the pack still holds blocks); it stays sealed."""
        with self._lock:
            self._retired.discard(pack)

    def delete_pack(self, pack: int) -> None:
        """Unlink a retired pack's file (a missing one is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pack_path(pack))
        if self.sync != "none":
            _fsync_dir(self.packs_dir)
        with self._lock:
            self._retired.discard(pack)

    def truncate(self, pack: int, size: int) -> int:
        """Cut the pack's file to ``size`` bytes if it is longer; return how many bytes were cut."""
        try:
            actual = os.stat(self.pack_path(pack)).st_size
        except FileNotFoundError:
            return 0
        if actual <= size:
            return 0
        self._truncate(pack, size)
        return actual - size

    def _truncate(self, pack: int, size: int) -> None:
        os.truncate(self.pack_path(pack), size)
        if self.sync != "none":
            fd = os.open(self.pack_path(pack), os.O_RDONLY)
            try:
                os.fdatasync(fd)
            finally:
                os.close(fd)

    # --- reading ----------------------------------------------------------------------------------------------

    def read(self, loc: Location) -> bytes:
        """The bytes at ``loc`` (fewer if the file is shorter); raises ``FileNotFoundError`` with no pack file."""
        fd = os.open(self.pack_path(loc.pack), os.O_RDONLY)
        try:
            return os.pread(fd, loc.length, loc.offset)
        finally:
            os.close(fd)

    def read_run(self, locs: Sequence[Location], block_size: int, length: int) -> tuple[memoryview, list[int | None]]:
        """Read blocks (each ``block_size`` bytes, the last maybe shorter) into one ``length`` buffer.

        Returns the buffer and, per block, the bytes found (``None``: no pack file) so the caller can judge.
        """
        view = memoryview(bytearray(length))
        dests = [view[k * block_size : min((k + 1) * block_size, length)] for k in range(len(locs))]
        return view, self.read_into(locs, dests)

    def read_into(self, locs: Sequence[Location], dests: Sequence[memoryview]) -> list[int | None]:
        """Read each block into its view of ``dests`` (at most the view's length); per block, the bytes found
        (``None``: no pack file) so the caller can judge.

        Blocks that follow each other in a pack are read with one ``preadv`` (their headers go to a scratch
        buffer), so a dataset uploaded in order is read back as long sequential reads; each pack is opened once.
        """
        sizes: list[int | None] = [None] * len(locs)
        fds: dict[int, int | None] = {}
        try:
            i = 0
            while i < len(locs):
                j = i + 1
                while j < len(locs) and len(fds) < 64 and _follows(locs[j - 1], locs[j]) and j - i < _IOV_MAX // 2:
                    j += 1
                pack = locs[i].pack
                if pack not in fds:
                    try:
                        fds[pack] = os.open(self.pack_path(pack), os.O_RDONLY)
                    except FileNotFoundError:
                        fds[pack] = None
                fd = fds[pack]
                if fd is not None:
                    self._read_into(fd, locs, i, j, dests, sizes)
                i = j
        finally:
            for fd in fds.values():
                if fd is not None:
                    os.close(fd)
        return sizes

    def _read_into(
        self,
        fd: int,
        locs: Sequence[Location],
        i: int,
        j: int,
        dests: Sequence[memoryview],
        sizes: list[int | None],
    ) -> None:
        iov: list[memoryview] = []
        owner: list[int | None] = []  # the block each buffer belongs to (None: a header between two blocks)
        for k in range(i, j):
            if k > i:
                iov.append(memoryview(bytearray(locs[k].offset - (locs[k - 1].offset + locs[k - 1].length))))
                owner.append(None)
            iov.append(dests[k][: min(locs[k].length, len(dests[k]))])
            owner.append(k)
        got = os.preadv(fd, iov, locs[i].offset)
        # A short read (a cut file) leaves the rest unfilled: each block reports what it got.
        for buf, owned in zip(iov, owner, strict=True):
            if owned is not None:
                sizes[owned] = locs[owned].length if got >= len(buf) else max(0, got)
            got -= len(buf)

    def open_spans(self, locs: Sequence[Location]) -> tuple[Spans, list[int | None]]:
        """Open the packs holding ``locs`` for a zero-copy send: the :class:`Spans` (one per block, in order) and,
        per block, the bytes its pack file holds at its place (``None``: no pack file), for the caller to judge.

        The files stay open until :meth:`Spans.close`: a pack unlinked meanwhile (compaction, expiry) keeps its
        bytes for the open descriptor, and bytes inside a pack never change (``docs/packs.md``, rule 7).
        """
        files: dict[int, BinaryIO | None] = {}
        sizes: dict[int, int] = {}
        spans: list[tuple[BinaryIO, int, int]] = []
        found: list[int | None] = []
        try:
            for loc in locs:
                if loc.pack not in files:
                    try:
                        f: BinaryIO | None = open(self.pack_path(loc.pack), "rb", buffering=0)  # noqa: SIM115
                    except FileNotFoundError:
                        f = None
                    files[loc.pack] = f
                    if f is not None:
                        sizes[loc.pack] = os.fstat(f.fileno()).st_size
                f = files[loc.pack]
                if f is None:
                    found.append(None)
                    continue
                found.append(max(0, min(loc.length, sizes[loc.pack] - loc.offset)))
                spans.append((f, loc.offset, loc.length))
        except BaseException:
            Spans([f for f in files.values() if f is not None], []).close()
            raise
        return Spans([f for f in files.values() if f is not None], spans), found

    def walk(self, pack: int, size: int) -> Iterator[tuple[str, Location]]:
        """``(CID text, location)`` of every record in the first ``size`` bytes of the pack.

        Small records are parsed out of windows of :data:`_WALK_WINDOW` bytes; after a large record only the next
        header is read, so walking a pack of 64 KiB blocks does not read their data.
        """
        fd = os.open(self.pack_path(pack), os.O_RDONLY)
        try:
            offset = 0
            data_len = 0
            window, start = b"", 0  # ``window`` holds the pack's bytes from ``start`` on
            while offset + HEADER.size <= size:
                at = offset - start
                if at < 0 or at + HEADER.size + _MAX_NAME > len(window):
                    want = HEADER.size + _MAX_NAME if data_len >= _WALK_WINDOW // 64 else _WALK_WINDOW
                    window, start, at = os.pread(fd, min(want, size - offset), offset), offset, 0
                magic, name_len, data_len = HEADER.unpack_from(window, at)
                if magic != MAGIC:
                    raise OSError(f"pack {pack:016x} has no record at offset {offset}")
                data = offset + HEADER.size + name_len
                if name_len:  # none: a padding record (before or after a direct write)
                    name = window[at + HEADER.size : data - start].decode("ascii", errors="replace")
                    yield name, Location(pack, data, data_len)
                offset = data + data_len
        finally:
            os.close(fd)

    def iter_files(self) -> Iterator[tuple[str, int]]:
        """``(file name, size)`` of every file under ``packs/``. A full listing: for checks and tests."""
        for entry in os.scandir(self.packs_dir):
            yield entry.name, entry.stat(follow_symlinks=False).st_size

    def close(self) -> None:
        with self._lock:
            for pack in list(self._live.values()):
                self._close(pack)
            self._open.clear()


@dataclass(slots=True)
class Spans:
    """Regions of open pack files, ``(file, offset, count)``, to send as they are; :meth:`close` when sent."""

    files: list[BinaryIO]
    spans: list[tuple[BinaryIO, int, int]]

    @property
    def length(self) -> int:
        return sum(count for _, _, count in self.spans)

    def close(self) -> None:
        for f in self.files:
            f.close()


def _record_head(name: bytes, size: int) -> bytes:
    return HEADER.pack(MAGIC, len(name), size) + name


def _padding(offset: int) -> bytes:
    """The padding record that takes a pack from ``offset`` to an aligned offset (none if it is aligned): a record
    with no CID, which :meth:`BlockFiles.walk` skips."""
    gap = -offset % DIRECT_ALIGN
    if gap == 0:
        return b""
    if gap < HEADER.size:
        gap += DIRECT_ALIGN
    return HEADER.pack(MAGIC, 0, gap - HEADER.size) + bytes(gap - HEADER.size)


def _record_parts(heads: list[bytes], items: Sequence[tuple[Cid, Buffer]], tail: bytes) -> Iterator[Buffer]:
    for head, (_, data) in zip(heads, items, strict=True):
        yield head
        yield data
    if tail:
        yield tail


def _follows(a: Location, b: Location) -> bool:
    """Whether ``b`` is the record right after ``a`` in the same pack (only its header in between)."""
    return a.pack == b.pack and 0 < b.offset - (a.offset + a.length) <= HEADER.size + 256


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
