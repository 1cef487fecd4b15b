"""The sales routes through an ASGI app: every success and every 400/404/422/503 case of anchor §6."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from codex_node.api.errors import install_error_handlers
from codex_node.api.routes.sales import router
from codex_node.api.services import Services, provide
from codex_node.data.cid import block_cid
from codex_node.data.slots import cid_bytes
from codex_node.market.types import Ask, Content, Request, Slot, slot_id
from codex_node.sales.context import OnBlocks
from codex_node.sales.history import SaleHistory
from codex_node.sales.reservations import Reservations
from codex_node.sales.sales import Sales
from codex_node.sales.slotqueue import SlotQueue
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.fakequota import FakeQuotaLedger
from codex_node.testing.memorykv import MemoryKV
from codex_node.testing.mockmarket import MockMarket, account

API = "/api/codex/v1"
BLOCK = 65_536
QUOTA = 100 * BLOCK
ASK = Ask(
    proof_probability=1,
    price_per_byte_per_second=2,
    collateral_per_byte=3,
    slots=1,
    slot_size=BLOCK,
    duration=3600,
    max_slot_loss=0,
)
UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1


class NoProofs:
    """Proofs are not what these tests are about: the agents never get past InitialProving."""

    async def prove(self, slot: Slot, challenge: bytes) -> Any:
        await asyncio.Event().wait()  # a proof that never comes

    def corrupt(self, proof: Any) -> Any:
        return proof

    async def forget(self, slot: Slot) -> None:
        return None


class HeldLocally:
    """A data source for data the node already holds: nothing to fetch, every byte released at once."""

    async def fetch(
        self, request: Request, slot_index: int, expiry: int, on_blocks: OnBlocks, *, is_repairing: bool = False
    ) -> None:
        await on_blocks(request.ask.slot_size)

    async def raise_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None

    async def lower_expiry(self, request: Request, slot_index: int, expiry: int) -> None:
        return None


@dataclass
class Node:
    app: FastAPI
    clock: FakeClock
    market: MockMarket
    client: MockMarket
    reservations: Reservations
    sales: Sales


async def make_node() -> Node:
    clock = FakeClock()
    client = MockMarket(clock, signer=account(1))
    market = client.as_account(account(2))
    for n in (1, 2):
        client.mint(account(n), 10**15)
    kv = MemoryKV()
    reservations = Reservations(FakeQuotaLedger(kv, QUOTA))
    sales = Sales(
        market=market,
        clock=clock,
        reservations=reservations,
        queue=SlotQueue(clock=clock),
        data_source=HeldLocally(),
        prover=NoProofs(),
        history=SaleHistory(kv, clock),
    )
    app = FastAPI()
    app.include_router(router, prefix=API)
    install_error_handlers(app)
    provide(app, Services(sales=sales, reservations=reservations, market=market))
    return Node(app, clock, market, client, reservations, sales)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = await make_node()
    await n.sales.start()
    yield n
    await n.sales.stop()


@pytest.fixture
async def api(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=node.app), base_url="http://localhost") as c:
        yield c


@pytest.fixture
async def bare() -> AsyncIterator[httpx.AsyncClient]:
    """An app whose node runs without a marketplace: no sales, reservations or market on its state."""
    app = FastAPI()
    app.include_router(router, prefix=API)
    install_error_handlers(app)
    provide(app, Services())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as c:
        yield c


AVAILABILITY = {
    "totalSize": 10 * BLOCK,
    "duration": 7200,
    "minPricePerBytePerSecond": "1",
    "totalCollateral": str(100 * BLOCK),
}


async def create(api: httpx.AsyncClient, **changes: object) -> dict[str, Any]:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, **changes})
    assert r.status_code == 201, r.text
    return cast(dict[str, Any], r.json())


async def post_request(node: Node) -> Request:
    request = Request(
        client=account(1),
        ask=ASK,
        content=Content(cid=cid_bytes(block_cid(b"dataset")), merkle_root=os.urandom(32)),
        expiry=600,
        nonce=os.urandom(32),
    )
    await node.client.request_storage(request)
    for _ in range(200):
        await asyncio.sleep(0)
    return request


def error(r: httpx.Response) -> str:
    return cast(str, r.json()["error"])


# --- availabilities -----------------------------------------------------------------------------------------------


async def test_create_availability_answers_201_with_amounts_as_strings(api: httpx.AsyncClient) -> None:
    body = await create(api, minPricePerBytePerSecond=str(UINT256_MAX), enabled=False, until=2_000_000_000)
    assert body["id"].startswith("0x")
    assert len(body["id"]) == 66
    assert body["totalSize"] == body["freeSize"] == 10 * BLOCK
    assert body["minPricePerBytePerSecond"] == str(UINT256_MAX)
    assert body["totalCollateral"] == body["totalRemainingCollateral"] == str(100 * BLOCK)
    assert (body["enabled"], body["until"], body["duration"]) == (False, 2_000_000_000, 7200)


async def test_create_availability_accepts_numbers_for_amounts(api: httpx.AsyncClient) -> None:
    body = await create(api, minPricePerBytePerSecond=5, totalCollateral=7)
    assert (body["minPricePerBytePerSecond"], body["totalCollateral"]) == ("5", "7")


async def test_list_availabilities(api: httpx.AsyncClient) -> None:
    a = await create(api)
    b = await create(api, totalSize=BLOCK)
    r = await api.get(f"{API}/sales/availability")
    assert r.status_code == 200
    assert sorted(x["id"] for x in r.json()) == sorted([a["id"], b["id"]])


async def test_create_availability_with_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


async def test_create_availability_without_a_required_field_is_400(api: httpx.AsyncClient) -> None:
    body = {k: v for k, v in AVAILABILITY.items() if k != "duration"}
    r = await api.post(f"{API}/sales/availability", json=body)
    assert r.status_code == 400
    assert "duration" in error(r)


async def test_create_availability_with_a_non_numeric_amount_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, "totalCollateral": "lots"})
    assert r.status_code == 400


@pytest.mark.parametrize("field", ["totalSize", "duration", "minPricePerBytePerSecond", "totalCollateral"])
async def test_create_availability_with_a_zero_field_is_422(api: httpx.AsyncClient, field: str) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, field: 0})
    assert r.status_code == 422
    assert field in error(r)


async def test_create_availability_beyond_the_quota_is_422(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, "totalSize": QUOTA + 1})
    assert r.status_code == 422
    assert "quota" in error(r)


async def test_create_availability_with_negative_until_is_422(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, "until": -1})
    assert r.status_code == 422
    assert "until" in error(r)


async def test_create_availability_with_an_amount_above_uint256_is_422(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, "totalCollateral": str(UINT256_MAX + 1)})
    assert r.status_code == 422


# --- strict bodies: malformed 400, well-formed but invalid 422 (issue 7 items 2 and 16) ----------------------------

# (field, value, status, what the message names): one row per rule of the status rule in openapi.yaml.
STRICT_CASES = [
    # malformed: a value of the wrong JSON type → 400
    ("totalSize", True, 400, "totalSize"),  # was stored as 1
    ("totalSize", 1.0, 400, "totalSize"),
    ("totalSize", "640", 400, "totalSize"),
    ("duration", 1e30, 400, "duration"),
    ("enabled", "yes", 400, "enabled"),  # was stored as true
    ("enabled", 1, 400, "enabled"),
    ("totalCollateral", 1e30, 400, "totalCollateral"),  # was 422 while "1e30" was 400
    ("totalCollateral", "1e30", 400, "totalCollateral"),
    ("totalCollateral", True, 400, "totalCollateral"),
    ("totalCollateral", "-1", 400, "totalCollateral"),
    # well-formed but out of the bounds the contract and the node hold → 422
    ("duration", 2**64, 422, "duration"),  # was stored as given
    ("until", 2**70, 422, "until"),  # was stored as given
    ("totalSize", 2**64, 422, "totalSize"),
    ("totalSize", -1, 422, "totalSize"),
    ("totalCollateral", 2**256, 422, "totalCollateral"),
    ("minPricePerBytePerSecond", str(2**256), 422, "minPricePerBytePerSecond"),
    ("minPricePerBytePerSecond", "9" * 5000, 422, "minPricePerBytePerSecond"),
    # well-formed but an unknown field → 422, naming it
    ("padding", "x" * 1000, 422, "padding: unknown field"),  # was 201
]


@pytest.mark.parametrize(("field", "value", "status", "says"), STRICT_CASES)
async def test_create_availability_body_is_strict(
    api: httpx.AsyncClient, field: str, value: object, status: int, says: str
) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, field: value})
    assert r.status_code == status, r.text
    assert says in error(r)
    assert (await api.get(f"{API}/sales/availability")).json() == []  # nothing half written


@pytest.mark.parametrize(("field", "value", "status", "says"), STRICT_CASES)
async def test_patch_body_is_strict(api: httpx.AsyncClient, field: str, value: object, status: int, says: str) -> None:
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={field: value})
    assert r.status_code == status, r.text
    assert says in error(r)
    [after] = (await api.get(f"{API}/sales/availability")).json()
    assert after == a


async def test_the_largest_values_the_contract_holds_are_accepted(api: httpx.AsyncClient) -> None:
    body = await create(api, duration=UINT64_MAX, until=UINT64_MAX, minPricePerBytePerSecond=UINT256_MAX)
    assert (body["duration"], body["until"], body["minPricePerBytePerSecond"]) == (
        UINT64_MAX,
        UINT64_MAX,
        str(UINT256_MAX),
    )


async def test_a_body_both_malformed_and_invalid_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json={**AVAILABILITY, "totalSize": True, "padding": 1})
    assert r.status_code == 400
    assert "padding: unknown field" in error(r)


async def test_a_body_that_is_not_an_object_is_400(api: httpx.AsyncClient) -> None:
    r = await api.post(f"{API}/sales/availability", json=[AVAILABILITY])
    assert r.status_code == 400


async def test_patch_changes_only_the_given_fields_and_answers_204(api: httpx.AsyncClient) -> None:
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"duration": 100, "minPricePerBytePerSecond": "9"})
    assert r.status_code == 204
    assert r.content == b""
    [after] = (await api.get(f"{API}/sales/availability")).json()
    assert (after["duration"], after["minPricePerBytePerSecond"]) == (100, "9")
    assert after["totalSize"] == a["totalSize"]


async def test_patch_total_collateral_keeps_collateral_committed_to_hosted_slots(
    api: httpx.AsyncClient, node: Node
) -> None:
    """MARKETPLACE.md §5 #6: nim-codex reset the remaining collateral to the new total."""
    a = await create(api)
    await post_request(node)  # one slot, reserved: 3 × 64 KiB of collateral committed
    committed = ASK.collateral_per_slot
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"totalCollateral": str(200 * BLOCK)})
    assert r.status_code == 204
    [after] = (await api.get(f"{API}/sales/availability")).json()
    assert after["totalRemainingCollateral"] == str(200 * BLOCK - committed)


