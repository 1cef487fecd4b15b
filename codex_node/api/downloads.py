"""A cap on downloads served at once (``--api-max-downloads``); over it, 503 with ``Retry-After``.

Each download holds a small read-ahead buffer (``routes/data.py``: :data:`DOWNLOAD_READ_BLOCKS` blocks in hand,
as many being read, and a copy in the send buffer; 1.4 MiB measured) for as long as its client takes to read, and
a client may open a download and never read. The cap turns "memory grows with the number of connections" into a
fixed bound of about ``max_downloads × 3 × DOWNLOAD_READ_BLOCKS × 64 KiB`` (``benchmarks/download_memory.py``).

A plain ASGI middleware around ``GET /data/{cid}``: a download holds its place from the request until its
response has ended (or its client left), which a route handler could not see for a streamed response.

Metrics: ``codex_api_downloads_active`` (gauge) and ``codex_api_downloads_refused_total``.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from prometheus_client import Counter, Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from codex_node.api.errors import error_response

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5

DOWNLOADS_ACTIVE = Gauge("codex_api_downloads_active", "REST API downloads being served")
DOWNLOADS_REFUSED = Counter("codex_api_downloads_refused", "REST API downloads refused over --api-max-downloads")


class DownloadLimitMiddleware:
    """At most ``max_downloads`` requests for which ``is_download(scope)`` holds are served at once."""

    def __init__(self, app: ASGIApp, *, max_downloads: int, is_download: Callable[[Scope], bool]) -> None:
        if max_downloads < 1:
            raise ValueError("max_downloads must be at least 1")
        self.app = app
        self.max_downloads = max_downloads
        self.is_download = is_download
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_download(scope):
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_downloads:
            DOWNLOADS_REFUSED.inc()
            log.info("download refused: too many at once", active=self.active, max_downloads=self.max_downloads)
            response = error_response(
                503, f"{self.max_downloads} downloads are being served, the most this node allows; retry later"
            )
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            await response(scope, receive, send)
            return
        self.active += 1
        DOWNLOADS_ACTIVE.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            DOWNLOADS_ACTIVE.dec()
