"""HTTP to peers: the three questions one node asks another, each answer read with a cap and checked.

* ``GET {url}/spr`` (text): the peer's signed record;
* ``GET {url}/peers?spr=<ours>``: records of the peers it knows (and it learns ours);
* ``GET {url}/have?cid=…``: which of these CIDs it holds.

Every request has a timeout (per wait, and for the whole answer), follows no redirect, sends no credentials, and
reads at most a fixed number of bytes (a hostile peer cannot make this node read more). :class:`PeerError` means the
peer could not be reached or answered with an error status (back off); :class:`PeerAnswerError` means it answered
what the protocol does not allow (misbehaviour). :class:`PeerWire` is the port; :class:`HttpPeerWire` the httpx
implementation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Protocol

import httpx

from codex_node.data.cid import Cid
from codex_node.errors import PeerAnswerError, PeerError, PeerRecordError
from codex_node.peers.record import MAX_TEXT, PeerRecord, decode_record

MAX_RECORD_ANSWER = MAX_TEXT + 64
MAX_PEERS_ANSWER = 256 * 1024
MAX_HAVE_ANSWER = 64 * 1024
EXCHANGE_LIMIT = 64
"""Records a peer-exchange answer carries at most (server side) and this node reads at most (client side)."""
HAVE_LIMIT = 64
"""CIDs one "have" question carries at most."""
DEFAULT_TIMEOUT = 5.0


async def read_capped(response: httpx.Response, cap: int, who: str) -> bytes:
    """A peer's whole answer body, refused (:class:`PeerAnswerError`) as soon as it says or shows it is longer than
    ``cap`` bytes: a hostile peer cannot make this node buffer more. Raw bytes: ask with ``Accept-Encoding:
    identity``, so the cap counts what was sent and a compressed answer cannot expand past it."""
    declared = response.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise PeerAnswerError(f"{who} announced {declared[:20]} bytes, more than the {cap} allowed")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > cap:
            raise PeerAnswerError(f"{who} sent more than the {cap} bytes allowed")
    return bytes(body)


class PeerWire(Protocol):
    async def record(self, url: str) -> PeerRecord: ...

    async def exchange(self, url: str, own: str | None) -> list[str]:
        """The records (still encoded, unverified) the peer at ``url`` shares, telling it ``own``."""
        ...

    async def have(self, url: str, cids: Sequence[Cid]) -> set[str]:
        """Which of ``cids`` (their text) the peer at ``url`` holds; never a CID that was not asked."""
        ...


class HttpPeerWire:
    """:class:`PeerWire` over one shared httpx client; :meth:`close` when the node stops."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # httpx's timeout bounds each wait; this bounds the whole answer (a peer dripping a byte a second).
        self._deadline = 3 * timeout
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            trust_env=False,  # no proxy or .netrc credentials from the environment
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(
        self, url: str, cap: int, params: dict[str, str | list[str]] | None = None, accept: str = ""
    ) -> bytes:
        # identity: the cap counts the bytes as sent, so a compressed answer cannot expand past it.
        headers = {"Accept-Encoding": "identity"} | ({"Accept": accept} if accept else {})
        try:
            async with (
                asyncio.timeout(self._deadline),
                self._client.stream("GET", url, params=params, headers=headers) as response,
            ):
                if response.status_code != 200:
                    raise PeerError(f"{url} answered {response.status_code}")
                return await read_capped(response, cap, url)
        except httpx.HTTPError as e:
            raise PeerError(f"{url} could not be reached: {type(e).__name__}") from None
        except TimeoutError:
            raise PeerError(f"{url} did not answer within {self._deadline:g} s") from None

    async def record(self, url: str) -> PeerRecord:
        raw = await self._get(f"{url}/spr", MAX_RECORD_ANSWER, accept="text/plain")
        try:
            return decode_record(raw.decode("ascii").strip())
        except (UnicodeDecodeError, PeerRecordError) as e:
            raise PeerAnswerError(f"{url}/spr is not a valid peer record: {e}") from None

    async def exchange(self, url: str, own: str | None) -> list[str]:
        params: dict[str, str | list[str]] = {} if own is None else {"spr": own}
        doc = _json(await self._get(f"{url}/peers", MAX_PEERS_ANSWER, params), url)
        peers = doc.get("peers") if isinstance(doc, dict) else None
        if not isinstance(peers, list) or len(peers) > EXCHANGE_LIMIT or not all(isinstance(p, str) for p in peers):
            raise PeerAnswerError(f"{url}/peers is not {{'peers': [at most {EXCHANGE_LIMIT} strings]}}")
        return [str(p) for p in peers]

    async def have(self, url: str, cids: Sequence[Cid]) -> set[str]:
        asked = [c.text for c in cids[:HAVE_LIMIT]]
        doc = _json(await self._get(f"{url}/have", MAX_HAVE_ANSWER, {"cid": asked}), url)
        held = doc.get("have") if isinstance(doc, dict) else None
        if not isinstance(held, list) or not all(isinstance(c, str) for c in held) or not set(held) <= set(asked):
            raise PeerAnswerError(f"{url}/have is not {{'have': [CIDs among those asked]}}")
        return {str(c) for c in held}


def _json(raw: bytes, url: str) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise PeerAnswerError(f"{url} did not answer JSON") from None
