"""Who may talk to the API: a Host allowlist, an Origin check on state-changing requests, an optional bearer token.

A web page the operator visits can send requests to ``127.0.0.1:8080`` (a "simple" POST needs no CORS preflight),
and through DNS rebinding a page's own host name can resolve to the node, so the API must not trust a request just
because it reaches the socket:

* ``Host`` must be a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``), the address the server is bound to,
  or a name the operator allowed (``--api-allowed-host``; ``*`` allows any). Anything else: **421**.
* A POST, PUT, PATCH or DELETE with an ``Origin`` header whose host is not allowed by the same list: **403**.
  Browsers send ``Origin`` on such requests; other clients (curl, the node's own client) send none.
* With ``--api-token FILE``, every request must carry ``Authorization: Bearer <token>``: **401** otherwise.
  Compared in constant time; the token is never logged, and neither is what a client sent. The API's documents
  (Swagger UI and ReDoc pages and assets, the schema) are public and need no token, and so are the routes
  peers use (:data:`OPEN_PEER_ROUTES`), which serve only bytes a peer verifies itself.

The checks are a plain ASGI middleware, outside the routes (and outside the body limit), so a refused request
reads no body and touches no part of the node. Pure decisions (:func:`host_allowed`, :func:`origin_allowed`,
:func:`token_matches`) are tested on their own.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from codex_node.api.errors import error_response

log = structlog.get_logger(__name__)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PUBLIC_PATHS = frozenset({"/docs", "/redoc", "/openapi.json", "/dashboard", "/api/codex/v1/health"})
"""Documents anyone may read (no token): Swagger UI, its assets under ``/docs/``, ReDoc, and the schema; the
dashboard's page and assets under ``/dashboard/`` (they hold no data: the page asks the API, with the token); and
the health route (container health checks carry no token; ``api/routes/health.py``)."""
OPEN_PEER_ROUTES = (
    "/api/codex/v1/blocks",
    "/api/codex/v1/peerid",
    "/api/codex/v1/spr",
    "/api/codex/v1/peers",
    "/api/codex/v1/have",
)
"""THE one list of routes other peers reach without the API token (a path equal to one, or under it). Each serves
only content-addressed, verifiable bytes or signed records: ``/blocks`` and ``/blocks/{cid}`` hand out blocks by
CID, which the asker checks against the CID (``api/routes/blocks.py``); ``/peerid``, ``/spr``, ``/peers`` (peer
exchange) and ``/have`` serve the node's public identity, signed peer records and which CIDs it holds
(``api/routes/peers.py``). The Host rules still apply (a peer reaching the node by name needs that name in
``--api-allowed-host`` or ``--api-announce-url``)."""


@dataclass(frozen=True)
class AccessPolicy:
    """What the API accepts. ``hosts`` are lower-case names without a port, IPv6 addresses in brackets."""

    hosts: frozenset[str]
    token: bytes | None = None
    any_host: bool = False

    @classmethod
    def build(cls, bind_address: str, allowed: Iterable[str] = (), token: bytes | None = None) -> AccessPolicy:
        """Loopback names, the bind address (unless it is the any-address) and ``allowed``."""
        hosts = set(LOOPBACK_HOSTS)
        address = ipaddress.ip_address(bind_address)
        if not address.is_unspecified:
            hosts.add(f"[{address}]" if address.version == 6 else str(address))
        extra = {h.lower() for h in allowed}
        return cls(hosts=frozenset(hosts | (extra - {"*"})), token=token, any_host="*" in extra)


def split_host(value: str) -> str | None:
    """The host of a ``Host`` header value (``name[:port]``, ``[v6][:port]``), lower-cased; ``None`` if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not _is_port_suffix(value[end + 1 :])):
            return None
        return value[: end + 1]
    name, sep, port = value.partition(":")
    if sep and not port.isdigit():
        return None
    return name or None


def _is_port_suffix(text: str) -> bool:
    return text.startswith(":") and text[1:].isdigit()


def host_allowed(policy: AccessPolicy, host_header: str | None) -> bool:
    if policy.any_host:
        return True
    if host_header is None:
        return False  # HTTP/1.1 requires Host; a request without one is not from a browser we could reason about
    host = split_host(host_header)
    return host is not None and host in policy.hosts


def origin_allowed(policy: AccessPolicy, origin: str | None) -> bool:
    """No ``Origin`` (not a browser) is allowed; ``null`` (sandboxed pages, files) and unknown hosts are not."""
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return host_allowed(policy, parts.netloc)


def token_matches(expected: bytes, authorization: str | None) -> bool:
    """Whether ``authorization`` is ``Bearer <expected>``, compared in constant time."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8", errors="replace"), expected)


def _is_public(path: str) -> bool:
    if path in PUBLIC_PATHS or path.startswith(("/docs/", "/dashboard/")):
        return True
    return any(path == route or path.startswith(route + "/") for route in OPEN_PEER_ROUTES)


class AccessMiddleware:
    """Refuses requests the :class:`AccessPolicy` does not allow, before the app sees them."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, message = refusal
        log.info("request refused", method=scope.get("method"), path=scope.get("path"), status=status)
        response = error_response(status, message)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="codex-node"'
        await response(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = _headers(scope)
        if not host_allowed(self.policy, headers.get("host")):
            return 421, ("this node does not answer for that Host; the operator can allow it with --api-allowed-host")
        method = str(scope.get("method", ""))
        if method in STATE_CHANGING and not origin_allowed(self.policy, headers.get("origin")):
            return 403, "cross-origin requests that change state are refused (Origin is not an allowed host)"
        token = self.policy.token
        needs_token = token is not None and not _is_public(str(scope.get("path", "")))
        if needs_token and not token_matches(token or b"", headers.get("authorization")):
            return 401, "this node requires 'Authorization: Bearer <token>' (the token of --api-token)"
        return None


def _headers(scope: Scope) -> dict[str, str]:
    """The headers this module reads; a repeated one counts as its first value."""
    wanted = {b"host", b"origin", b"authorization"}
    out: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = bytes(name).lower()
        if key in wanted and key.decode() not in out:
            out[key.decode()] = bytes(value).decode("latin-1")
    return out
