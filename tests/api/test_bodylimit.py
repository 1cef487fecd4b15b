"""Non-upload request bodies: 413 over the size limit (before reading them whole), 400 when nested too deep."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from codex_node.api.app import API_PREFIX, create_app
from codex_node.api.bodylimit import MAX_BODY, MAX_DEPTH, BodyLimitMiddleware, nesting_exceeds
from codex_node.config import NodeConfig
from codex_node.stores.blockfiles import BlockFiles
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from codex_node.testing.memorykv import MemoryKV


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab'),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\'), children, max_size=3)
    ),
    max_leaves=30,
)


@given(json_values, st.integers(min_value=0, max_value=8))
def test_nesting_is_measured_like_the_json_parser_sees_it(value: object, limit: int) -> None:
    body = json.dumps(value).encode()
    assert nesting_exceeds(body, limit) == (_depth(value) > limit)


def test_brackets_inside_strings_do_not_count() -> None:
    assert not nesting_exceeds(json.dumps({"a": "[[[[[[", "b": '\\"{{{{'}).encode(), 1)
    assert nesting_exceeds(b"[" * 100_000 + b"]" * 100_000, MAX_DEPTH)


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _guarded(max_body: int = 1000) -> BodyLimitMiddleware:
    return BodyLimitMiddleware(_echo, streams=lambda scope: scope["path"] == "/upload", max_body=max_body)


async def test_a_body_within_the_limit_reaches_the_app_unchanged() -> None:
    body = json.dumps({"a": [1, 2, {"b": "[[["}]}).encode()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_guarded()), base_url="http://localhost") as c:
        r = await c.post("/x", content=body)
    assert (r.status_code, r.content) == (200, body)


async def test_an_exempt_route_streams_any_size() -> None:
    body = b"[" * 5000
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_guarded()), base_url="http://localhost") as c:
        r = await c.post("/upload", content=body)
    assert (r.status_code, r.content) == (200, body)


async def test_an_over_long_declared_body_gets_413_without_reading_a_byte() -> None:
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-length", b"5000")]}
    await _guarded()(scope, receive, send)
    assert sent[0]["status"] == 413
    assert reads == 0


async def test_an_endless_chunked_body_gets_413_once_past_the_limit() -> None:
    reads = 0

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}  # never ends

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await _guarded(max_body=1000)({"type": "http", "method": "POST", "path": "/x", "headers": []}, receive, send)
    assert sent[0]["status"] == 413
    assert b"over 1000 bytes" in sent[1]["body"]
    assert reads == 11  # the first 100 bytes past the limit, and not one chunk more


@pytest.fixture
async def node_api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    repo = RepoStore(
        MemoryKV(),
        BlockFiles(tmp_path / "repo", sync="none"),
        clock=FakeClock(),
        quota_max=1 << 30,
        block_ttl=3600,
        registry=None,
    )
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False), repo=repo)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}"
    ) as client:
        yield client
    repo.close()


async def test_the_app_refuses_a_large_availability_body_but_not_a_large_upload(node_api: httpx.AsyncClient) -> None:
    padded = json.dumps({"totalSize": 1, "padding": "x" * MAX_BODY}).encode()
    r = await node_api.post("/sales/availability", content=padded, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "only uploads" in r.json()["error"]
    upload = await node_api.post("/data", content=b"x" * (2 * MAX_BODY))
    assert upload.status_code == 200, upload.text


async def test_the_app_refuses_deep_nesting_on_every_method(node_api: httpx.AsyncClient) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for method, path in (("POST", "/sales/availability"), ("PATCH", "/sales/availability/x"), ("DELETE", "/data/x")):
        r = await node_api.request(method, path, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (method, path)
        assert r.json() == {"error": f"request body nested deeper than {MAX_DEPTH} levels"}
