"""Large appends are written with O_DIRECT, from an aligned staging buffer, between padding records."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from codex_node.data.cid import Cid, block_cid
from codex_node.stores.blockfiles import DIRECT_ALIGN, HEADER, STAGE_BYTES, BlockFiles, Location
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

KiB = 1024


class _CountingFiles(BlockFiles):
    """Records every direct write (offset, length, whether its memory is aligned); ``refuse``: fail them with it."""

    def __init__(self, root: Path, *, refuse: int | None = None, **kw: object) -> None:
        super().__init__(root, sync="none", **kw)  # type: ignore[arg-type]
        self.refuse = refuse
        self.direct_calls: list[tuple[int, int]] = []

    def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
        self.direct_calls.append((offset, len(data)))
        if self.refuse is not None:
            raise OSError(self.refuse, os.strerror(self.refuse))
        super()._write_direct(fd, offset, data)


def _blocks(n: int, size: int = 64 * KiB) -> list[tuple[Cid, bytes]]:
    out = []
    for _ in range(n):
        data = os.urandom(size)
        out.append((block_cid(data), data))
    return out


def _record_start(cid: Cid, loc: Location) -> int:
    return loc.offset - HEADER.size - len(cid.text)


def _check_back(files: BlockFiles, pack: int, blocks: list[tuple[Cid, bytes]], locs: list[Location]) -> None:
    for (cid, data), loc in zip(blocks, locs, strict=True):
        assert files.read(loc) == data, f"{cid} reads back different bytes"
    walked = list(files.walk(pack, os.stat(files.pack_path(pack)).st_size))
    assert walked == [(cid.text, loc) for (cid, _), loc in zip(blocks, locs, strict=True)]  # no padding named


def test_a_large_append_after_a_small_one_starts_at_the_next_aligned_offset(tmp_path: Path) -> None:
    files = _CountingFiles(tmp_path)
    small = _blocks(1, 100)
    large = _blocks(5)
    first = files.append(10, small)
    locs = files.append(10, large)
    files.done([first[0].pack, locs[0].pack])

    assert first[0].pack == locs[0].pack
    assert _record_start(small[0][0], first[0]) == 0  # the small one went through the page cache, unpadded
    start = _record_start(large[0][0], locs[0])
    assert start % DIRECT_ALIGN == 0
    assert start > first[0].offset + first[0].length  # a padding record between them
    size = os.stat(files.pack_path(locs[0].pack)).st_size
    assert size % DIRECT_ALIGN == 0  # a padding record after them: the next direct write starts aligned
    assert files.direct_calls == [(start, size - start)]
    _check_back(files, locs[0].pack, small + large, first + locs)
    files.close()


def test_an_append_larger_than_the_staging_buffer_is_written_in_several_direct_writes(tmp_path: Path) -> None:
    files = _CountingFiles(tmp_path)
    blocks = _blocks(STAGE_BYTES // (64 * KiB) + 6)  # records cross the staging buffer's end
    locs = files.append(10, blocks)
    files.done([locs[0].pack])

    assert len(files.direct_calls) == 2
    (at0, n0), (at1, n1) = files.direct_calls
    assert (at0, n0) == (0, STAGE_BYTES)
    assert at1 == STAGE_BYTES
    assert n1 % DIRECT_ALIGN == 0
    _check_back(files, locs[0].pack, blocks, locs)
    files.close()


def test_appends_under_the_threshold_or_with_direct_writes_off_are_not_padded(tmp_path: Path) -> None:
    for root, files in (
        (tmp_path / "off", BlockFiles(tmp_path / "off", sync="none", direct=False)),
        (tmp_path / "small", BlockFiles(tmp_path / "small", sync="none", direct_min=1 << 30)),
    ):
        blocks = _blocks(6)
        a = files.append(10, blocks[:3])
        b = files.append(10, blocks[3:])
        files.done([a[0].pack, b[0].pack])
        assert _record_start(blocks[3][0], b[0]) == a[-1].offset + a[-1].length, root
        _check_back(files, a[0].pack, blocks, a + b)
        files.close()


def test_a_file_system_that_refuses_direct_writes_gets_buffered_ones_from_then_on(tmp_path: Path) -> None:
    files = _CountingFiles(tmp_path, refuse=errno.EINVAL)
    blocks = _blocks(8)
    with capture_logs() as logs:
        a = files.append(10, blocks[:4])
        b = files.append(10, blocks[4:])
    files.done([a[0].pack, b[0].pack])

    assert len(files.direct_calls) == 1  # refused once, never tried again
    assert not files.direct
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "direct writes refused by the file system; block writes go through the page cache"
    ]
    assert _record_start(blocks[4][0], b[0]) == os.stat(files.pack_path(a[0].pack)).st_size - (
        sum(HEADER.size + len(c.text) + len(d) for c, d in blocks[4:])
    )
    _check_back(files, a[0].pack, blocks, a + b)
    files.close()


def test_a_failed_direct_write_is_cut_back_off_the_pack(tmp_path: Path) -> None:
    files = _CountingFiles(tmp_path)
    kept = files.append(10, _blocks(1, 100))
    files.done([kept[0].pack])
    size = os.stat(files.pack_path(kept[0].pack)).st_size
    files.refuse = errno.EIO
    with pytest.raises(OSError, match="Input/output error"):
        files.append(10, _blocks(5))
    assert os.stat(files.pack_path(kept[0].pack)).st_size == size  # the padding written before it is gone too
    assert files.direct  # an I/O error is not a refusal: the next append tries directly again
    files.refuse = None
    blocks = _blocks(5)
    locs = files.append(10, blocks)
    files.done([locs[0].pack])
    assert _record_start(blocks[0][0], locs[0]) % DIRECT_ALIGN == 0
    assert files.read(locs[-1]) == blocks[-1][1]
    files.close()


def test_a_staging_buffer_is_written_from_again_only_once_no_view_of_it_is_left(tmp_path: Path) -> None:
    staged: list[int] = []

    class Recording(_CountingFiles):
        def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
            staged.append(id(data.obj))  # the staging buffer the view is of
            super()._write_direct(fd, offset, data)

    files = Recording(tmp_path)
    files.append(10, _blocks(5))
    files.append(10, _blocks(5))
    assert staged[0] == staged[1]  # one buffer for both: none made per append
    files.refuse = errno.ENOSPC
    with pytest.raises(OSError, match="No space left") as raised:  # the write's own error, as it was raised
        files.append(10, _blocks(5))
    assert raised.value.errno == errno.ENOSPC
    files.refuse = None
    files.append(10, _blocks(5))  # the error's traceback still holds a view of the buffer it was written from
    assert staged[3] != staged[2]
    del raised
    files.append(10, _blocks(5))
    assert staged[4] in (staged[2], staged[3])  # free again: reused, no third buffer
    files.close()


def test_the_repo_exports_whether_groups_of_blocks_are_written_directly(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    files = _CountingFiles(tmp_path, refuse=errno.EINVAL)
    repo = RepoStore(MemoryKV(), files, clock=FakeClock(), quota_max=1 << 30, block_ttl=60, registry=registry)
    assert registry.get_sample_value("codex_repostore_direct_writes") == 1
    repo.write_blocks(_blocks(8), ttl=None, ref=False, standalone=True)  # refused: buffered from then on
    assert registry.get_sample_value("codex_repostore_direct_writes") == 0
    repo.close()
