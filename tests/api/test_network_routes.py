"""The /data/{cid}/network routes and the peer block routes, over real HTTP peers on 127.0.0.1."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from codex_node.api.access import AccessMiddleware, AccessPolicy
from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.routes import blocks as blocks_route
from codex_node.api.server import HttpServer
from codex_node.api.services import Services, provide
from codex_node.blockexchange.datasets import NetworkDatasets
from codex_node.blockexchange.fetcher import BlockFetcher, FetchOptions
from codex_node.blockexchange.wire import FrameReader
from codex_node.data.cid import Cid
from codex_node.data.slots import BLOCK_SIZE
from codex_node.peers.port import PeerInfo
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.blockmeta import BlockMeta
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import TTL_PREFIX, RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.staticpeers import StaticProviders
from codex_node.utils.bufferpool import BufferPool
from tests.harness.blockpeers import HostilePeer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_repo(tmp_path: Path, clock: FakeClock) -> Iterator[Callable[[str], RepoStore]]:
    made: list[RepoStore] = []

    def make(name: str) -> RepoStore:
        repo = RepoStore(
            MemoryKV(), BlockFiles(tmp_path / name, sync="none"), clock=clock, quota_max=1 << 30, block_ttl=60
        )
        made.append(repo)
        return repo

    yield make
    for repo in made:
        repo.close()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def peer(make_repo: Callable[[str], RepoStore]) -> AsyncIterator[tuple[RepoStore, PeerInfo, bytes, Cid]]:
    repo = make_repo("peer")
    data = os.urandom(5 * BLOCK_SIZE + 123)
    cid = await store_dataset(repo, _one(data), filename="f.bin")
    server = HttpServer(create_app(repo=repo), "127.0.0.1", 0, flag="--api-port", name="peer", graceful_timeout=1)
    await server.start()
    yield repo, PeerInfo("peer", (f"{server.url}{API_PREFIX}",)), data, cid
    await server.stop()


@pytest.fixture
async def node(
    make_repo: Callable[[str], RepoStore], clock: FakeClock, peer: tuple[RepoStore, PeerInfo, bytes, Cid]
) -> AsyncIterator[tuple[httpx.AsyncClient, RepoStore, NetworkDatasets]]:
    here = make_repo("here")
    fetcher = BlockFetcher(here, StaticProviders([peer[1]]), clock, options=FetchOptions(rounds=1, batch_blocks=2))
    network = NetworkDatasets(here, fetcher, window_blocks=2)
    app = create_app(repo=here)
    provide(app, Services(repo=here, network=network))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1{API_PREFIX}") as client:
        yield client, here, network
    await network.stop()
    await fetcher.close()


async def test_post_network_downloads_the_dataset_in_the_background_as_a_whole_dataset(
    node: tuple[httpx.AsyncClient, RepoStore, NetworkDatasets], peer: tuple[RepoStore, PeerInfo, bytes, Cid]
) -> None:
    client, _here, network = node
    _, _, data, cid = peer
    response = await client.post(f"/data/{cid}/network")
    assert response.status_code == 200
    assert response.json()["cid"] == cid.text
    assert response.json()["manifest"]["datasetSize"] == len(data)
    await network.wait(cid)
    listed = (await client.get("/data")).json()["content"]
    assert [d["cid"] for d in listed] == [cid.text]
    assert (await client.get(f"/data/{cid}")).content == data


async def test_stream_answers_the_dataset_while_fetching_and_stores_nothing(
    node: tuple[httpx.AsyncClient, RepoStore, NetworkDatasets], peer: tuple[RepoStore, PeerInfo, bytes, Cid]
) -> None:
    client, here, _ = node
    _, _, data, cid = peer
    response = await client.get(f"/data/{cid}/network/stream")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert here.total_blocks == 0


async def test_manifest_fetches_only_the_manifest(
    node: tuple[httpx.AsyncClient, RepoStore, NetworkDatasets], peer: tuple[RepoStore, PeerInfo, bytes, Cid]
) -> None:
    client, here, _ = node
    _, _, _data, cid = peer
    response = await client.get(f"/data/{cid}/network/manifest")
    assert response.status_code == 200
    assert response.json()["manifest"]["filename"] == "f.bin"
    assert here.total_blocks == 0


async def test_a_block_cid_is_a_422_an_unknown_dataset_a_404_a_bad_cid_a_400(
    node: tuple[httpx.AsyncClient, RepoStore, NetworkDatasets], peer: tuple[RepoStore, PeerInfo, bytes, Cid]
) -> None:
    client, _, _ = node
    peer_repo, _, _, cid = peer
    manifest = await peer_repo.get_manifest(cid)
    block = manifest.block_cid(0)
    response = await client.post(f"/data/{block}/network")
    assert response.status_code == 422
    assert "not a dataset manifest CID" in response.json()["error"]
    other = await store_dataset(peer_repo, _one(b"x"))
    await peer_repo.del_block(other)
    assert (await client.get(f"/data/{other}/network/manifest")).status_code == 404
    assert (await client.get("/data/not-a-cid/network/manifest")).status_code == 400


async def test_without_the_block_exchange_the_routes_answer_503(make_repo: Callable[[str], RepoStore]) -> None:
    app = create_app(repo=make_repo("alone"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        response = await client.post(f"{API_PREFIX}/data/zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7/network")
    assert response.status_code == 503
    assert "without the block exchange" in response.json()["error"]


async def test_peers_get_blocks_singly_and_framed_in_a_batch(peer: tuple[RepoStore, PeerInfo, bytes, Cid]) -> None:
    repo, info, _, cid = peer
    manifest = await repo.get_manifest(cid)
    cids = [*manifest.block_cids(), cid]
    async with httpx.AsyncClient() as client:
        single = await client.get(f"{info.url}/blocks/{cids[0]}")
        batch = await client.post(f"{info.url}/blocks", json={"cids": [c.text for c in cids]})
        too_many = await client.post(f"{info.url}/blocks", json={"cids": [cid.text] * 257})
    assert single.content == await repo.get_block(cids[0])
    frames = list(FrameReader(len(cids), 1 << 20).feed(batch.content))
    assert frames == [await repo.get_block(c) for c in cids]
    assert batch.headers["content-length"] == str(len(batch.content))  # announced, not chunked
    assert "transfer-encoding" not in batch.headers
    assert too_many.status_code == 422


def _after_the_announcement(repo: RepoStore, then: Callable[[Sequence[Cid]], None]) -> None:
    """Make the batch route's index lookup (its announcement) run ``then`` right after it."""
    announced = repo.block_metas

    def announce_then(asked: Sequence[Cid]) -> list[BlockMeta | None]:
        metas = announced(asked)
        then(asked)
        return metas

    repo.block_metas = announce_then  # type: ignore[method-assign]


