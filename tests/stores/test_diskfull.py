"""A full disk (issue 7 item 10): an upload that does not fit gets 507 naming the disk and leaves nothing behind.

Two ways to fill the disk: a fault-injecting file layer (runs everywhere) and, when the test runs as root (as CI
does), a real 4 MiB tmpfs under the whole data dir — block files and LevelDB alike.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from repo_invariants import check_invariants
from structlog.testing import capture_logs

from codex_node.api.app import create_app
from codex_node.data.cid import block_cid
from codex_node.errors import DiskFullError
from codex_node.stores.blockfiles import DIRECT_ALIGN, BlockFiles, Buffer
from codex_node.stores.datasets import store_dataset
from codex_node.stores.diskspace import is_disk_full
from codex_node.stores.kv import LevelDBStore
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

API = "/api/codex/v1"
MiB = 1 << 20


class FullDiskFiles(BlockFiles):
    """Block files on a disk with ``room`` bytes left: the write that crosses it is cut short with ENOSPC."""

    def __init__(self, root: Path, room: int) -> None:
        super().__init__(root, sync="none")
        self.room = room

    def _write_region(self, fd: int, offset: int, buffers: list[Buffer]) -> None:
        data = b"".join(bytes(b) for b in buffers)
        if len(data) <= self.room:
            self.room -= len(data)
            return super()._write_region(fd, offset, buffers)
        super()._write_region(fd, offset, [data[: self.room]])  # a partial write, as a real disk leaves
        self.room = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _write_direct(self, fd: int, offset: int, data: memoryview) -> None:
        if len(data) <= self.room:
            self.room -= len(data)
            return super()._write_direct(fd, offset, data)
        fits = self.room - self.room % DIRECT_ALIGN  # a direct write stops at a whole block
        super()._write_direct(fd, offset, data[:fits])
        self.room = 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def files_on_disk(root: Path) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_size) for p in (root / "packs").rglob("*") if p.is_file())


def app_for(repo: RepoStore) -> FastAPI:
    return create_app(repo=repo)


@contextlib.asynccontextmanager
async def client(repo: RepoStore) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_for(repo)), base_url="http://localhost") as c:
        yield c


async def test_an_upload_the_disk_cannot_hold_gets_507_naming_the_disk_and_leaves_nothing(tmp_path: Path) -> None:
    files = FullDiskFiles(tmp_path / "repo", room=2 * MiB)
    repo = RepoStore(MemoryKV(), files, clock=FakeClock(), quota_max=1 << 30, block_ttl=3600)
    try:
        async with client(repo) as c:
            small = await c.post(f"{API}/data", content=os.urandom(MiB // 2))
            assert small.status_code == 200
            before, kept = repo.quota(), files_on_disk(files.root)
            r = await c.post(f"{API}/data", content=os.urandom(8 * MiB))  # the quota would take it; the disk not
            assert r.status_code == 507, r.text
            assert "disk of the data dir" in r.json()["error"]
            assert str(files.root) in r.json()["error"]
            assert repo.quota() == before  # no drift: not a byte of the failed upload counts
            assert files_on_disk(files.root) == kept  # no orphan block, no temp file
            check_invariants(repo)
            assert (await c.get(f"{API}/data/{small.text}")).status_code == 200  # what was stored stays
    finally:
        repo.close()


async def test_the_quota_check_still_answers_before_the_disk_is_touched(tmp_path: Path) -> None:
    files = FullDiskFiles(tmp_path / "repo", room=64 * MiB)
    repo = RepoStore(MemoryKV(), files, clock=FakeClock(), quota_max=MiB, block_ttl=3600)
    try:
        async with client(repo) as c:
            r = await c.post(f"{API}/data", content=os.urandom(2 * MiB))
        assert r.status_code == 422
        assert "quota" in r.json()["error"]
        assert files.room == 64 * MiB
    finally:
        repo.close()


def test_leveldb_and_file_errors_that_say_the_disk_is_full_are_recognised() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(Exception("b'IO error: /d/meta/000005.log: No space left on device'"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_a_quota_larger_than_the_free_space_is_warned_about_at_start(tmp_path: Path) -> None:
    with capture_logs() as logs:
        RepoStore(
            MemoryKV(), BlockFiles(tmp_path / "a", sync="none"), clock=FakeClock(), quota_max=1 << 60, block_ttl=60
        ).close()
        RepoStore(
            MemoryKV(), BlockFiles(tmp_path / "b", sync="none"), clock=FakeClock(), quota_max=MiB, block_ttl=60
        ).close()
    warnings = [e for e in logs if e["log_level"] == "warning" and "free space" in e["event"]]
    assert len(warnings) == 1
    assert warnings[0]["quota_max_bytes"] == 1 << 60
    assert warnings[0]["disk"] == str(tmp_path / "a")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted at ``tmp_path / "disk"`` (needs root, which CI has)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the fault-injecting file layer above covers the logic")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


async def test_on_a_real_full_file_system_the_upload_fails_whole_and_the_store_keeps_working(tmpfs: Path) -> None:
    kv = LevelDBStore(tmpfs / "meta")
    repo = RepoStore(kv, BlockFiles(tmpfs / "repo", sync="fsync"), clock=FakeClock(), quota_max=1 << 30, block_ttl=3600)
    try:

        async def body(size: int) -> AsyncIterator[bytes]:
            for _ in range(size // (256 * 1024)):
                yield os.urandom(256 * 1024)

        kept = await store_dataset(repo, body(MiB))
        before = repo.quota()
        with pytest.raises(DiskFullError, match="disk of the data dir"):
            await store_dataset(repo, body(16 * MiB))
        assert repo.quota() == before
        check_invariants(repo)
        assert await repo.get_manifest(kept)
        await store_dataset(repo, body(MiB))  # the space the failed upload took is free again
        check_invariants(repo)
    finally:
        repo.close()
        kv.close()


async def test_a_first_put_that_finds_the_disk_full_leaves_no_pack_behind(tmp_path: Path) -> None:
    files = FullDiskFiles(tmp_path / "repo", room=100)
    repo = RepoStore(MemoryKV(), files, clock=FakeClock(), quota_max=1 << 30, block_ttl=3600)
    data = os.urandom(1000)
    with pytest.raises(DiskFullError):
        await repo.put_block(block_cid(data), data)
    assert files_on_disk(files.root) == []
    assert repo.pack_records() == {}
    check_invariants(repo)
    repo.close()
