"""The one error mapping: CodexError types → status codes, request validation → 400/422, one body shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from codex_node import errors
from codex_node.api.errors import describe_validation, install_error_handlers, status_for


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidCidError("bad cid"), 400),
        (errors.InvalidInputError("bad"), 400),
        (errors.ValidationError("rule"), 422),
        (errors.QuotaNotEnoughError("full"), 422),
        (errors.BytesOutOfBoundsError("bytes"), 422),
        (errors.UntilOutOfBoundsError("until"), 422),
        (errors.CollateralOutOfBoundsError("collateral"), 422),
        (errors.NotFoundError("nope"), 404),
        (errors.BlockNotFoundError("no block"), 404),  # a StoreError too: NotFound wins
        (errors.AvailabilityNotFoundError("no availability"), 404),
        (errors.ReservationNotFoundError("no reservation"), 404),
        (errors.MarketUnavailableError("no market"), 503),
        (errors.CorruptBlockError("corrupt"), 500),
        (errors.KVError("leveldb"), 500),
        (errors.ContractRevertError("SlotNotFree"), 500),
        (errors.SlotQueueItemExistsError("dup"), 500),
        (errors.CodexError("other"), 500),
    ],
)
def test_status_for_each_error_type(error: errors.CodexError, status: int) -> None:
    assert status_for(error) == status


class Body(BaseModel):
    total_size: int = Field(gt=0)
    name: str


router = APIRouter()


@router.get("/raise/{kind}")
async def raise_(kind: str) -> None:
    raise {
        "cid": errors.InvalidCidError("invalid CID 'x'"),
        "quota": errors.QuotaNotEnoughError("not enough\nstorage   quota"),
        "market": errors.MarketUnavailableError("the node runs without a marketplace"),
        "kv": errors.KVError("metadata write failed"),
    }[kind]


@router.get("/bug")
async def bug() -> None:
    raise ZeroDivisionError("a bug")


@router.post("/body")
async def body(value: Body) -> dict[str, int]:
    return {"size": value.total_size}


@router.get("/count")
async def count(n: int) -> dict[str, int]:
    return {"n": n}


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("cid", 400, "invalid CID 'x'"),
        ("quota", 422, "not enough storage quota"),  # made one line
        ("market", 503, "the node runs without a marketplace"),
        ("kv", 500, "metadata write failed"),
    ],
)
async def test_a_codex_error_becomes_its_status_with_a_one_line_error_body(
    client: httpx.AsyncClient, kind: str, status: int, message: str
) -> None:
    r = await client.get(f"/raise/{kind}")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": message}


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/body", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("invalid request: ")


async def test_a_missing_field_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    r = await client.post("/body", json={"total_size": 5})
    assert r.status_code == 400
    assert "body.name" in r.json()["error"]


async def test_a_mistyped_parameter_is_a_400(client: httpx.AsyncClient) -> None:
    r = await client.get("/count", params={"n": "many"})
    assert r.status_code == 400
    assert "query.n" in r.json()["error"]


async def test_a_well_formed_value_that_breaks_a_constraint_is_a_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/body", json={"total_size": 0, "name": "x"})
    assert r.status_code == 422
    assert r.json() == {"error": "invalid request: body.total_size: Input should be greater than 0"}


async def test_unknown_paths_and_methods_get_the_same_body_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/nowhere")
    assert (r.status_code, r.json()) == (404, {"error": "Not Found"})
    r = await client.delete("/count")
    assert (r.status_code, r.json()) == (405, {"error": "Method Not Allowed"})
    assert r.headers["allow"] == "GET"


def test_describe_validation_joins_every_error_in_one_line() -> None:
    status, message = describe_validation(
        [
            {"type": "greater_than", "loc": ("body", "totalSize"), "msg": "Input should be greater than 0"},
            {"type": "missing", "loc": ("body", "duration"), "msg": "Field required"},
        ]
    )
    assert status == 400  # one malformed part makes the whole request malformed
    assert message == ("invalid request: body.totalSize: Input should be greater than 0; body.duration: Field required")


async def test_an_unexpected_exception_is_a_500_with_the_same_body_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/bug")
    assert r.status_code == 500
    assert r.json() == {"error": "internal error"}  # no internals leak to the client
