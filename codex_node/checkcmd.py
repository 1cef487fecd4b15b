"""``codex-node check``: ask a running node to check itself and print what is wrong.

::

    codex-node check [--api-url URL] [--api-token FILE] [--timeout SECONDS] [--read-blocks] [--json]

It reads ``GET /api/codex/v1/debug/check`` (``api/routes/check.py``) through :mod:`codex_node.client`: the books,
the repo's quota against its blocks (``--read-blocks``: every block read back from disk and checked too), every
hosted slot against the chain, and the ledger against its totals. It prints one line per problem (or one ``ok``
line per part) and exits 0 when there is none, 1 when there are problems or the node cannot be asked, 2 on bad
flags. The connection flags are the client commands' (``clientcli.py``); ``--api-url`` may name the API prefix
(as ``upload`` and ``download`` do) or not (``http://127.0.0.1:8080``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from codex_node import clientcli

if TYPE_CHECKING:
    from codex_node.client import CodexClient, NodeCheck

API_PREFIX = "/api/codex/v1"
TIMEOUT = 600.0
"""Default seconds to wait for the node's answer: reading every block back is as slow as reading the repo."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    clientcli.add_connection_arguments(parser)
    parser.set_defaults(timeout=TIMEOUT)
    parser.add_argument(
        "--read-blocks",
        action="store_true",
        help="also read every block back from disk and check it (as slow as the repo is big)",
    )
    parser.add_argument("--json", action="store_true", help="print the node's answer as JSON")


def connect(args: argparse.Namespace, env: Mapping[str, str]) -> CodexClient:
    """The client of the connection flags; the URL gets the API prefix when it lacks one."""
    url = args.api_url or env.get(clientcli.API_URL_ENV)
    if url:
        url = url.rstrip("/")
        args.api_url = url if url.endswith(API_PREFIX) else url + API_PREFIX
    return clientcli.connect(args, env)


def render(check: NodeCheck) -> list[str]:
    """One line per problem, prefixed by its part; an ``ok`` line for each sound part."""
    lines: list[str] = []
    for part in check.parts:
        if part.problems:
            lines.extend(f"PROBLEM {part.name}: {problem}" for problem in part.problems)
        else:
            lines.append(f"ok      {part.name}: {part.checked} checked")
    return lines


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    with connect(args, env) as client:
        check = client.debug_check(verify=args.read_blocks)
    if args.json:
        sys.stdout.write(json.dumps(check.model_dump(mode="json", by_alias=True), indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(render(check)) + "\n")
    return 0 if check.ok else 1