async def test_patch_total_size_needs_quota_only_for_the_increase(api: httpx.AsyncClient) -> None:
    """MARKETPLACE.md §5 #7: nim-codex checked the quota for the whole new size."""
    a = await create(api, totalSize=60 * BLOCK)  # 60 of 100 blocks reserved; growing by 30 fits, 90 new would not
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"totalSize": 90 * BLOCK})
    assert r.status_code == 204


async def test_patch_over_the_quota_is_422_not_500(api: httpx.AsyncClient) -> None:
    """MARKETPLACE.md §5 #12 (nim-codex #884)."""
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"totalSize": QUOTA + BLOCK})
    assert r.status_code == 422
    assert "quota" in error(r)


async def test_patch_with_malformed_id_is_400(api: httpx.AsyncClient) -> None:
    r = await api.patch(f"{API}/sales/availability/0x1234", json={"duration": 1})
    assert r.status_code == 400


async def test_patch_with_malformed_json_is_400(api: httpx.AsyncClient) -> None:
    a = await create(api)
    r = await api.patch(
        f"{API}/sales/availability/{a['id']}", content=b"[", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400


async def test_patch_of_an_unknown_availability_is_404(api: httpx.AsyncClient) -> None:
    r = await api.patch(f"{API}/sales/availability/0x{'ab' * 32}", json={"duration": 1})
    assert r.status_code == 404


async def test_patch_of_free_size_is_422(api: httpx.AsyncClient) -> None:
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"freeSize": 1})
    assert r.status_code == 422
    assert error(r) == "Updating freeSize is not allowed"


