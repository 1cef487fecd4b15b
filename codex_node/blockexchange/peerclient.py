"""Talking to one peer's block routes over HTTP, with bounded reads (the bytes are not verified here).

``GET {peer}/blocks/{cid}`` answers one block (a manifest, typically), read with httpx; ``POST {peer}/blocks`` a
batch of frames (``blockexchange/wire.py``), read with the lean :class:`~codex_node.blockexchange.rawhttp.RawHttp`
from ``http://`` peers (most of a download's bytes: httpx's parsing cost more CPU than storing them). Every answer
is hostile: a body longer than the caller's bound is cut off with a :class:`~codex_node.errors.PeerError` before
more than the bound is buffered, and every transport failure is a ``PeerError`` too, so the fetcher has one error to
handle per peer. Verifying the bytes against their CIDs is the fetcher's job.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import httpx

from codex_node.blockexchange.rawhttp import RawHttp
from codex_node.blockexchange.wire import HEADER_SIZE, MEDIA_TYPE, FrameReader
from codex_node.data.cid import Cid
from codex_node.errors import PeerError
from codex_node.peers.port import PeerInfo
from codex_node.peers.wire import read_capped

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""The transport's own bound on any one read; the fetcher's stall detection (clock-driven) usually acts first."""


class PeerClient:
    """One pooled HTTP client for every peer. Call :meth:`close` when done."""

    def __init__(
        self, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 64, lean: bool = True
    ) -> None:
        """``lean``: batches from ``http://`` peers go through :class:`RawHttp` (the default; ``False``: httpx)."""
        self._http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            trust_env=False,  # a peer on 127.0.0.1 must not go through a proxy from the environment
            headers={"Accept-Encoding": "identity"},  # raw bytes: blocks and frames are read with aiter_raw
        )
        self._raw = RawHttp(connect_timeout=timeout.connect or 5.0) if lean else None

    async def close(self) -> None:
        await self._http.aclose()
        if self._raw is not None:
            await self._raw.close()

    async def get_block(self, peer: PeerInfo, cid: Cid, *, max_bytes: int) -> bytes | None:
        """The bytes ``peer`` answers for ``cid`` (``None``: it says it does not have it), at most ``max_bytes``."""
        try:
            async with self._http.stream("GET", f"{peer.url}/blocks/{cid.text}") as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise PeerError(f"peer {peer.peer_id} answered {response.status_code} for block {cid}")
                return await read_capped(response, max_bytes, f"peer {peer.peer_id} (block {cid})")
        except httpx.HTTPError as e:
            raise PeerError(f"peer {peer.peer_id} at {peer.url}: {type(e).__name__} {e}") from e

    async def stream_blocks(
        self, peer: PeerInfo, cids: Sequence[Cid], *, max_bytes: int
    ) -> AsyncGenerator[tuple[int, bytes | memoryview | None], None]:
        """``(index into cids, payload or None)`` for each frame as it arrives; payloads at most ``max_bytes``.

        Raises :class:`PeerError` for a refused request, a malformed answer, or one that ends early.
        """
        reader = FrameReader(len(cids), max_bytes)
        if self._raw is not None and RawHttp.supports(peer.url):
            async for item in self._stream_raw(peer, cids, reader):
                yield item
            return
        try:
            async with self._http.stream(
                "POST", f"{peer.url}/blocks", json={"cids": [c.text for c in cids]}, headers={"accept": MEDIA_TYPE}
            ) as response:
                if response.status_code != 200:
                    raise PeerError(f"peer {peer.peer_id} answered {response.status_code} for a batch of blocks")
                async for chunk in response.aiter_raw():
                    for payload in reader.feed(chunk):
                        yield reader.done - 1, payload
        except httpx.HTTPError as e:
            raise PeerError(f"peer {peer.peer_id} at {peer.url}: {type(e).__name__} {e}") from e
        if reader.done < len(cids):
            raise PeerError(f"peer {peer.peer_id} ended its answer after {reader.done} of {len(cids)} blocks")

    async def _stream_raw(
        self, peer: PeerInfo, cids: Sequence[Cid], reader: FrameReader
    ) -> AsyncIterator[tuple[int, bytes | memoryview | None]]:
        assert self._raw is not None
        body = json.dumps({"cids": [c.text for c in cids]}).encode()
        max_body = len(cids) * (HEADER_SIZE + reader.max_bytes)
        stream = self._raw.post_stream(
            f"{peer.url}/blocks", body, content_type="application/json", accept=MEDIA_TYPE, max_body=max_body
        )
        try:
            async for status, piece in stream:
                if status != 200:
                    raise PeerError(f"peer {peer.peer_id} answered {status} for a batch of blocks")
                for payload in reader.feed(piece):
                    yield reader.done - 1, payload
        finally:
            await stream.aclose()
        if reader.done < len(cids):
            raise PeerError(f"peer {peer.peer_id} ended its answer after {reader.done} of {len(cids)} blocks")
