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

Parts that keep their counts as plain attributes (the stores, the prover, the embedded chain) expose them with
a :class:`LiveCollector` read at scrape time, registered with :func:`register` on the registry they are given:
each node has its own registry (``Node.registry``), passed to every part, so two nodes in one process never
share a series. ``registry=None`` registers nothing (unit tests build many parts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

import structlog
from prometheus_client import Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.core import Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
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


class LiveCollector(Collector):
    """Yields whatever ``read()`` returns at scrape time.

    The stores keep their counts as plain attributes (they need them anyway) and expose them through this
    instead of updating metric objects on every change, so nothing can drift and no hot path pays for metrics.
    """

    def __init__(self, read: Callable[[], Iterable[Metric]], names: Iterable[str]) -> None:
        self._read = read
        self._names = list(names)

    def collect(self) -> Iterable[Metric]:
        return list(self._read())

    def describe(self) -> Iterable[Metric]:
        # Lets the registry check name clashes without calling ``read`` at registration time.
        return [Metric(name, "", "untyped") for name in self._names]


def register(collector: Collector, registry: CollectorRegistry | None) -> Callable[[], None]:
    """Register ``collector`` on ``registry`` (``None``: nowhere); return a function that unregisters it (once)."""
    if registry is None:
        return lambda: None
    registry.register(collector)
    done = False

    def unregister() -> None:
        nonlocal done
        if not done:
            done = True
            registry.unregister(collector)

    return unregister


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
