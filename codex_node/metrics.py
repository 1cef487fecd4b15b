"""Prometheus metrics of the API and the ``/metrics`` endpoint.

The endpoint is served on its own address and port (``--metrics-address``/``--metrics-port``, default
127.0.0.1:8008, as nim-codex), never on the API port: an operator may publish the API and keep metrics private.
It exposes everything registered on the process-wide registry: the process and platform collectors of
``prometheus_client``, the collectors each part registers for itself (repo store, maintenance, sales …), and
the HTTP metrics below, which are always counted (cheap) whether or not the endpoint is served.

* ``codex_api_requests_total{method, route, status}`` — requests by route template (``/api/codex/v1/data/{cid}``,
  or ``unmatched`` for paths no route serves, so label values stay bounded).
* ``codex_api_request_duration_seconds{method, route}`` — time until the response ended (downloads included).
* ``codex_node_info{version, revision}`` — always 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from prometheus_client import Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.registry import REGISTRY, CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codex_node import buildinfo

log = structlog.get_logger(__name__)

UNMATCHED = "unmatched"

HTTP_REQUESTS = Counter(
    "codex_api_requests", "REST API requests by route template and status", ("method", "route", "status")
)
HTTP_DURATION = Histogram(
    "codex_api_request_duration_seconds", "REST API request duration until the response ended", ("method", "route")
)
NODE_INFO = Gauge("codex_node_info", "Build of this node (always 1)", ("version", "revision"))


def record_node_info() -> None:
    NODE_INFO.labels(buildinfo.version(), buildinfo.revision()).set(1)


class HttpMetricsMiddleware:
    """ASGI middleware counting requests by route template and status.

    A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``) so streamed bodies pass through untouched.
    ``templates`` maps a route object's ``id`` to its full path when the router was mounted under a prefix:
    FastAPI puts the router's own route object, whose path lacks the prefix, in ``scope["route"]``.
    """

    def __init__(self, app: ASGIApp, templates: Mapping[int, str]) -> None:
        self.app = app
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            template = self.templates.get(id(route)) or getattr(route, "path", None) or UNMATCHED
            elapsed = time.perf_counter() - start
            method = str(scope.get("method", ""))
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_DURATION.labels(method, template).observe(elapsed)
            log.debug("http request", method=method, route=template, status=status, ms=round(elapsed * 1000, 1))


def metrics_app(registry: CollectorRegistry = REGISTRY) -> ASGIApp:
    """The ``/metrics`` endpoint (404 elsewhere)."""
    exporter = make_asgi_app(registry)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/metrics":
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"not found: metrics are at /metrics\n"})
            return
        await exporter(scope, receive, send)

    return app
