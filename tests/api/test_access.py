"""Who may use the API: Host allowlist (421), Origin on state-changing requests (403), bearer token (401)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from codex_node import logutils
from codex_node.api.access import AccessPolicy, host_allowed, origin_allowed, split_host, token_matches
from codex_node.api.app import API_PREFIX, create_app
from codex_node.config import NodeConfig
from codex_node.node import Node
from codex_node.stores.repostore import RepoStore
from codex_node.testing.fakeclock import FakeClock
from tests.harness.repo import memory_repo

TOKEN = "s3cret-token-0123456789"


def token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "api-token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


# --- the pure decisions ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8080", "localhost"),
        ("[::1]:8080", "[::1]"),
        ("[::1]", "[::1]"),
        ("10.0.0.5:80", "10.0.0.5"),
        ("evil.example:x", None),
        ("[::1", None),
        ("[::1]x", None),
        ("", None),
    ],
)
def test_split_host(header: str, host: str | None) -> None:
    assert split_host(header) == host


def test_loopback_names_and_the_bind_address_are_allowed_and_nothing_else() -> None:
    policy = AccessPolicy.build("10.1.2.3")
    for host in ("localhost:8080", "127.0.0.1", "[::1]:1", "10.1.2.3:8080"):
        assert host_allowed(policy, host), host
    for host in ("evil.example", "127.0.0.1.evil.example", "10.1.2.4", None):
        assert not host_allowed(policy, host), host


def test_the_any_address_is_no_host_name_but_allowed_hosts_are() -> None:
    policy = AccessPolicy.build("0.0.0.0", ["node.example.org", "[fd00::1]"])
    assert not host_allowed(policy, "0.0.0.0:8080")
    assert host_allowed(policy, "NODE.example.org:8080")
    assert host_allowed(policy, "[fd00::1]:8080")
    assert host_allowed(AccessPolicy.build("0.0.0.0", ["*"]), "anything.example")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost:3000", True),
        ("https://127.0.0.1", True),
        ("http://evil.example", False),
        ("null", False),
        ("file://", False),
        ("http://localhost.evil.example", False),
    ],
)
def test_origin(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(AccessPolicy.build("127.0.0.1"), origin) is allowed


def test_token_must_be_a_bearer_credential_equal_to_the_token() -> None:
    expected = TOKEN.encode()
    assert token_matches(expected, f"Bearer {TOKEN}")
    assert token_matches(expected, f"bearer   {TOKEN} ")
    for header in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", "Bearer é"):
        assert not token_matches(expected, header), header


# --- through the app --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def restore_level() -> Iterator[None]:
    saved = logutils._Level.value
    yield
    logutils._Level.value = saved


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoStore]:
    with memory_repo(tmp_path / "repo") as store:
        yield store


def client(config: NodeConfig, repo: RepoStore, host: str = "localhost") -> httpx.AsyncClient:
    app = create_app(config, repo=repo)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}{API_PREFIX}")


@pytest.fixture
async def api(tmp_path: Path, repo: RepoStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client(NodeConfig(data_dir=tmp_path, marketplace=False), repo) as c:
        yield c


async def test_a_foreign_host_gets_421_and_reaches_no_route(api: httpx.AsyncClient, repo: RepoStore) -> None:
    r = await api.post("/data", content=b"hello", headers={"Host": "evil.example"})
    assert r.status_code == 421
    assert "--api-allowed-host" in r.json()["error"]
    assert list(repo.manifests()) == []
    assert (await api.get("/space", headers={"Host": "rebound.evil.example:8080"})).status_code == 421
    assert (await api.get("/space", headers={"Host": "localhost:8080"})).status_code == 200


async def test_an_allowed_host_flag_opens_that_name(tmp_path: Path, repo: RepoStore) -> None:
    config = NodeConfig(data_dir=tmp_path, marketplace=False, api_allowed_hosts=("node.example.org",))
    async with client(config, repo, host="node.example.org:8080") as c:
        assert (await c.get("/space")).status_code == 200
        assert (await c.get("/space", headers={"Host": "other.example.org"})).status_code == 421


async def test_a_cross_origin_upload_is_refused_and_nothing_stored(api: httpx.AsyncClient, repo: RepoStore) -> None:
    r = await api.post(
        "/data", content=b"from a web page", headers={"Content-Type": "text/plain", "Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    assert list(repo.manifests()) == []


async def test_a_cross_origin_loglevel_change_is_refused(api: httpx.AsyncClient) -> None:
    logutils.set_level("info")
    r = await api.post("/debug/chronicles/loglevel?level=debug", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert logutils.get_level() == "info"


async def test_same_host_origins_and_reads_pass(api: httpx.AsyncClient) -> None:
    r = await api.post("/data", content=b"from the docs page", headers={"Origin": "http://localhost:8080"})
    assert r.status_code == 200, r.text
    assert (await api.get("/space", headers={"Origin": "http://evil.example"})).status_code == 200


async def test_with_a_token_every_api_request_needs_it_but_docs_do_not(tmp_path: Path, repo: RepoStore) -> None:
    config = NodeConfig(data_dir=tmp_path, marketplace=False, api_token=token_file(tmp_path))
    async with client(config, repo) as c:
        with capture_logs() as logs:
            missing = await c.get("/space")
            wrong = await c.get("/space", headers={"Authorization": "Bearer not-the-token-at-all"})
            right = await c.get("/space", headers={"Authorization": f"Bearer {TOKEN}"})
            unknown = await c.get("/nowhere")
        docs = await c.get("http://localhost/docs")
        schema = await c.get("http://localhost/openapi.json")
    assert (missing.status_code, wrong.status_code, right.status_code, unknown.status_code) == (401, 401, 200, 401)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.json()["error"]
    assert (docs.status_code, schema.status_code) == (200, 200)
    assert TOKEN not in repr(logs)
    assert "not-the-token-at-all" not in repr(logs)


async def test_a_real_node_guards_its_api_and_metrics_with_the_token(tmp_path: Path) -> None:
    config = NodeConfig(
        data_dir=tmp_path / "data",
        api_port=0,
        marketplace=False,
        metrics=True,
        metrics_port=0,
        api_token=token_file(tmp_path),
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with capture_logs() as logs:
        async with Node(config, clock=FakeClock()) as node, httpx.AsyncClient(timeout=10) as c:
            assert node.metrics_url is not None
            assert (await c.get(f"{node.api_url}{API_PREFIX}/space")).status_code == 401
            assert (await c.get(f"{node.api_url}{API_PREFIX}/space", headers=auth)).status_code == 200
            assert (await c.get(node.metrics_url)).status_code == 401
            metrics = await c.get(node.metrics_url, headers=auth)
            assert metrics.status_code == 200
            assert "codex_api_requests_total" in metrics.text
            foreign = await c.get(node.metrics_url, headers={**auth, "Host": "evil.example"})
            assert foreign.status_code == 421
    assert TOKEN not in repr(logs)


def test_the_token_file_is_read_at_start_not_logged(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    os.chmod(path, 0o644)
    with pytest.raises(Exception, match="chmod 600") as raised:
        Node(NodeConfig(data_dir=tmp_path, marketplace=False, api_token=path))
    assert TOKEN not in str(raised.value)


def test_the_schema_documents_the_refusals_of_every_operation() -> None:
    schema = create_app().openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"401", "421"} <= statuses, (path, method)
            assert ("403" in statuses) == (method in ("post", "put", "patch", "delete")), (path, method)
    assert schema["paths"][f"{API_PREFIX}/data/{{cid}}"]["get"]["responses"]["503"]["headers"]["Retry-After"]
    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
