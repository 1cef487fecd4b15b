"""``codex-node status``: one screen about a running node, read from its API.

::

    codex-node status [--api-url URL] [--api-token FILE] [--json]

Node (id, version, readiness and its failing checks), chain (id, head, caught up), account (address, balances,
earnings; when the node has ``GET /account``), storage (quota used/reserved/free, disk free), sales by state (live
agents and the history's outcomes) and the active alerts. A table for people; ``--json`` prints one object with
the same sections for scripts. Exit 0 when the node is ready, 1 when it is not or cannot be reached (one line on
stderr), 2 for bad flags.

:class:`NodeApi` is the small HTTP reader these commands share (``codex_node.client``, the typed client, is not on
this branch yet); it sends the bearer token of ``--api-token`` and turns every failure into :class:`NodeApiError`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from codex_node.config import read_api_token
from codex_node.errors import ConfigError, NodeApiError
from codex_node.utils.redact import redact_url

API_PREFIX = "/api/codex/v1"
DEFAULT_API_URL = "http://127.0.0.1:8080"
TIMEOUT = 10.0


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        metavar="URL",
        default=None,
        help=f"the running node's API (default: $CODEX_API_URL or {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--api-token",
        metavar="FILE",
        default=None,
        help="file holding the node's --api-token (default: $CODEX_API_TOKEN); refused if group or others may read it",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


class NodeApi:
    """GETs from a running node's API (JSON), with its bearer token."""

    def __init__(self, url: str, token: bytes | None = None, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/").removesuffix(API_PREFIX)  # the upload/download commands' form names the prefix
        headers = {"Authorization": f"Bearer {token.decode()}"} if token is not None else {}
        self._client = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=TIMEOUT, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, *, accept: tuple[int, ...] = ()) -> Any:
        """The JSON of ``GET path``; ``None`` for a status in ``accept`` that is not 2xx."""
        try:
            response = self._client.get(path)
        except httpx.HTTPError as e:
            raise NodeApiError(f"cannot reach the node at {redact_url(self.url)}: {type(e).__name__}: {e}") from None
        if response.status_code in accept and response.status_code >= 300:
            return None
        if response.status_code == 401:
            raise NodeApiError("the node wants its API token: give --api-token FILE")
        if response.status_code >= 400 and not (response.status_code == 503 and path == "/health"):
            raise NodeApiError(f"GET {path}: HTTP {response.status_code}: {_error_text(response)}")
        try:
            return response.json()
        except ValueError:
            raise NodeApiError(f"GET {path}: the answer is not JSON") from None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)[:200]


def api_from_args(args: argparse.Namespace, env: Mapping[str, str]) -> NodeApi:
    url = args.api_url or env.get("CODEX_API_URL") or DEFAULT_API_URL
    if not url.startswith(("http://", "https://")):
        raise ConfigError("--api-url", f"{url!r} is not an http(s) URL")
    token_file = args.api_token or env.get("CODEX_API_TOKEN")
    token = None
    if token_file:
        try:
            token = read_api_token(Path(token_file))
        except (OSError, ValueError) as e:
            raise ConfigError("--api-token", str(e)) from None
    return NodeApi(url, token)


# --- status -------------------------------------------------------------------------------------------------------


def gather(api: NodeApi) -> dict[str, Any]:
    """Every section of the status screen, from the node's API."""
    info = api.get("/debug/info")
    health = api.get("/health")
    space = api.get("/space")
    alerts = api.get("/alerts", accept=(404, 503))
    account = api.get("/account", accept=(404, 503))
    states = api.get("/sales/states", accept=(404, 503))
    chain = info.get("chain") or None
    checks = {c["name"]: c for c in health.get("checks", [])}
    return {
        "node": {
            "id": info.get("id"),
            "peerId": info.get("peerId") or None,
            "peers": len((info.get("table") or {}).get("nodes") or []),
            "version": info.get("codex", {}).get("version"),
            "marketplace": info.get("marketplace"),
            "ready": health.get("ready"),
            "failing": [f"{c['name']}: {c['detail']}" for c in health.get("checks", []) if not c["ok"]],
        },
        "chain": None
        if chain is None
        else {
            "chainId": chain.get("chainId"),
            "marketplace": chain.get("marketplaceAddress"),
            "head": checks.get("chain", {}).get("detail"),
            "caughtUp": checks.get("events", {}).get("ok"),
        },
        "account": account,
        "storage": {
            "quotaMaxBytes": space["quotaMaxBytes"],
            "quotaUsedBytes": space["quotaUsedBytes"],
            "quotaReservedBytes": space["quotaReservedBytes"],
            "quotaFreeBytes": space["quotaMaxBytes"] - space["quotaUsedBytes"] - space["quotaReservedBytes"],
            "diskFree": checks.get("disk", {}).get("detail"),
        },
        "sales": states,
        "alerts": [] if alerts is None else alerts.get("active", []),
    }


def render(status: dict[str, Any]) -> str:
    """The status as an aligned table, one section after the other."""
    from codex_node.units import format_size

    rows: list[tuple[str, str, str]] = []

    def add(section: str, key: str, value: object) -> None:
        rows.append((section, key, "—" if value is None else str(value)))

    node = status["node"]
    add("node", "id", node["id"])
    add("node", "peer id", node.get("peerId"))
    add("node", "peers known", node.get("peers"))
    add("node", "version", node["version"])
    add("node", "ready", "yes" if node["ready"] else "NO: " + "; ".join(node["failing"]))
    chain = status["chain"]
    if chain is None:
        add("chain", "marketplace", "none (--no-marketplace)")
    else:
        add("chain", "chain id", chain["chainId"])
        add("chain", "head", chain["head"])
        add("chain", "caught up", {True: "yes", False: "no", None: "—"}[chain["caughtUp"]])
    account = status["account"]
    if account is None:
        add("account", "", "not available on this node")
    else:
        for key in ("address", "tokenBalance", "gasBalance", "collateralLocked", "collateralPromised"):
            add("account", key, account.get(key))
        totals = account.get("totals") or {}
        add("account", "earned", totals.get("earned"))
        add("account", "lost", totals.get("lost"))
    storage = status["storage"]
    for key in ("quotaMaxBytes", "quotaUsedBytes", "quotaReservedBytes", "quotaFreeBytes"):
        add("storage", key.removeprefix("quota").removesuffix("Bytes").lower(), format_size(storage[key]))
    add("storage", "disk", storage["diskFree"])
    sales = status["sales"]
    if sales is None:
        add("sales", "", "no marketplace")
    else:
        live = ", ".join(f"{k} {v}" for k, v in sorted(sales["agents"].items())) or "none"
        add("sales", "live agents", live)
        add("sales", "history", ", ".join(f"{k} {v}" for k, v in sales["outcomes"].items()) or "none")
    if not status["alerts"]:
        add("alerts", "", "none")
    for a in status["alerts"]:
        add("alerts", a["severity"], f"{a['key']}: {a['message']}")
    width0 = max(len(r[0]) for r in rows)
    width1 = max(len(r[1]) for r in rows)
    lines = []
    previous = ""
    for section, key, value in rows:
        shown = section if section != previous else ""
        previous = section
        lines.append(f"{shown:<{width0}}  {key:<{width1}}  {value}")
    return "\n".join(lines) + "\n"


def run_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    api = api_from_args(args, env)
    try:
        status = gather(api)
    finally:
        api.close()
    sys.stdout.write(json.dumps(status, indent=2) + "\n" if args.json else render(status))
    return 0 if status["node"]["ready"] else 1
