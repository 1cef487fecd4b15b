"""``codex-node keygen FILE`` and ``codex-node account``: a node key, and what it holds on a chain.

::

    codex-node keygen FILE
    codex-node account --eth-provider URL (--eth-private-key FILE | --eth-account ADDRESS)
                       [--deployment FILE | --marketplace-address ADDRESS] [--json]
    codex-node account [--api-url URL] [--api-token FILE] [--json]      (asks the running node: GET /account)

``keygen`` writes a new secp256k1 key as 64 hex digits to FILE, created with mode 600 (``run --eth-private-key``
refuses anything looser), never over an existing file, and prints the key's address (the key itself is never
printed). ``account`` prints an address's gas balance and, given the marketplace (its token is read from the
contract), its token balance. Bad flags exit 2 naming the flag; an unreachable chain or node exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codex_node.config import add_options, given, option, resolve
from codex_node.errors import ChainError, CodexError, ConfigError

KEYGEN_FILE = "FILE"
ACCOUNT_FLAGS = ("--eth-provider", "--eth-private-key", "--eth-account", "--deployment", "--marketplace-address")


# --- keygen -------------------------------------------------------------------------------------------------------


def keygen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar=KEYGEN_FILE, help="where to write the new key (must not exist)")


def write_new_key(path: Path) -> str:
    """Create ``path`` (mode 600, refusing an existing file) holding a new key; return its address."""
    from eth_account import Account

    if path.is_dir():
        raise ConfigError(KEYGEN_FILE, f"{path} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(KEYGEN_FILE, f"directory {path.parent} does not exist")
    key = Account.create()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(KEYGEN_FILE, f"{path} already exists; keygen never overwrites a key") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, (key.key.hex().removeprefix("0x") + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(key.address)


def run_keygen(args: argparse.Namespace, _env: Mapping[str, str]) -> int:
    address = write_new_key(Path(args.file).expanduser().absolute())
    sys.stdout.write(address + "\n")
    return 0


# --- account ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountSettings:
    provider: str
    key_file: Path | None
    address: str | None
    deployment: Path | None
    marketplace: str | None


def account_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node.statuscmd import add_api_arguments

    add_options(parser, [option(flag) for flag in ACCOUNT_FLAGS])
    add_api_arguments(parser)


def account_settings(args: argparse.Namespace, env: Mapping[str, str]) -> AccountSettings | None:
    """The chain to read, or ``None`` when no ``--eth-provider`` was given (then the running node is asked)."""
    options = [option(flag) for flag in ACCOUNT_FLAGS]
    values = resolve(options, cli=given(args, options), env=env)
    provider = values.get("eth_provider")
    if not isinstance(provider, str):
        return None
    key_file = values.get("eth_private_key")
    address = values.get("eth_account")
    if key_file is not None and address is not None:
        raise ConfigError("--eth-account", "give either --eth-account or --eth-private-key, not both")
    if key_file is None and address is None:
        raise ConfigError("--eth-private-key", "give --eth-private-key FILE or --eth-account ADDRESS")
    deployment = values.get("deployment")
    marketplace = values.get("marketplace_address")
    if deployment is not None and marketplace is not None:
        raise ConfigError("--marketplace-address", "give either --deployment or --marketplace-address, not both")
    return AccountSettings(
        provider=provider,
        key_file=key_file if isinstance(key_file, Path) else None,
        address=address if isinstance(address, str) else None,
        deployment=deployment if isinstance(deployment, Path) else None,
        marketplace=marketplace if isinstance(marketplace, str) else None,
    )


async def read_account(s: AccountSettings) -> dict[str, Any]:
    """Address, gas balance and (with a marketplace) token balance, read from the chain."""
    from eth_utils.address import to_checksum_address

    from codex_node.market.deployment import Deployment, artifact
    from codex_node.market.provider import account, connect, one_line
    from codex_node.utils.redact import redact_text, redact_url

    who = account(s.key_file, s.address)
    address = to_checksum_address(who if isinstance(who, str) else who.address)
    try:
        async with connect(s.provider) as w3:
            out: dict[str, Any] = {"address": address, "chainId": int(await w3.eth.chain_id)}
            out["gasBalance"] = str(int(await w3.eth.get_balance(address)))
            marketplace = s.marketplace
            token: str | None = None
            if s.deployment is not None:
                d = Deployment.load(s.deployment)
                marketplace, token = d.marketplace, d.token
            if marketplace is not None and token is None:
                contract = w3.eth.contract(address=to_checksum_address(marketplace), abi=artifact("Marketplace")["abi"])
                token = to_checksum_address(await contract.functions.token().call())
            out["token"] = token
            if token is not None:
                erc20 = w3.eth.contract(address=to_checksum_address(token), abi=artifact("TestToken")["abi"])
                out["tokenBalance"] = str(int(await erc20.functions.balanceOf(address).call()))
            return out
    except CodexError:
        raise
    except Exception as e:  # a provider or contract failing: one line, no trace
        raise ChainError(f"reading {address} on {redact_url(s.provider)} failed: {redact_text(one_line(e))}") from e


def run_account(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = account_settings(args, env)
    if settings is None:
        from codex_node.statuscmd import api_from_args

        api = api_from_args(args, env)
        try:
            found: dict[str, Any] = api.get("/account")
        finally:
            api.close()
    else:
        from codex_node.logutils import configure_logging

        configure_logging("warn")
        found = asyncio.run(read_account(settings))
    if args.json:
        sys.stdout.write(json.dumps(found, indent=2) + "\n")
    else:
        width = max(len(k) for k in found)
        for key, value in found.items():
            if not isinstance(value, dict):
                sys.stdout.write(f"{key:<{width}}  {'—' if value is None else value}\n")
        for key, value in (found.get("totals") or {}).items():
            if not isinstance(value, dict):
                sys.stdout.write(f"{key:<{width}}  {value}\n")
    return 0
