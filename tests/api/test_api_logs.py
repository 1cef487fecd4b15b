"""What the API logs when a request fails for a reason that is not a fault of the node (issue 7 item 15)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import Message
from structlog.testing import capture_logs

from codex_node.api.app import API_PREFIX, create_app
from codex_node.config import NodeConfig
from codex_node.stores.datasets import store_dataset
from codex_node.stores.repostore import RepoStore
from tests.harness.repo import memory_repo

MiB = 1 << 20


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "repo") as store:
        yield store


async def test_a_503_without_a_marketplace_is_not_an_error_in_the_log(tmp_path: Path, repo: RepoStore) -> None:
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False), repo=repo)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://localhost{API_PREFIX}") as c:
        with capture_logs() as logs:
            r = await c.get("/sales/slots")
    assert r.status_code == 503
    assert [e for e in logs if e["log_level"] in ("error", "critical", "warning")] == []


async def test_an_aborted_upload_reports_the_bytes_that_arrived(repo: RepoStore) -> None:
    class GoneError(Exception):
        pass

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(MiB // 2)  # 1.5 MiB: less than one 4 MiB group
        raise GoneError

    with capture_logs() as logs, pytest.raises(GoneError):
        await store_dataset(repo, stream())
    aborted = [e for e in logs if e["event"] == "upload aborted"]
    assert aborted == [
        {"event": "upload aborted", "log_level": "info", "bytes_received": 3 * MiB // 2, "reason": "GoneError"}
    ]


async def test_a_client_that_leaves_mid_upload_gives_one_info_line_and_no_exception(
    tmp_path: Path, repo: RepoStore
) -> None:
    app = create_app(NodeConfig(data_dir=tmp_path, marketplace=False), repo=repo)
    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * 100_000, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(_message: Message) -> None:
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{API_PREFIX}/data",
        "raw_path": f"{API_PREFIX}/data".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }
    with capture_logs() as logs:
        await app(scope, receive, send)  # before: ClientDisconnect escaped to the server ("Exception in ASGI …")
    above_debug = [e for e in logs if e["log_level"] != "debug"]
    assert above_debug == [
        {"event": "upload aborted", "log_level": "info", "bytes_received": 100_000, "reason": "ClientDisconnect"}
    ]
    assert list(repo.manifests()) == []
