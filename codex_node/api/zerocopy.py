"""Sending stored blocks with zero-copy (``sendfile``) when the ASGI server offers it.

ASGI's zero-copy send extension (``http.response.zerocopysend``: the server lists it in ``scope["extensions"]``
and then accepts ``{"type": "http.response.zerocopysend", "file": <file object>, "offset", "count",
"more_body"}``) lets a server pass a region of a file to ``sendfile``: a block goes from the page cache to the
socket without entering the process. Blocks sit inside pack files, so only a send of a file *region* fits; the
path-based ``http.response.pathsend`` (whole files: starlette's ``FileResponse`` uses it) does not.

uvicorn implements neither extension (its sendfile pull request, encode/uvicorn#1210, was closed unmerged; a
pathsend one is a draft), so under ``codex-node run`` downloads use positioned reads (``RepoStore.iter_dataset``).
:class:`ZeroCopyResponse` is used only when the server says it can; ``docs/packs.md`` has the details.

A file stays open until the server's ``send`` of its last region returned. This module never reads block bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import structlog
from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from codex_node.stores.blockfiles import Spans

log = structlog.get_logger(__name__)

ZEROCOPY = "http.response.zerocopysend"


def offers_zerocopy(scope: Scope) -> bool:
    """Whether the server serving ``scope`` accepts zero-copy sends."""
    return scope.get("type") == "http" and ZEROCOPY in (scope.get("extensions") or {})


class ZeroCopyResponse(Response):
    """A response of ``content_length`` bytes sent as the file regions ``runs`` yields (each closed once sent)."""

    def __init__(
        self,
        runs: AsyncIterator[Spans],
        *,
        content_length: int,
        media_type: str,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.runs = runs
        self.status_code = 200
        self.media_type = media_type
        self.background = background
        self.init_headers({**(headers or {}), "Content-Length": str(content_length)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for spans in self.runs:
                try:
                    for file, offset, count in spans.spans:
                        message = {"type": ZEROCOPY, "file": file, "offset": offset, "count": count}
                        await send({**message, "more_body": True})
                finally:
                    spans.close()
        except Exception:
            # The status line is already sent: all we can do is cut the response short and say why in the log.
            log.exception("zero-copy download failed midway")
            raise
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()