async def test_patch_total_size_to_zero_is_422(api: httpx.AsyncClient) -> None:
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"totalSize": 0})
    assert r.status_code == 422


async def test_patch_total_size_below_the_bytes_in_use_is_422(api: httpx.AsyncClient, node: Node) -> None:
    a = await create(api)
    await post_request(node)  # one 64 KiB slot in use
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"totalSize": BLOCK - 1})
    assert r.status_code == 422
    assert "in use" in error(r)


async def test_patch_until_before_a_hosted_slot_ends_is_422(api: httpx.AsyncClient, node: Node) -> None:
    a = await create(api)
    request = await post_request(node)
    end = await node.market.request_end(request.id)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"until": end - 1})
    assert r.status_code == 422
    assert "until" in error(r)


async def test_patch_with_negative_until_is_422(api: httpx.AsyncClient) -> None:
    a = await create(api)
    r = await api.patch(f"{API}/sales/availability/{a['id']}", json={"until": -5})
    assert r.status_code == 422


async def test_reservations_of_an_availability(api: httpx.AsyncClient, node: Node) -> None:
    a = await create(api)
    request = await post_request(node)
    r = await api.get(f"{API}/sales/availability/{a['id']}/reservations")
    assert r.status_code == 200
    [reservation] = r.json()
    assert reservation["availabilityId"] == a["id"]
    assert reservation["requestId"] == "0x" + request.id.hex()
    assert reservation["slotIndex"] == 0
    assert reservation["size"] == 0  # the data was held locally: nothing left to download
    assert reservation["validUntil"] == await node.market.request_end(request.id)
    assert set(reservation) == {"id", "availabilityId", "size", "requestId", "slotIndex", "validUntil"}


