"""The API's protective middleware, installed in one place (outermost first):

1. :class:`~codex_node.api.access.AccessMiddleware` — Host allowlist (421), Origin check (403), bearer token (401);
2. :class:`~codex_node.api.downloads.DownloadLimitMiddleware` — downloads at once (503 + ``Retry-After``);
3. :class:`~codex_node.api.bodylimit.BodyLimitMiddleware` — size (413) and nesting (400) of non-upload bodies.

The metrics endpoint gets the same access rules (its own bind address) through :func:`guard_metrics`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from starlette.types import ASGIApp, Scope

from codex_node.api.access import STATE_CHANGING, AccessMiddleware, AccessPolicy
from codex_node.api.bodylimit import BodyLimitMiddleware
from codex_node.api.downloads import DownloadLimitMiddleware
from codex_node.config import NodeConfig, read_api_token
from codex_node.errors import ConfigError


def install_guards(app: FastAPI, config: NodeConfig, *, prefix: str) -> None:
    """Add the middleware above to ``app``, whose routes live under ``prefix``. Call before outer middleware."""
    upload_path = f"{prefix}/data"
    download_path = re.compile(re.escape(prefix) + r"/data/[^/]+(/network/stream)?")
    block_paths = re.compile(re.escape(prefix) + r"/blocks(/[^/]+)?")

    def is_upload(scope: Scope) -> bool:
        return scope.get("method") == "POST" and scope.get("path") == upload_path

    def is_download(scope: Scope) -> bool:
        path = str(scope.get("path"))
        if block_paths.fullmatch(path) is not None:  # blocks served to peers count as downloads too
            return True
        return scope.get("method") in ("GET", "HEAD") and download_path.fullmatch(path) is not None

    app.add_middleware(BodyLimitMiddleware, streams=is_upload)
    app.add_middleware(DownloadLimitMiddleware, max_downloads=config.api_max_downloads, is_download=is_download)
    app.add_middleware(AccessMiddleware, policy=access_policy(config, config.api_bindaddr))


def guard_metrics(app: ASGIApp, config: NodeConfig) -> ASGIApp:
    """The metrics endpoint behind the API's access rules (Host, token), with its own bind address allowed."""
    return AccessMiddleware(app, access_policy(config, config.metrics_address))


def access_policy(config: NodeConfig, bind_address: str) -> AccessPolicy:
    """The policy of a server bound to ``bind_address``; reads the token file (:class:`ConfigError` if it went bad)."""
    token = None
    if config.api_token is not None:
        try:
            token = read_api_token(config.api_token)
        except (OSError, ValueError) as e:
            raise ConfigError("--api-token", str(e)) from None
    # The hosts of --api-announce-url: peers reach the node by the name its record announces.
    announced = [urlsplit(u).hostname or "" for u in config.api_announce_urls]
    hosts = [*config.api_allowed_hosts, *(f"[{h}]" if ":" in h else h for h in announced if h)]
    return AccessPolicy.build(bind_address, hosts, token)


_GUARD_RESPONSES = {
    "401": "No or wrong 'Authorization: Bearer <token>' (only when the node runs with --api-token)",
    "421": "The Host header names a host this node does not answer for (see --api-allowed-host)",
}
_CHANGE_RESPONSES = {"403": "Cross-origin request: the Origin header names a host that is not allowed"}
_BODY_RESPONSES = {"413": "Request body over 256 KiB (only uploads may be larger)"}


def document_guards(schema: dict[str, Any], *, upload_path: str, download_path: str) -> None:
    """Add the answers of the middleware above to every operation of an OpenAPI ``schema`` (in place)."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = dict(_GUARD_RESPONSES)
            if method.upper() in STATE_CHANGING:
                extra.update(_CHANGE_RESPONSES)
                if (path, method) != (upload_path, "post"):
                    extra.update(_BODY_RESPONSES)
            if (path, method) == (download_path, "get"):
                extra["503"] = "Too many downloads at once (--api-max-downloads); retry after Retry-After seconds"
            for status, description in extra.items():
                responses.setdefault(status, {"description": description})
            if (path, method) == (download_path, "get"):
                responses["503"]["headers"] = {
                    "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
                }
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["apiToken"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "Required only when the node runs with --api-token FILE (the token in that file)",
    }
    schema["security"] = [{}, {"apiToken": []}]
