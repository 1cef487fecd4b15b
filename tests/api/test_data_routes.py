"""The data routes through an ASGI app (httpx), with a real RepoStore on MemoryKV and files in a tmp dir."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from codex_node.api.errors import install_error_handlers
from codex_node.api.routes.data import router
from codex_node.api.services import Services, provide
from codex_node.data.cid import block_cid, parse_cid
from codex_node.data.manifest import BLOCK_SIZE
from codex_node.data.slots import cid_bytes
from codex_node.market.types import Address, Ask, Content
from codex_node.market.types import Request as StorageRequest
from codex_node.sales.datasource import LocalSlotDataSource
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.maintenance import BlockMaintainer
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV

API = "/api/codex/v1"
MiB = 1 << 20


def _app(repo: RepoStore) -> FastAPI:
    """The smallest app that mounts the router the way ``api/app.py`` does."""
    app = FastAPI()
    app.include_router(router, prefix=API)
    install_error_handlers(app)
    provide(app, Services(repo=repo))  # a node without a marketplace: no dataset holds
    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo(tmp_path: Path, clock: FakeClock) -> Iterator[RepoStore]:
    store = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "repo", sync="none"),
        clock=clock,
        quota_max=200 * MiB,
        block_ttl=3600,
        registry=None,
    )
    yield store
    store.close()


@pytest.fixture
async def client(repo: RepoStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(repo))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


async def _upload(client: httpx.AsyncClient, data: bytes, **headers: str) -> str:
    r = await client.post(f"{API}/data", content=data, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


@pytest.mark.parametrize("size", [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1])
async def test_upload_then_download_is_byte_identical(client: httpx.AsyncClient, size: int) -> None:
    data = os.urandom(size)
    cid = await _upload(client, data)
    r = await client.get(f"{API}/data/{cid}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-length"] == str(size)


@pytest.mark.slow
async def test_a_100_mib_stream_round_trips_and_is_stored_while_it_streams(
    client: httpx.AsyncClient, repo: RepoStore
) -> None:
    chunk = 256 * 1024
    total = 100 * MiB
    digest = hashlib.sha256()
    used_at_half: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        for i in range(total // chunk):
            if i == total // chunk // 2:
                used_at_half.append(repo.quota().used)
            piece = os.urandom(chunk)
            digest.update(piece)
            yield piece

    r = await client.post(f"{API}/data", content=body())
    assert r.status_code == 200, r.text
    assert used_at_half[0] >= 25 * MiB  # blocks were committed long before the body ended
    got = hashlib.sha256()
    size = 0
    async with client.stream("GET", f"{API}/data/{r.text}") as download:
        assert download.status_code == 200
        async for piece in download.aiter_bytes():
            got.update(piece)
            size += len(piece)
    assert size == total
    assert got.digest() == digest.digest()


async def test_filename_and_mimetype_come_back_in_list_and_download(client: httpx.AsyncClient) -> None:
    cid = await _upload(
        client,
        b"hello",
        **{"content-type": "text/plain; charset=utf-8", "content-disposition": 'attachment; filename="hi.txt"'},
    )
    listing = (await client.get(f"{API}/data")).json()
    assert listing["content"][0]["cid"] == cid
    manifest = listing["content"][0]["manifest"]
    assert manifest["filename"] == "hi.txt"
    assert manifest["mimetype"] == "text/plain; charset=utf-8"
    assert manifest["datasetSize"] == 5
    assert manifest["blockSize"] == BLOCK_SIZE
    assert manifest["protected"] is False
    assert manifest["treeCid"].startswith("b")
    r = await client.get(f"{API}/data/{cid}")
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["content-disposition"] == 'attachment; filename="hi.txt"'


async def test_non_ascii_filename_round_trips(client: httpx.AsyncClient) -> None:
    cid = await _upload(client, b"x", **{"content-disposition": "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"})
    listing = (await client.get(f"{API}/data")).json()
    assert listing["content"][0]["manifest"]["filename"] == "résumé.pdf"
    r = await client.get(f"{API}/data/{cid}")
    assert r.headers["content-disposition"] == "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "not a mimetype"},
        {"content-type": "text/" + "x" * 300},
        {"content-disposition": 'attachment; filename="../etc/passwd"'},
    ],
)
async def test_invalid_headers_are_refused_with_422(
    client: httpx.AsyncClient, repo: RepoStore, headers: dict[str, str]
) -> None:
    r = await client.post(f"{API}/data", content=b"data", headers=headers)
    assert r.status_code == 422
    assert "error" in r.json()
    assert repo.total_blocks == 0


async def test_upload_over_quota_with_a_length_is_refused_before_reading(
    client: httpx.AsyncClient, repo: RepoStore
) -> None:
    repo.reserve(repo.quota().available - 1000)
    r = await client.post(f"{API}/data", content=os.urandom(5000))
    assert r.status_code == 422
    assert "quota" in r.json()["error"]
    assert repo.total_blocks == 0


async def test_streamed_upload_over_quota_is_refused_and_leaves_no_block(
    client: httpx.AsyncClient, repo: RepoStore
) -> None:
    repo.reserve(repo.quota().available - 10 * BLOCK_SIZE)
    before = repo.quota()

    async def body() -> AsyncIterator[bytes]:  # no Content-Length: the store has to notice on its own
        for _ in range(100):
            yield os.urandom(BLOCK_SIZE)

    r = await client.post(f"{API}/data", content=body())
    assert r.status_code == 422
    assert repo.quota() == before
    assert repo.total_blocks == 0
    assert list(repo.files.iter_files()) == []


async def test_malformed_cid_is_400_with_a_one_line_message(client: httpx.AsyncClient) -> None:
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"{API}/data/not-a-cid")
        assert r.status_code == 400
        assert "\n" not in r.json()["error"]
    r = await client.get(f"{API}/data/not-a-cid/exists")
    assert r.status_code == 400


async def test_unknown_cid_is_404(client: httpx.AsyncClient) -> None:
    unknown = block_cid(b"never stored").text
    assert (await client.get(f"{API}/data/{unknown}")).status_code == 404
    assert (await client.delete(f"{API}/data/{unknown}")).status_code == 404
    r = await client.get(f"{API}/data/baguqeerakrcn4rzhpztinmqqpdm4o7vx2ukqsk3amyydvo3ivxwufkrf5pvq")
    assert r.status_code == 404
    assert "\n" not in r.json()["error"]


async def test_exists_answers_has(client: httpx.AsyncClient) -> None:
    cid = await _upload(client, b"abc")
    assert (await client.get(f"{API}/data/{cid}/exists")).json() == {"has": True}
    assert (await client.get(f"{API}/data/{block_cid(b'zzz')}/exists")).json() == {"has": False}


async def test_a_block_cid_downloads_that_block(client: httpx.AsyncClient) -> None:
    data = os.urandom(BLOCK_SIZE + 10)
    await _upload(client, data)
    r = await client.get(f"{API}/data/{block_cid(data[BLOCK_SIZE:])}")
    assert r.status_code == 200
    assert r.content == data[BLOCK_SIZE:]


async def test_delete_dataset_is_204_and_frees_its_space(client: httpx.AsyncClient) -> None:
    cid = await _upload(client, os.urandom(3 * BLOCK_SIZE))
    r = await client.delete(f"{API}/data/{cid}")
    assert r.status_code == 204
    assert (await client.get(f"{API}/data/{cid}")).status_code == 404
    space = (await client.get(f"{API}/space")).json()
    assert space["totalBlocks"] == 0
    assert space["quotaUsedBytes"] == 0


async def test_deleting_a_block_of_a_dataset_is_refused_with_422(client: httpx.AsyncClient) -> None:
    data = os.urandom(100)
    await _upload(client, data)
    assert (await client.delete(f"{API}/data/{block_cid(data)}")).status_code == 422


async def test_space_reports_blocks_and_quota(client: httpx.AsyncClient, repo: RepoStore) -> None:
    repo.reserve(1234)
    await _upload(client, os.urandom(2 * BLOCK_SIZE))
    space = (await client.get(f"{API}/space")).json()
    assert space == {
        "totalBlocks": 3,
        "quotaMaxBytes": 200 * MiB,
        "quotaUsedBytes": repo.quota().used,
        "quotaReservedBytes": 1234,
    }
    assert space["quotaUsedBytes"] > 2 * BLOCK_SIZE


async def test_expired_dataset_is_gone_and_the_quota_back(
    client: httpx.AsyncClient, repo: RepoStore, clock: FakeClock
) -> None:
    before = (await client.get(f"{API}/space")).json()
    cid = await _upload(client, os.urandom(5 * BLOCK_SIZE))
    maintainer = BlockMaintainer(repo, clock, interval=1, registry=None)
    clock.advance(3599)
    await maintainer.run_pass()
    assert (await client.get(f"{API}/data/{cid}")).status_code == 200
    clock.advance(1)
    await maintainer.run_pass()
    assert (await client.get(f"{API}/data/{cid}")).status_code == 404
    assert (await client.get(f"{API}/space")).json() == before


def test_openapi_describes_the_data_schemas(repo: RepoStore) -> None:
    schema = _app(repo).openapi()
    paths = schema["paths"]
    assert set(paths) >= {f"{API}/data", f"{API}/data/{{cid}}", f"{API}/data/{{cid}}/exists", f"{API}/space"}
    assert "application/octet-stream" in paths[f"{API}/data"]["post"]["requestBody"]["content"]
    components = schema["components"]["schemas"]
    assert set(components["DataItem"]["properties"]) == {"cid", "manifest"}
    assert set(components["ManifestItem"]["properties"]) == {
        "treeCid",
        "datasetSize",
        "blockSize",
        "protected",
        "filename",
        "mimetype",
    }
    assert set(components["Space"]["properties"]) == {
        "totalBlocks",
        "quotaMaxBytes",
        "quotaUsedBytes",
        "quotaReservedBytes",
    }


async def test_deleting_a_dataset_a_sale_still_holds_is_refused_with_409_until_the_sale_ends(
    repo: RepoStore, clock: FakeClock
) -> None:
    holds = LocalSlotDataSource(repo)
    app = _app(repo)
    provide(app, Services(repo=repo, dataset_holds=holds))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        cid = await _upload(client, os.urandom(2 * BLOCK_SIZE))
        ask = Ask(
            proof_probability=1,
            price_per_byte_per_second=1,
            collateral_per_byte=1,
            slots=1,
            slot_size=2 * BLOCK_SIZE,
            duration=3600,
            max_slot_loss=0,
        )
        content = Content(cid=cid_bytes(parse_cid(cid)), merkle_root=bytes(32))
        request = StorageRequest(client=Address("0x" + "11" * 20), ask=ask, content=content, expiry=60, nonce=bytes(32))
        ends = clock.now() + 3600
        await holds.raise_expiry(request, 0, ends)

        r = await client.delete(f"{API}/data/{cid}")
        assert r.status_code == 409
        assert "delete it after they end" in r.json()["error"]
        assert (await client.get(f"{API}/data/{cid}")).status_code == 200  # nothing was deleted

        await holds.lower_expiry(request, 0, ends)  # the sale ended
        assert (await client.delete(f"{API}/data/{cid}")).status_code == 204