async def test_reservations_with_malformed_id_is_400(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/sales/availability/nope/reservations")
    assert r.status_code == 400


async def test_reservations_of_an_unknown_availability_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/sales/availability/0x{'cd' * 32}/reservations")
    assert r.status_code == 404


# --- slots --------------------------------------------------------------------------------------------------------


async def test_slots_lists_what_the_chain_says_we_host(api: httpx.AsyncClient, node: Node) -> None:
    assert (await api.get(f"{API}/sales/slots")).json() == []
    request = Request(account(1), ASK, Content(cid_bytes(block_cid(b"d")), b"\x01" * 32), 600, os.urandom(32))
    await node.client.request_storage(request)
    await node.market.reserve_slot(request.id, 0)
    await node.market.fill_slot(request.id, 0, cast(Any, object()), ASK.collateral_per_slot)
    [slot] = (await api.get(f"{API}/sales/slots")).json()
    assert slot["id"] == "0x" + slot_id(request.id, 0).hex()
    assert slot["slotIndex"] == 0
    assert slot["request"]["id"] == "0x" + request.id.hex()
    assert slot["request"]["client"] == account(1)
    assert slot["request"]["content"] == {"cid": block_cid(b"d").text, "merkleRoot": "0x" + "01" * 32}
    assert slot["request"]["ask"] == {
        "slots": 1,
        "slotSize": BLOCK,
        "duration": 3600,
        "proofProbability": "1",
        "pricePerBytePerSecond": "2",
        "collateralPerByte": "3",
        "maxSlotLoss": 0,
    }
    assert slot["request"]["expiry"] == 600


async def test_slot_being_sold_shows_state_request_reservation_and_history(api: httpx.AsyncClient, node: Node) -> None:
    await create(api)
    request = await post_request(node)
    sid = "0x" + slot_id(request.id, 0).hex()
    r = await api.get(f"{API}/sales/slots/{sid}")
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "SaleInitialProving"  # waiting for the next period
    assert body["requestId"] == "0x" + request.id.hex()
    assert body["slotIndex"] == 0
    assert body["request"]["id"] == "0x" + request.id.hex()
    assert body["reservation"]["requestId"] == "0x" + request.id.hex()
    steps = [(h["from"], h["to"], h["cause"]) for h in body["history"]]
    assert steps == [
        (None, "SalePreparing", "start"),
        ("SalePreparing", "SaleSlotReserving", "run"),
        ("SaleSlotReserving", "SaleDownloading", "run"),
        ("SaleDownloading", "SaleInitialProving", "run"),
    ]
    assert all(h["at"] == node.clock.now() for h in body["history"])


async def test_slot_whose_sale_ended_shows_how_it_ended(api: httpx.AsyncClient, node: Node) -> None:
    await create(api)
    request = await post_request(node)
    node.clock.set(await node.market.request_expires_at(request.id) + 1)
    for _ in range(200):
        await asyncio.sleep(0)
    r = await api.get(f"{API}/sales/slots/0x{slot_id(request.id, 0).hex()}")
    assert r.status_code == 200
    body = r.json()
    assert body["state"] == "SaleCancelled"
    assert body["history"][-1]["cause"] == "RequestCancelled"
    assert body["reservation"] is None


async def test_slot_with_malformed_id_is_400(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{API}/sales/slots/0xzz")).status_code == 400
    assert (await api.get(f"{API}/sales/slots/{'00' * 32}")).status_code == 400  # the 0x is part of the format


async def test_slot_not_sold_here_is_404(api: httpx.AsyncClient) -> None:
    r = await api.get(f"{API}/sales/slots/0x{'11' * 32}")
    assert r.status_code == 404
    assert error(r) == "Provider not filling slot"


# --- without a marketplace ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sales/slots"),
        ("GET", f"/sales/slots/0x{'11' * 32}"),
        ("GET", "/sales/availability"),
        ("POST", "/sales/availability"),
        ("PATCH", f"/sales/availability/0x{'11' * 32}"),
        ("GET", f"/sales/availability/0x{'11' * 32}/reservations"),
    ],
)
async def test_every_route_answers_503_without_a_marketplace(bare: httpx.AsyncClient, method: str, path: str) -> None:
    body = AVAILABILITY if method == "POST" else {"duration": 1} if method == "PATCH" else None
    r = await bare.request(method, f"{API}{path}", json=body)
    assert r.status_code == 503
    assert "marketplace" in error(r)


async def test_slot_history_shows_how_far_the_download_got_on_its_downloading_entry(
    api: httpx.AsyncClient, node: Node
) -> None:
    await create(api)
    request = await post_request(node)
    body = (await api.get(f"{API}/sales/slots/0x{slot_id(request.id, 0).hex()}")).json()
    progress = {h["to"]: h["progress"] for h in body["history"]}
    size = request.ask.slot_size
    assert progress == {
        "SalePreparing": None,
        "SaleSlotReserving": None,
        "SaleDownloading": {"at": node.clock.now(), "bytes": size, "total": size},
        "SaleInitialProving": None,
    }
