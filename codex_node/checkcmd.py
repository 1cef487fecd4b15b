"""``codex-node check``: ask a running node to check itself and print what is wrong.

::

    codex-node check [--api-url URL] [--api-token FILE] [--read-blocks] [--json]

It reads ``GET /api/codex/v1/debug/check`` (``api/routes/check.py``): the books, the repo's quota against its
blocks (``--read-blocks``: every block read back from disk too), every hosted slot against the chain, and the
ledger against its totals. It prints one line per problem (or one ``ok`` line per part) and exits 0 when there is
none, 1 when there are problems or the node cannot be asked, 2 on bad flags. ``--api-token`` is the ``run``
command's flag (same file rules, same ``CODEX_API_TOKEN``).

The request is made with httpx directly: the typed client (``codex_node.client``) had not landed when this was
written; when it does, this module should use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from codex_node.config import add_options, given, option, read_api_token, resolve
from codex_node.errors import CodexError, ConfigError

API_URL = "--api-url"
DEFAULT_API_URL = "http://127.0.0.1:8080"
CHECK_PATH = "/api/codex/v1/debug/check"
TIMEOUT = 600.0
"""Seconds the node may take: reading every block back is as slow as reading the whole repo."""


@dataclass(frozen=True)
class CheckSettings:
    api_url: str
    token: bytes | None
    read_blocks: bool
    as_json: bool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        API_URL,
        metavar="URL",
        default=None,
        help=f"the node's REST API (default: {DEFAULT_API_URL}; env: CODEX_API_URL)",
    )
    add_options(parser, [option("--api-token")])
    parser.add_argument(
        "--read-blocks", action="store_true", help="also read every block back from disk (as slow as the repo is big)"
    )
    parser.add_argument("--json", action="store_true", help="print the node's answer as JSON")


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> CheckSettings:
    """The checked flags; raises :class:`ConfigError` naming the first bad one."""
    url = args.api_url if args.api_url is not None else env.get("CODEX_API_URL", DEFAULT_API_URL)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(API_URL, f"{url!r} is not an http(s) URL, e.g. {DEFAULT_API_URL}")
    options = [option("--api-token")]
    values = resolve(options, cli=given(args, options), env=env)
    token_file = values.get("api_token")
    token = read_api_token(token_file) if isinstance(token_file, Path) else None
    return CheckSettings(url.rstrip("/"), token, bool(args.read_blocks), bool(args.json))


def fetch(chosen: CheckSettings, transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """The node's check; raises :class:`CodexError` (one line) when the node cannot be asked."""
    headers = {} if chosen.token is None else {"Authorization": f"Bearer {chosen.token.decode()}"}
    params = {"readBlocks": "true"} if chosen.read_blocks else {}
    try:
        with httpx.Client(base_url=chosen.api_url, timeout=TIMEOUT, transport=transport) as client:
            response = client.get(CHECK_PATH, headers=headers, params=params)
    except httpx.HTTPError as e:
        raise CodexError(f"cannot reach the node at {chosen.api_url}: {e}") from None
    if response.status_code != 200:
        raise CodexError(f"the node answered {response.status_code}: {_error_text(response)}")
    try:
        body: dict[str, Any] = response.json()
        _ = [(p["name"], p["checked"], list(p["problems"])) for p in body["parts"]]
    except (ValueError, KeyError, TypeError):
        raise CodexError(f"the node at {chosen.api_url} did not answer a check (is it a codex-node?)") from None
    return body


def render(body: Mapping[str, Any]) -> list[str]:
    """One line per problem, prefixed by its part; an ``ok`` line for each sound part."""
    lines: list[str] = []
    for part in body["parts"]:
        if part["problems"]:
            lines.extend(f"PROBLEM {part['name']}: {problem}" for problem in part["problems"])
        else:
            lines.append(f"ok      {part['name']}: {part['checked']} checked")
    return lines


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    chosen = settings(args, env)
    body = fetch(chosen)
    if chosen.as_json:
        sys.stdout.write(json.dumps(body, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(render(body)) + "\n")
    return 0 if body.get("ok") is True else 1


def _error_text(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase
