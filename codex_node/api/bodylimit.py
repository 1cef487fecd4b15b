"""Request bodies other than uploads: at most :data:`MAX_BODY` bytes and :data:`MAX_DEPTH` levels of nesting.

Every route but the upload takes a small JSON body (or none). This ASGI middleware reads such a body before the
app does, so no route can be reached with a body that could hurt the process:

* over :data:`MAX_BODY` bytes: **413** as soon as the ``Content-Length`` says so, or, for a chunked body, as soon
  as the bytes read pass the limit; the rest is never read, so memory stays bounded whatever the client sends;
* nested deeper than :data:`MAX_DEPTH` (``[[[[…`` or ``{"a":{"a":…``): **400**. Python's JSON parser recurses in
  C once per level, and the Ethereum libraries the node imports raise the recursion limit to 100,000, so a
  200 KB body nested 100,000 deep would overflow the C stack and kill the process without a line of log.
  The depth is measured here without recursion, before any parser sees the bytes.

Uploads (``POST /data``) stream gigabytes and are exempt; the store bounds what they may hold (the quota).
The body, once accepted, is handed to the app unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codex_node.api.errors import error_response
from codex_node.utils.jsondepth import nesting_exceeds

log = structlog.get_logger(__name__)

MAX_BODY = 256 * 1024
"""Bytes of a non-upload request body; the largest real one (an availability) is a few hundred bytes."""

MAX_DEPTH = 32
"""Levels of JSON nesting; the API's bodies use two."""

__all__ = ["MAX_BODY", "MAX_DEPTH", "BodyLimitMiddleware", "nesting_exceeds"]


class BodyLimitMiddleware:
    """Reads non-streaming request bodies whole (bounded) and checks their nesting before the app runs.

    ``streams(scope)`` says which requests are exempt (the upload route).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        streams: Callable[[Scope], bool],
        max_body: int = MAX_BODY,
        max_depth: int = MAX_DEPTH,
    ) -> None:
        self.app = app
        self.streams = streams
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.streams(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._too_large(scope, receive, send, declared)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body: nobody to answer
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.max_body:
                await self._too_large(scope, receive, send, None)
                return
        if body and nesting_exceeds(bytes(body), self.max_depth):
            log.info("request refused", method=scope.get("method"), path=scope.get("path"), status=400)
            refusal = error_response(400, f"request body nested deeper than {self.max_depth} levels")
            await refusal(scope, receive, send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, declared: int | None) -> None:
        log.info("request refused", method=scope.get("method"), path=scope.get("path"), status=413, bytes=declared)
        response = error_response(413, f"request body over {self.max_body} bytes (only uploads to /data may be larger)")
        response.headers["Connection"] = "close"  # the rest of the body is never read
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if bytes(name).lower() == b"content-length":
            text = bytes(value).strip()
            return int(text) if text.isdigit() else None  # the HTTP server refuses malformed lengths itself
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then whatever the client sends next (its disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