async def test_a_block_deleted_after_the_batch_answer_was_announced_is_served_while_its_bytes_are_there(
    peer: tuple[RepoStore, PeerInfo, bytes, Cid],
) -> None:
    repo, info, _, cid = peer
    cids = list((await repo.get_manifest(cid)).block_cids())
    expected = [await repo.get_block(c) for c in cids]
    _after_the_announcement(repo, lambda asked: repo.kv.delete(TTL_PREFIX + asked[-1].text))
    async with httpx.AsyncClient() as client:
        batch = await client.post(f"{info.url}/blocks", json={"cids": [c.text for c in cids]})
    assert not repo.has_block(cids[-1])
    # Its bytes are still in its pack (bytes in a pack never change while it exists): the right ones, which the
    # asker checks against the CID as it checks every block.
    assert list(FrameReader(len(cids), 1 << 20).feed(batch.content)) == expected


async def test_a_block_whose_bytes_are_gone_after_the_batch_answer_was_announced_ends_it_early(
    peer: tuple[RepoStore, PeerInfo, bytes, Cid],
) -> None:
    repo, info, _, cid = peer
    cids = list((await repo.get_manifest(cid)).block_cids())
    meta = repo.block_meta(cids[-1])
    assert meta is not None

    def delete_with_its_pack(asked: Sequence[Cid]) -> None:
        repo.kv.delete(TTL_PREFIX + asked[-1].text)
        repo.files.pack_path(meta.pack).unlink()  # as compaction or expiry deletes a pack

    _after_the_announcement(repo, delete_with_its_pack)
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.RemoteProtocolError):  # the peer closed the connection short of the length
            await client.post(f"{info.url}/blocks", json={"cids": [c.text for c in cids]})


def test_the_peer_block_routes_are_open_without_the_token_and_nothing_else_is() -> None:
    guard = AccessMiddleware(HostilePeer, AccessPolicy.build("127.0.0.1", token=b"secret"))  # type: ignore[arg-type]

    def scope(method: str, path: str) -> dict[str, object]:
        return {"type": "http", "method": method, "path": path, "headers": [(b"host", b"127.0.0.1")]}

    assert guard.refusal(scope("GET", f"{API_PREFIX}/blocks/zb2abc")) is None
    assert guard.refusal(scope("POST", f"{API_PREFIX}/blocks")) is None
    refused = guard.refusal(scope("GET", f"{API_PREFIX}/blocksx"))
    assert refused is not None
    assert refused[0] == 401
    assert guard.refusal(scope("GET", f"{API_PREFIX}/data/zb2abc"))[0] == 401  # type: ignore[index]


async def test_a_batch_group_buffer_is_read_into_again_only_once_nothing_refers_to_it(
    peer: tuple[RepoStore, PeerInfo, bytes, Cid], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _, _, cid = peer
    monkeypatch.setattr(
        blocks_route, "_GROUPS", BufferPool(blocks_route._GROUP_BYTES, 8, bytearray)
    )  # none from other tests
    cids = list((await repo.get_manifest(cid)).block_cids())
    expected = [await repo.get_block(c) for c in cids]

    def read(asked: list[Cid]) -> memoryview:
        return blocks_route._read_group(repo, asked, repo.block_metas(asked))

    first = read(cids)
    owner = id(first.obj)  # an id, not a reference: the pool must see the buffer free once ``first`` is gone
    held = read(cids[:2])
    assert id(held.obj) != owner  # the first is still being sent
    del first
    again = read(cids[1:])
    assert id(again.obj) == owner  # sent (no view left): read into again (the pool keeps it alive meanwhile)
    assert len(again.obj) == blocks_route._GROUP_BYTES > len(again)  # a pool's buffer, not a fresh one
    assert list(FrameReader(5, 1 << 20).feed(again)) == expected[1:]  # every byte rewritten: no stale frame
    assert list(FrameReader(2, 1 << 20).feed(held)) == expected[:2]
