"""Talking to one peer's block routes over HTTP, with bounded reads (the bytes are not verified here).

``GET {peer}/blocks/{cid}`` answers one block (a manifest, typically); ``POST {peer}/blocks`` a batch of frames
(``blockexchange/wire.py``). Every answer is hostile: a body longer than the caller's bound is cut off with a
:class:`~codex_node.errors.PeerError` before more than the bound is buffered, and every transport failure is a
``PeerError`` too, so the fetcher has one error to handle per peer. Verifying the bytes against their CIDs is the
fetcher's job.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx

from codex_node.blockexchange.wire import MEDIA_TYPE, FrameReader
from codex_node.data.cid import Cid
from codex_node.errors import PeerError
from codex_node.peers.port import PeerInfo
from codex_node.peers.wire import read_capped

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""The transport's own bound on any one read; the fetcher's stall detection (clock-driven) usually acts first."""


class PeerClient:
    """One pooled HTTP client for every peer. Call :meth:`close` when done."""

    def __init__(self, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT, max_connections: int = 64) -> None:
        self._http = httpx.AsyncClient(
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            trust_env=False,  # a peer on 127.0.0.1 must not go through a proxy from the environment
            headers={"Accept-Encoding": "identity"},  # raw bytes: blocks and frames are read with aiter_raw
        )

    async def close(self) -> None:
        await self._http.aclose()

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
    ) -> AsyncIterator[tuple[int, bytes | None]]:
        """``(index into cids, payload or None)`` for each frame as it arrives; payloads at most ``max_bytes``.

        Raises :class:`PeerError` for a refused request, a malformed answer, or one that ends early.
        """
        reader = FrameReader(len(cids), max_bytes)
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
