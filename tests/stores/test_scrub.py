"""Verifying blocks on read: ``verify_reads`` downloads, the scrub (``stores/scrub.py``) and ``codex-node scrub``."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import MakeRepo

from codex_node import scrubcmd
from codex_node.clock import SystemClock
from codex_node.data.cid import Cid, block_cid
from codex_node.data.manifest import BLOCK_SIZE, Manifest
from codex_node.errors import ConfigError, CorruptBlockError
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.datadir import DataDirLock
from codex_node.stores.datasets import store_dataset
from codex_node.stores.kv import LevelDBStore
from codex_node.stores.repostore import RepoStore
from codex_node.stores.scrub import scrub
from codex_node.testing.memorykv import MemoryKV
from tests.harness.repo import corrupt_on_disk


async def _stream(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _data(blocks: int) -> bytes:
    return b"".join(i.to_bytes(4, "big") * (BLOCK_SIZE // 4) for i in range(blocks))


async def _dataset(repo: RepoStore, blocks: int) -> tuple[Cid, Manifest]:
    cid = await store_dataset(repo, _stream(_data(blocks)))
    return cid, await repo.get_manifest(cid)


async def _download(repo: RepoStore, manifest: Manifest) -> bytes:
    return b"".join([bytes(c) async for c in repo.iter_dataset(manifest, blocks_per_read=2)])


async def test_verify_reads_refuses_a_download_whose_block_was_corrupted_on_disk(tmp_path: Path) -> None:
    repo = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path, sync="none"),
        clock=SystemClock(),
        quota_max=1 << 30,
        block_ttl=3600,
        verify_reads=True,
    )
    try:
        _, manifest = await _dataset(repo, 6)
        assert await _download(repo, manifest) == _data(6)
        corrupt_on_disk(repo, manifest.block_cid(3))
        with pytest.raises(CorruptBlockError, match=manifest.block_cid(3).text):
            await _download(repo, manifest)
    finally:
        repo.close()


async def test_without_verify_reads_a_download_does_not_hash(make_repo: MakeRepo) -> None:
    repo = make_repo()
    _, manifest = await _dataset(repo, 3)
    corrupt_on_disk(repo, manifest.block_cid(1))
    assert await _download(repo, manifest) != _data(3)  # sent as stored: only --verify-reads or a scrub finds it


async def test_scrub_reports_a_corrupted_block_with_its_dataset_and_passes_the_rest(make_repo: MakeRepo) -> None:
    repo = make_repo()
    cid, manifest = await _dataset(repo, 5)
    lone = os.urandom(3000)
    await repo.put_block(block_cid(lone), lone)
    assert scrub(repo).corrupt == []
    corrupt_on_disk(repo, manifest.block_cid(2))
    seen: list[tuple[int, int]] = []
    report = scrub(repo, on_progress=lambda done, total: seen.append((done, total)), page=2)
    assert report.checked == 7  # 5 data blocks, the manifest and the lone block
    assert [b.cid for b in report.corrupt] == [manifest.block_cid(2)]
    assert report.corrupt[0].datasets == (cid,)
    assert "does not match" in report.corrupt[0].problem
    assert seen[-1] == (7, 7)
    assert len(seen) == 4  # one report per page of 2


async def test_scrub_reports_a_cut_pack_and_a_corrupt_standalone_block(make_repo: MakeRepo) -> None:
    repo = make_repo()
    lone = os.urandom(3000)
    cid = block_cid(lone)
    await repo.put_block(cid, lone)
    corrupt_on_disk(repo, cid, at=0)
    [bad] = scrub(repo).corrupt
    assert bad.cid == cid
    assert bad.standalone
    assert bad.datasets == ()
    meta = repo.block_meta(cid)
    assert meta is not None
    os.truncate(repo.files.pack_path(meta.pack), meta.offset + 10)
    [cut] = scrub(repo).corrupt
    assert "bytes on disk" in cut.problem


async def _node_data_dir(path: Path) -> tuple[Cid, Manifest]:
    kv = LevelDBStore(path / "meta")
    repo = RepoStore(kv, BlockFiles(path / "repo", sync="none"), clock=SystemClock(), quota_max=1 << 30, block_ttl=60)
    try:
        cid, manifest = await _dataset(repo, 4)
        corrupt_on_disk(repo, manifest.block_cid(0))
        return cid, manifest
    finally:
        repo.close()
        kv.close()


async def test_scrub_command_prints_the_corrupt_block_and_its_dataset_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cid, manifest = await _node_data_dir(tmp_path)
    args = argparse.Namespace(data_dir=tmp_path, json=False)
    assert scrubcmd.run(args, {}) == 1
    out = capsys.readouterr().out
    assert f"CORRUPT {manifest.block_cid(0).text}" in out
    assert f"datasets: {cid.text}" in out
    assert "5 blocks" in out
    assert "1 corrupt" in out


def test_scrub_command_refuses_a_data_dir_a_node_holds(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    lock = DataDirLock(tmp_path)
    lock.acquire()
    try:
        with pytest.raises(ConfigError, match="--data-dir"):
            DataDirLock(tmp_path).acquire()
        with pytest.raises(ConfigError, match="--data-dir"):
            scrubcmd.run(argparse.Namespace(data_dir=tmp_path, json=False), {})
    finally:
        lock.release()


def test_scrub_command_refuses_a_dir_without_node_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no node data"):
        scrubcmd.run(argparse.Namespace(data_dir=tmp_path, json=False), {})
