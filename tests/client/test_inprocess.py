"""The asyncio client against the real app in-process (httpx's ASGI transport): every operation, typed results,
typed errors with the node's message."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from codex_node import logutils
from codex_node.api.app import API_PREFIX, create_app
from codex_node.client import (
    AsyncCodexClient,
    BadRequestError,
    NotFoundApiError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnprocessableError,
)
from codex_node.config import NodeConfig
from codex_node.data.cid import block_cid
from codex_node.data.slots import cid_bytes
from codex_node.market.types import Content, Request, slot_id
from codex_node.stores.repostore import RepoStore
from codex_node.testing.mockmarket import account
from tests.api.test_sales_routes import ASK, BLOCK, Node, make_node, post_request
from tests.harness.repo import memory_repo

TOKEN = "in-process-token-0123456789"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "repo", quota_max=4 << 20) as store:
        yield store


@pytest.fixture(autouse=True)
def restore_level() -> Iterator[None]:
    saved = logutils._Level.value
    yield
    logutils._Level.value = saved


def in_process(app: Any, token: str | None = None) -> AsyncCodexClient:
    return AsyncCodexClient(f"http://localhost{API_PREFIX}", token=token, transport=httpx.ASGITransport(app=app))


@pytest.fixture
async def node(tmp_path: Path, repo: RepoStore) -> AsyncIterator[AsyncCodexClient]:
    async with in_process(create_app(NodeConfig(data_dir=tmp_path, marketplace=False), repo=repo)) as c:
        yield c


async def test_upload_then_download_is_byte_identical(node: AsyncCodexClient, tmp_path: Path) -> None:
    data = os.urandom(3 * 65_536 + 123)
    source = tmp_path / "photo.jpg"
    source.write_bytes(data)
    progress: list[tuple[int, int | None]] = []
    cid = await node.upload(source, mimetype="image/jpeg", on_progress=lambda *moved: progress.append(moved))
    assert progress[-1] == (len(data), len(data))
    out = tmp_path / "copy.jpg"
    info = await node.download(cid, out)
    assert out.read_bytes() == data
    assert (info.cid, info.size, info.filename, info.mimetype) == (cid, len(data), "photo.jpg", "image/jpeg")
    async with node.stream_download(cid) as download:
        assert b"".join([chunk async for chunk in download]) == data


async def test_upload_from_bytes_and_an_async_iterator(node: AsyncCodexClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(5):
            yield bytes([i]) * 40_000

    one = await node.upload(b"small")
    two = await node.upload(chunks(), filename="stream.bin")
    listed = {d.cid: d.manifest for d in await node.list_data()}
    assert set(listed) == {one, two}
    assert listed[one].dataset_size == 5
    assert (listed[two].dataset_size, listed[two].filename) == (200_000, "stream.bin")


async def test_exists_delete_and_space(node: AsyncCodexClient) -> None:
    cid = await node.upload(b"x" * 70_000)
    assert await node.exists(cid) is True
    space = await node.space()
    assert space.quota_used_bytes > 0
    assert space.quota_max_bytes == 4 << 20
    await node.delete(cid)
    assert await node.exists(cid) is False
    assert (await node.space()).quota_used_bytes == 0


async def test_a_missing_cid_is_404_and_a_malformed_one_400(node: AsyncCodexClient, tmp_path: Path) -> None:
    missing = block_cid(b"never stored").text
    with pytest.raises(NotFoundApiError) as raised:
        await node.download(missing, tmp_path / "out")
    assert raised.value.status == 404
    assert not (tmp_path / "out").exists()
    with pytest.raises(BadRequestError, match=r"(?i)cid"):
        await node.exists("not-a-cid")


async def test_422_carries_the_nodes_message(node: AsyncCodexClient) -> None:
    with pytest.raises(UnprocessableError) as raised:
        await node.upload(b"x" * 5_000_000)  # over the 4 MiB quota
    assert "not enough storage quota" in raised.value.message
    assert str(raised.value).startswith("not enough storage quota")
    assert await node.list_data() == []


async def test_without_a_marketplace_the_sales_operations_are_503(node: AsyncCodexClient) -> None:
    with pytest.raises(ServiceUnavailableError):
        await node.list_availabilities()
    with pytest.raises(ServiceUnavailableError):
        await node.debug_books()


async def test_debug_info_and_log_level(node: AsyncCodexClient) -> None:
    info = await node.debug_info()
    assert info.marketplace == "none"
    assert info.codex.version
    assert await node.set_log_level("debug") == "debug"
    with pytest.raises(BadRequestError, match="level"):
        await node.set_log_level("loud")


async def test_a_wrong_token_is_401_and_the_right_one_passes(tmp_path: Path, repo: RepoStore) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False, api_token=token_file), repo=repo)
    async with in_process(app, token="a-wrong-token-0123456789") as wrong, in_process(app, token=TOKEN) as right:
        with pytest.raises(UnauthorizedError, match="Authorization: Bearer"):
            await wrong.space()
        assert (await right.space()).quota_max_bytes == 4 << 20


# --- sales, on the sales routes' test node (MockMarket) ------------------------------------------------------------


@pytest.fixture
async def market_node() -> AsyncIterator[Node]:
    n = await make_node()
    await n.sales.start()
    yield n
    await n.sales.stop()


async def test_availabilities_reservations_and_slots(market_node: Node) -> None:
    async with in_process(market_node.app) as c:
        created = await c.create_availability(
            total_size=10 * BLOCK, duration=7200, min_price_per_byte_per_second=1, total_collateral=10**12
        )
        assert created.total_collateral == 10**12
        assert created.free_size == 10 * BLOCK
        await c.update_availability(created.id, enabled=False, total_size=12 * BLOCK)
        [listed] = await c.list_availabilities()
        assert (listed.id, listed.enabled, listed.total_size) == (created.id, False, 12 * BLOCK)
        await c.update_availability(created.id, enabled=True)
        request = await post_request(market_node)
        [reservation] = await c.list_reservations(created.id)
        assert reservation.request_id == "0x" + request.id.hex()
        sale = await c.get_slot("0x" + slot_id(request.id, 0).hex())
        assert sale.state == "SaleInitialProving"
        assert [t.to_state for t in sale.history][:2] == ["SalePreparing", "SaleSlotReserving"]
        assert sale.request is not None
        assert sale.request.ask.price_per_byte_per_second == ASK.price_per_byte_per_second
        with pytest.raises(UnprocessableError, match="totalSize must be greater than 0"):
            await c.update_availability(created.id, total_size=0)
        with pytest.raises(NotFoundApiError, match="Provider not filling slot"):
            await c.get_slot("0x" + "00" * 32)
        with pytest.raises(BadRequestError, match="malformed slot id"):
            await c.get_slot("0x12")


async def test_slots_the_chain_says_we_host(market_node: Node) -> None:
    request = Request(account(1), ASK, Content(cid_bytes(block_cid(b"d")), b"\x01" * 32), 600, os.urandom(32))
    await market_node.client.request_storage(request)
    await market_node.market.reserve_slot(request.id, 0)
    await market_node.market.fill_slot(request.id, 0, cast(Any, object()), ASK.collateral_per_slot)
    async with in_process(market_node.app) as c:
        [slot] = await c.list_slots()
    assert slot.id == "0x" + slot_id(request.id, 0).hex()
    assert slot.request.ask.collateral_per_byte == ASK.collateral_per_byte
    assert slot.request.client == account(1)
