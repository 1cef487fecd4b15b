"""A whole dataset downloaded from a peer (``NetworkDatasets.download``): stored as an upload would be, each block
referenced once per position, whether fetched or already here, and nothing left behind when it fails."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest

from codex_node.api.app import create_app
from codex_node.blockexchange import datasets
from codex_node.blockexchange.datasets import NetworkDatasets
from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.data.slots import BLOCK_SIZE
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.staticpeers import StaticProviders
from tests.blockexchange.conftest import Serve


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _downloader(here: RepoStore, peer_repo: RepoStore, serve: Serve, clock: FakeClock) -> NetworkDatasets:
    peer = await serve(create_app(repo=peer_repo), "peer")
    fetcher = BlockFetcher(here, StaticProviders([peer]), clock, options=FetchOptions(rounds=1, batch_blocks=2))
    return NetworkDatasets(here, fetcher, window_blocks=2)


@pytest.mark.parametrize("segments", [None, (2, 3)], ids=["one segment", "segments of 2 then 3 blocks"])
async def test_a_download_references_each_position_so_deleting_the_datasets_leaves_no_block(
    make_repo: Callable[..., RepoStore],
    serve: Serve,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    segments: tuple[int, int] | None,
) -> None:
    if segments is not None:  # the same block in several segments, each made ahead while the one before is fetched
        monkeypatch.setattr(datasets, "FIRST_SEGMENT_BLOCKS", segments[0])
        monkeypatch.setattr(datasets, "SEGMENT_BLOCKS", segments[1])
    a, b, c = (os.urandom(BLOCK_SIZE) for _ in range(3))
    peer_repo, here = make_repo("peer"), make_repo("here")
    data = a + b + a + c + a + b"tail"  # block a at three positions, c already here in another dataset
    cid = await store_dataset(peer_repo, _one(data))
    other = await store_dataset(here, _one(c))
    network = await _downloader(here, peer_repo, serve, clock)
    try:
        await network.download(cid)
        await network.wait(cid)
        assert here.has_block(cid)
        read = b"".join([bytes(chunk) async for chunk in here.iter_dataset(await here.get_manifest(cid))])
        assert read == data
        await here.del_block(cid)
        assert here.has_block(other)
        assert here.total_blocks == 2  # the other dataset: its manifest and c
        await here.del_block(other)
        assert here.total_blocks == 0
    finally:
        await network.stop()
        await network._fetcher.close()


async def test_a_download_that_cannot_finish_leaves_nothing_behind(
    make_repo: Callable[..., RepoStore], serve: Serve, clock: FakeClock
) -> None:
    source, peer_repo, here = make_repo("source"), make_repo("peer"), make_repo("here")
    cid = await store_dataset(source, _one(os.urandom(5 * BLOCK_SIZE)))
    manifest = await source.get_manifest(cid)
    await peer_repo.put_block(cid, await source.get_block(cid))
    for i in range(manifest.block_count - 1):  # the peer lacks the last block
        await peer_repo.put_block(manifest.block_cid(i), await source.get_block(manifest.block_cid(i)))
    network = await _downloader(here, peer_repo, serve, clock)
    try:
        await network.download(cid)
        await network.wait(cid)
        assert not here.has_block(cid)
        assert here.total_blocks == 0  # the blocks fetched before the failure were dropped again
    finally:
        await network.stop()
        await network._fetcher.close()


@pytest.mark.parametrize(
    ("blocks", "first", "largest", "bounds"),
    [
        (0, 256, 4096, [(0, 0)]),
        (1, 256, 4096, [(0, 1)]),
        (256, 256, 4096, [(0, 256)]),
        (257, 256, 4096, [(0, 256), (256, 257)]),
        (10_000, 256, 4096, [(0, 256), (256, 768), (768, 1792), (1792, 3840), (3840, 7936), (7936, 10_000)]),
        (6, 2, 3, [(0, 2), (2, 5), (5, 6)]),
    ],
)
def test_segments_double_from_the_first_up_to_the_largest_and_cover_the_dataset(
    blocks: int, first: int, largest: int, bounds: list[tuple[int, int]]
) -> None:
    assert datasets.segment_bounds(blocks, first, largest) == bounds
