"""How the clients read the node's answers, against a scripted transport: one typed error per status with the
node's message, bounded and checked answers, the token sent but never shown, paths that cannot be escaped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from codex_node.client import (
    ApiError,
    AsyncCodexClient,
    BadRequestError,
    ClientClosedRequestError,
    CodexClient,
    ConflictError,
    ForbiddenError,
    InsufficientStorageError,
    MalformedResponseError,
    MisdirectedRequestError,
    NodeUnreachableError,
    NotFoundApiError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnauthorizedError,
    UnprocessableError,
    wire,
)
from codex_node.errors import CodexError

URL = "http://node.test/api/codex/v1"
TOKEN = "t0ken-that-must-not-leak-0123"

Handler = Callable[[httpx.Request], httpx.Response]


def sync_client(handler: Handler, token: str | None = None) -> CodexClient:
    return CodexClient(URL, token=token, transport=httpx.MockTransport(handler))


def async_client(handler: Handler, token: str | None = None) -> AsyncCodexClient:
    return AsyncCodexClient(URL, token=token, transport=httpx.MockTransport(handler))


def answer(status: int, body: object = None, **headers: str) -> Handler:
    def handle(_request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)

    return handle


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, BadRequestError),
        (401, UnauthorizedError),
        (403, ForbiddenError),
        (404, NotFoundApiError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (421, MisdirectedRequestError),
        (422, UnprocessableError),
        (499, ClientClosedRequestError),
        (503, ServiceUnavailableError),
        (507, InsufficientStorageError),
        (500, ApiError),
        (418, ApiError),
    ],
)
async def test_each_error_status_raises_its_type_with_the_nodes_message(status: int, kind: type[ApiError]) -> None:
    handler = answer(status, {"error": f"the node says {status}"})
    with sync_client(handler) as c, pytest.raises(kind) as raised:
        c.space()
    assert type(raised.value) is kind
    assert (raised.value.status, raised.value.message) == (status, f"the node says {status}")
    assert (raised.value.method, raised.value.path) == ("GET", "/space")
    assert isinstance(raised.value, CodexError)
    async with async_client(handler) as c:
        with pytest.raises(kind) as araised:
            await c.space()
    assert type(araised.value) is kind
    assert araised.value.message == f"the node says {status}"


def test_503_carries_retry_after_in_seconds(tmp_path: Path) -> None:
    busy = sync_client(answer(503, {"error": "busy"}, **{"Retry-After": "7"}))
    with busy as c, pytest.raises(ServiceUnavailableError) as raised:
        c.download("zDvZRwzm", tmp_path / "out")
    assert raised.value.retry_after == 7.0
    with sync_client(answer(503, {"error": "no marketplace"})) as c, pytest.raises(ServiceUnavailableError) as raised:
        c.list_slots()
    assert raised.value.retry_after is None
    assert wire.retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert wire.retry_after("99999999999") is None


def test_an_error_without_a_json_message_gets_the_reason_and_control_characters_never_pass() -> None:
    with sync_client(answer(502, b"<html>proxy</html>")) as c, pytest.raises(ApiError) as raised:
        c.space()
    assert raised.value.message == "Bad Gateway (the node gave no error message)"
    hostile = {"error": "line one\n\x1b[31mred\x1b[0m\r" + "x" * 5000}
    with sync_client(answer(422, hostile)) as c, pytest.raises(UnprocessableError) as raised:
        c.space()
    assert "\x1b" not in raised.value.message
    assert "\n" not in raised.value.message
    assert raised.value.message.startswith("line one [31mred")
    assert len(raised.value.message) <= 1000


def test_a_json_answer_over_the_bound_is_refused_before_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_JSON_BYTES", 1000)
    declared = answer(200, b"{}", **{"Content-Length": str(10**12)})

    def endless(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"[" + b" " * 600] * 100))  # chunked, no length

    with sync_client(declared) as c, pytest.raises(MalformedResponseError, match="over the 1000-byte limit"):
        c.list_slots()
    with sync_client(endless) as c, pytest.raises(MalformedResponseError, match="over the 1000-byte limit"):
        c.list_slots()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"not json", "not a valid Space"),
        (b'{"totalBlocks": 1}', "quotaMaxBytes"),
        (b'{"totalBlocks": "many", "quotaMaxBytes": 1, "quotaUsedBytes": 1, "quotaReservedBytes": 1}', "totalBlocks"),
    ],
)
def test_a_malformed_answer_is_a_clear_error(body: bytes, match: str) -> None:
    with sync_client(answer(200, body)) as c, pytest.raises(MalformedResponseError, match=match):
        c.space()


def test_an_upload_answer_that_is_not_a_cid_is_refused() -> None:
    with sync_client(answer(200, b"<html>hello</html>")) as c, pytest.raises(MalformedResponseError, match="not a CID"):
        c.upload(b"data")


def test_a_redirect_is_not_followed_so_the_token_stays_with_the_node() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://elsewhere.test/steal"})

    with sync_client(handler, token=TOKEN) as c, pytest.raises(MalformedResponseError, match="HTTP 302"):
        c.space()
    assert seen == [f"{URL}/space"]


def test_the_token_is_sent_as_a_bearer_credential_and_shown_nowhere() -> None:
    headers: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        headers.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": "wrong token"})

    with capture_logs() as logs, sync_client(handler, token=TOKEN + "\n") as c:
        with pytest.raises(UnauthorizedError) as raised:
            c.space()
        shown = [repr(c), str(raised.value), repr(raised.value), repr(logs), repr(c._http.headers)]
    assert headers == [f"Bearer {TOKEN}"]
    assert all(TOKEN not in text for text in shown)
    with pytest.raises(ValueError, match="API token") as bad:
        CodexClient(URL, token="has a space inside")
    assert "space inside" not in str(bad.value)


def test_path_parameters_are_encoded_whole() -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"has": False})

    with sync_client(handler) as c:
        assert c.exists("../../space?x=1") is False
    assert paths == ["/api/codex/v1/data/..%2F..%2Fspace%3Fx%3D1/exists"]


def test_an_unreachable_node_and_a_bad_url_are_clear_errors() -> None:
    nobody = CodexClient("http://127.0.0.1:1/api/codex/v1", timeout=5)
    with (
        nobody as c,
        pytest.raises(NodeUnreachableError, match=r"could not connect to the node at http://127\.0\.0\.1:1"),
    ):
        c.space()
    for url in ("127.0.0.1:8080", "ftp://node/api", "http:///api", "http://node/api?x=1", "http://u:secret@node/api"):
        with pytest.raises(ValueError, match="URL") as raised:
            CodexClient(url)
        assert "secret" not in str(raised.value)
    with CodexClient(URL) as c, pytest.raises(TypeError, match="not a str"):
        c.upload("photo.jpg")  # type: ignore[arg-type]


def test_a_download_cut_short_raises_and_leaves_no_file(tmp_path: Path) -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 100]), headers={"Content-Length": "100", "X": "y"})

    # httpx itself refuses a body longer than its length; a body shorter than announced is ours to catch.
    def short(_request: httpx.Request) -> httpx.Response:
        response = httpx.Response(200, content=iter([b"x" * 60]))
        response.headers["Content-Length"] = "100"
        return response

    dest = tmp_path / "out.bin"
    with sync_client(short) as c, pytest.raises(MalformedResponseError, match="after 60 bytes; the node announced 100"):
        c.download("zDvZRwzm", dest)
    assert list(tmp_path.iterdir()) == []
    with sync_client(handler) as c:
        info = c.download("zDvZRwzm", dest)
    assert (info.size, dest.read_bytes()) == (100, b"x" * 100)
    assert list(tmp_path.iterdir()) == [dest]


def test_a_hostile_file_name_in_a_download_is_never_a_path() -> None:
    headers = httpx.Headers({"Content-Disposition": 'attachment; filename="../../etc/passwd\x1b"'})
    info = wire.download_info("zDvZRwzm", headers)
    assert info.filename == ".._.._etc_passwd"
