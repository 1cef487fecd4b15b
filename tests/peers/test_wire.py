"""HTTP to peers: bounded reads, no redirects, answers checked (httpx's MockTransport plays the peer)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from codex_node.data.cid import block_cid
from codex_node.errors import PeerAnswerError, PeerError
from codex_node.peers.wire import MAX_HAVE_ANSWER, MAX_PEERS_ANSWER, HttpPeerWire
from tests.peers.netfakes import record

URL = "http://127.0.0.1:1/api/codex/v1"
CID = block_cid(b"x")


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


def answer(status: int = 200, body: bytes = b"", **kwargs: object) -> httpx.Response:
    """An answer streamed as a real server's is (httpx reads a bytes body at once, which no server does)."""
    return httpx.Response(status, content=_chunks(body), **kwargs)  # type: ignore[arg-type]


def wire(handler: Callable[[httpx.Request], httpx.Response]) -> HttpPeerWire:
    return HttpPeerWire(transport=httpx.MockTransport(handler))


async def test_a_record_is_fetched_and_verified() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(body=record(2).text.encode())

    assert (await wire(handler).record(URL)) == record(2)
    assert seen[0].url.path == "/api/codex/v1/spr"
    assert seen[0].headers["accept-encoding"] == "identity"
    assert "authorization" not in seen[0].headers


async def test_a_record_that_does_not_verify_is_a_bad_answer() -> None:
    with pytest.raises(PeerAnswerError):
        await wire(lambda _r: answer(body=(record(2).text[:-3] + "AAA").encode())).record(URL)


async def test_a_redirect_is_not_followed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://127.0.0.2:1/secret"})

    with pytest.raises(PeerError, match="302"):
        await wire(handler).record(URL)


async def test_an_announced_oversized_answer_is_refused_before_it_is_read() -> None:
    def handler(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-length": str(MAX_PEERS_ANSWER + 1)}, content=b"{}")

    with pytest.raises(PeerAnswerError, match="announced"):
        await wire(handler).exchange(URL, None)


async def test_an_endless_answer_is_cut_at_the_cap() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 4096
            yield b" " * 4096

    def handler(_r: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=endless())

    with pytest.raises(PeerAnswerError, match="more than"):
        await wire(handler).have(URL, [CID])
    assert sent <= MAX_HAVE_ANSWER + 8192


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"have": "x"}', b'{"have": [1]}', b'{"have": ["bafkunasked"]}'],
)
async def test_a_have_answer_outside_the_protocol_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(PeerAnswerError):
        await wire(lambda _r: answer(body=body)).have(URL, [CID])


async def test_have_sends_the_cids_and_reads_the_held_ones() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get_list("cid") == [CID.text]
        return answer(body=json.dumps({"have": [CID.text]}).encode())

    assert await wire(handler).have(URL, [CID]) == {CID.text}


async def test_exchange_introduces_us_and_refuses_too_many_records() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["spr"] == record(1).text
        return answer(body=json.dumps({"peers": [record(2).text] * 65}).encode())

    with pytest.raises(PeerAnswerError):
        await wire(handler).exchange(URL, record(1).text)


async def test_an_unreachable_peer_is_a_peer_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(PeerError, match="could not be reached"):
        await wire(handler).record(URL)
