"""``POST /storage/request/{cid}`` and the purchases routes against a real repo and the in-memory marketplace:
every 400/404/422 rule of anchor §6 (each refused before anything is encoded or stored), the wallet check, the
protected dataset it stores (hosts and the prover can read every slot of it), nothing left behind when the chain
refuses or the client goes away, and the purchases as the API shows them."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.disconnect import CLIENT_GONE
from codex_node.api.routes import storage
from codex_node.api.services import Services, provide
from codex_node.client import AsyncCodexClient, UnprocessableError
from codex_node.config import NodeConfig
from codex_node.data.cid import parse_cid
from codex_node.data.manifest import BLOCK_SIZE
from codex_node.data.slots import cid_from_bytes
from codex_node.errors import ContractRevertError, SlotDataError
from codex_node.market.types import RequestId, RequestState
from codex_node.proofs.slotdata import dataset_commitment
from codex_node.purchasing import protect
from codex_node.purchasing.metrics import PurchaseMetrics
from codex_node.purchasing.purchasing import Purchasing
from codex_node.sales.datasource import LocalSlotDataSource
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.repostore import RepoStore
from codex_node.stores.uploads import UploadSession
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket

ME = "0x" + "01" * 20
FUNDS = 10**15
LIMIT = 30 * 24 * 3600
BODY: dict[str, Any] = {
    "duration": 3600,
    "pricePerBytePerSecond": "1",
    "proofProbability": "1",
    "collateralPerByte": "1",
    "expiry": 600,
}


@dataclass
class World:
    app: FastAPI
    repo: RepoStore
    market: MockMarket
    purchasing: Purchasing
    clock: FakeClock

    def api(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return httpx.AsyncClient(transport=transport, base_url=f"http://localhost{API_PREFIX}")

    def stored(self) -> tuple[int, int]:
        """Blocks and bytes in the repo: what must not change when a request is refused or abandoned."""
        return self.repo.total_blocks, self.repo.quota().used


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    repo = RepoStore(
        MemoryKV(), BlockFiles(tmp_path / "repo", sync="none"), clock=clock, quota_max=64 << 20, block_ttl=3600
    )
    market = MockMarket(clock, signer=ME)
    market.mint(ME, FUNDS)
    purchasing = Purchasing(market, clock, MemoryKV(), PurchaseMetrics(CollectorRegistry()))
    app = create_app(NodeConfig(marketplace=False), repo=repo)
    provide(app, Services(repo=repo, market=market, purchasing=purchasing))
    yield World(app, repo, market, purchasing, clock)
    await purchasing.stop()
    repo.close()


async def upload(w: World, blocks: float) -> str:
    async with w.api() as api:
        r = await api.post("/data", content=os.urandom(int(blocks * BLOCK_SIZE)))
    assert r.status_code == 200, r.text
    return r.text


@pytest.fixture
def no_encoding(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    calls: list[object] = []

    async def refuse(*args: object, **kwargs: object) -> object:
        calls.append(args)
        raise AssertionError("a refused request was encoded")

    monkeypatch.setattr(storage, "protect_dataset", refuse)
    return calls


# One test per rule of anchor §6 (and the body's own bounds): refused before any encoding.
RULES: dict[str, tuple[dict[str, Any], int, str]] = {
    "expiry is 0": ({"expiry": 0}, 422, "expiry"),
    "expiry equals duration": ({"expiry": 3600}, 422, "expiry (3600) must be less than duration"),
    "expiry over duration": ({"expiry": 7200}, 422, "must be less than duration"),
    "proofProbability is 0": ({"proofProbability": "0"}, 422, "proofProbability"),
    "collateralPerByte is 0": ({"collateralPerByte": "0"}, 422, "collateralPerByte"),
    "pricePerBytePerSecond is 0": ({"pricePerBytePerSecond": "0"}, 422, "pricePerBytePerSecond"),
    "duration is 0": ({"duration": 0}, 422, "duration"),
    "duration over the limit": ({"duration": LIMIT + 1, "expiry": 600}, 422, "limit"),
    "tolerance is 0": ({"tolerance": 0}, 422, "tolerance"),
    "tolerance over nodes": ({"nodes": 3, "tolerance": 4}, 422, "cannot exceed nodes"),
    "K is 1": ({"nodes": 3, "tolerance": 2}, 422, "1 < K >= M"),
    "K under M": ({"nodes": 5, "tolerance": 3}, 422, "1 < K >= M"),
    "nodes under 3": ({"nodes": 2}, 422, "nodes"),
    "nodes over 256": ({"nodes": 257}, 422, "nodes"),
    "unknown field": ({"slots": 3}, 422, "slots: unknown field"),
    "duration missing": ({"duration": None}, 400, "duration"),
    "duration a boolean": ({"duration": True}, 400, "duration"),
    "price a float string": ({"pricePerBytePerSecond": "1e30"}, 400, "pricePerBytePerSecond"),
}


@pytest.mark.parametrize("rule", sorted(RULES))
async def test_each_rule_is_refused_before_anything_is_encoded(
    world: World, no_encoding: list[object], rule: str
) -> None:
    change, status, says = RULES[rule]
    cid = await upload(world, 4)
    before = world.stored()
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json=body)
    assert r.status_code == status, r.text
    assert says in r.json()["error"]
    assert no_encoding == []
    assert world.stored() == before
    assert world.purchasing.ids() == []


async def test_a_dataset_with_fewer_blocks_than_k_is_refused(world: World, no_encoding: list[object]) -> None:
    cid = await upload(world, 1.5)  # 2 blocks; nodes=5, tolerance=1 needs K = 4
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json={**BODY, "nodes": 5, "tolerance": 1})
    assert r.status_code == 422
    assert "the dataset has 2 blocks" in r.json()["error"]
    assert no_encoding == []


async def test_a_request_the_wallet_cannot_pay_is_refused_before_encoding(
    world: World, no_encoding: list[object]
) -> None:
    cid = await upload(world, 4)  # K = 2: 2 blocks a slot, 3 slots
    price = 3 * 2 * BLOCK_SIZE * 3600 * 10**6
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json={**BODY, "pricePerBytePerSecond": str(10**6)})
    assert r.status_code == 422
    assert f"this request costs {price}" in r.json()["error"]
    assert str(FUNDS) in r.json()["error"]
    assert no_encoding == []


async def test_unknown_malformed_and_unrequestable_cids(world: World, no_encoding: list[object]) -> None:
    cid = await upload(world, 4)
    async with world.api() as api:
        gone = await upload(world, 3)
        assert (await api.delete(f"/data/{gone}")).status_code == 204
        assert (await api.post(f"/storage/request/{gone}", json=BODY)).status_code == 404
        assert (await api.post("/storage/request/not-a-cid", json=BODY)).status_code == 400
        manifest = await world.repo.get_manifest(parse_cid(cid))
        block = await api.post(f"/storage/request/{manifest.block_cid(0).text}", json=BODY)
        assert block.status_code == 422
        assert "not a dataset manifest CID" in block.json()["error"]
        assert (await api.get("/storage/purchases/0x12")).status_code == 400
        assert (await api.get(f"/storage/purchases/0x{'ab' * 32}")).status_code == 404
    assert no_encoding == []


async def test_without_a_marketplace_the_storage_routes_answer_503(tmp_path: Path) -> None:
    app = create_app(NodeConfig(marketplace=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}"
    ) as api:
        assert (await api.get("/storage/purchases")).status_code == 503
        assert (await api.get(f"/storage/purchases/0x{'ab' * 32}")).status_code == 503


async def test_a_request_is_encoded_stored_posted_and_listed(world: World) -> None:
    cid = await upload(world, 5.3)  # 6 blocks, the last one short; K = 2 → 3 rows
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json=BODY)
        assert r.status_code == 200, r.text
        pid = r.text
        assert (await api.get("/storage/purchases")).json() == [pid]
        purchase = (await api.get(f"/storage/purchases/{pid}")).json()
        again = (await api.get(f"/storage/purchases/{pid.removeprefix('0x')}")).json()
    assert again == purchase
    assert purchase["state"] == "submitted"
    assert purchase["requestId"] == pid
    assert [h["to"] for h in purchase["history"]] == ["pending", "submitted"]
    ask = purchase["request"]["ask"]
    assert (ask["slots"], ask["slotSize"], ask["maxSlotLoss"]) == (3, 3 * BLOCK_SIZE, 1)

    request_id = RequestId(bytes.fromhex(pid[2:]))
    on_chain = await world.market.get_request(request_id)
    assert on_chain is not None
    assert await world.market.request_state(request_id) == RequestState.NEW
    protected_cid = cid_from_bytes(on_chain.content.cid)
    assert protected_cid.is_protected_manifest
    # The prover reads the protected dataset through its slot manifests and finds the root the request commits to.
    commitment = await dataset_commitment(world.repo, protected_cid, 3)
    assert commitment.merkle_root == on_chain.content.merkle_root
    assert commitment.slot_size == on_chain.ask.slot_size

    # A host on this node secures every slot (the data source refused protected datasets before).
    source = LocalSlotDataSource(world.repo)
    for slot in range(3):
        secured: list[int] = []

        async def on_blocks(n: int, into: list[int] = secured) -> None:
            into.append(n)

        await source.fetch(on_chain, slot, world.clock.now() + 10_000, on_blocks)
        assert sum(secured) == on_chain.ask.slot_size


async def test_a_request_the_chain_refuses_leaves_nothing_stored(world: World) -> None:
    cid = await upload(world, 4)
    before = world.stored()
    world.market.fail_next("request_storage", ContractRevertError("InsufficientFunds"))
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json=BODY)
    assert r.status_code == 422
    assert "the marketplace refused the request" in r.json()["error"]
    assert world.stored() == before
    assert world.purchasing.ids() == []


async def test_a_client_that_leaves_while_encoding_cancels_it_and_nothing_stays(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = await upload(world, 40)
    before = world.stored()
    monkeypatch.setattr(protect, "GROUP_BYTES", 3 * BLOCK_SIZE)  # one row a group: many groups
    stored_once, cancelled = asyncio.Event(), asyncio.Event()
    real_put = UploadSession.put_group

    async def put_then_hang(self: UploadSession, *args: Any) -> bytes:
        if stored_once.is_set():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        digests = await real_put(self, *args)
        stored_once.set()
        return digests

    monkeypatch.setattr(UploadSession, "put_group", put_then_hang)
    messages: list[dict[str, object]] = [
        {"type": "http.request", "body": json.dumps(BODY).encode(), "more_body": False}
    ]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await stored_once.wait()  # the client leaves once part of the encoding is stored
        return {"type": "http.disconnect"}

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    path = f"{API_PREFIX}/storage/request/{cid}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"localhost"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await asyncio.wait_for(world.app(scope, receive, send), timeout=30)
    assert cancelled.is_set()
    assert sent[0]["status"] == CLIENT_GONE
    assert world.stored() == before
    assert world.purchasing.ids() == []
    assert world.market.calls("request_storage") == []


async def test_a_refused_second_request_for_the_same_dataset_keeps_the_first_ones_slots(world: World) -> None:
    cid = await upload(world, 4)
    async with world.api() as api:
        first = await api.post(f"/storage/request/{cid}", json=BODY)
        assert first.status_code == 200, first.text
        after_first = world.stored()
        world.market.fail_next("request_storage", ContractRevertError("InsufficientFunds"))
        second = await api.post(f"/storage/request/{cid}", json=BODY)  # same slots, same protected manifest
        assert second.status_code == 422
    assert world.stored() == after_first
    on_chain = await world.market.get_request(RequestId(bytes.fromhex(first.text[2:])))
    assert on_chain is not None
    commitment = await dataset_commitment(world.repo, cid_from_bytes(on_chain.content.cid), 3)
    assert commitment.merkle_root == on_chain.content.merkle_root


async def test_the_data_source_refuses_a_protected_dataset_the_request_does_not_describe(world: World) -> None:
    cid = await upload(world, 4)
    async with world.api() as api:
        r = await api.post(f"/storage/request/{cid}", json=BODY)
    on_chain = await world.market.get_request(RequestId(bytes.fromhex(r.text[2:])))
    assert on_chain is not None
    lying = replace(on_chain, ask=replace(on_chain.ask, slot_size=on_chain.ask.slot_size * 2))

    async def on_blocks(n: int) -> None:
        raise AssertionError("nothing may be secured")

    with pytest.raises(SlotDataError, match="slots of"):
        await LocalSlotDataSource(world.repo).fetch(lying, 0, world.clock.now() + 10, on_blocks)


async def test_the_client_requests_storage_and_reads_purchases(world: World) -> None:
    cid = await upload(world, 4)
    transport = httpx.ASGITransport(app=world.app)
    async with AsyncCodexClient(f"http://localhost{API_PREFIX}", transport=transport) as client:
        pid = await client.request_storage(
            cid, duration=3600, price_per_byte_per_second=1, proof_probability=1, collateral_per_byte=1, expiry=600
        )
        assert await client.list_purchases() == [pid]
        purchase = await client.get_purchase(pid)
        assert (purchase.state, purchase.request_id) == ("submitted", pid)
        assert purchase.request is not None
        assert purchase.request.ask.slots == 3
        assert [t.to_state for t in purchase.history] == ["pending", "submitted"]
        with pytest.raises(UnprocessableError, match="must be less than duration"):
            await client.request_storage(
                cid, duration=600, price_per_byte_per_second=1, proof_probability=1, collateral_per_byte=1, expiry=600
            )
