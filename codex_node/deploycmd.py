"""``codex-node deploy``: deploy TestToken + Marketplace to a remote chain and print the deployment JSON.

::

    codex-node deploy --eth-provider URL (--eth-private-key FILE | --eth-account ADDRESS) [--output FILE]
                      [--fund ADDRESS]...

The account flags are the ``run`` command's (same parsing, same environment variables, same refusal of a key
file that group or others may read); ``--output`` also writes the JSON to a file that ``run --deployment``
reads. ``--fund ADDRESS`` (repeatable) then mints test tokens to each account and sends ether for gas from the
deployer to any holding less than 1 ether (Hardhat's dev accounts already hold 10,000), so a local marketplace
needs no other tool; one line per funded account goes to stderr. The marketplace gets the dev configuration
(:data:`~codex_node.market.deployment.DEV_CONFIG`). A young
dev chain (Hardhat) is first mined past block 256. Bad flags and an unreachable provider raise
:class:`ConfigError` (exit 2); failures of the chain raise :class:`ChainError` (exit 1); both are one line, never
a traceback, and show the provider URL redacted (``utils/redact.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codex_node.config import add_options, given, option, resolve
from codex_node.errors import ChainError, CodexError, ConfigError

if TYPE_CHECKING:
    from codex_node.market.deployment import Deployment, Funded

FLAGS = ("--eth-provider", "--eth-private-key", "--eth-account")
OUTPUT = "--output"
FUND = "--fund"


@dataclass(frozen=True)
class DeploySettings:
    provider: str
    key_file: Path | None
    account: str | None
    output: Path | None
    fund: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, [option(flag) for flag in FLAGS])
    parser.add_argument(
        OUTPUT, metavar="FILE", default=None, help="also write the deployment JSON to FILE (for run --deployment)"
    )
    parser.add_argument(
        FUND,
        metavar="ADDRESS",
        action="append",
        default=None,
        help="after deploying, mint test tokens to ADDRESS and send it 10 ether for gas if it holds less than 1 "
        "(repeatable; a local dev chain's accounts, so a marketplace needs no other tool)",
    )


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> DeploySettings:
    """The checked flags; raises :class:`ConfigError` naming the first bad one."""
    options = [option(flag) for flag in FLAGS]
    values = resolve(options, cli=given(args, options), env=env)
    provider = values.get("eth_provider")
    key_file = values.get("eth_private_key")
    account = values.get("eth_account")
    if not isinstance(provider, str):
        raise ConfigError("--eth-provider", "is required: the JSON-RPC URL of the chain to deploy to")
    if key_file is not None and account is not None:
        raise ConfigError("--eth-account", "give either --eth-account or --eth-private-key, not both")
    if key_file is None and account is None:
        raise ConfigError("--eth-private-key", "give --eth-private-key FILE or --eth-account ADDRESS (the deployer)")
    return DeploySettings(
        provider=provider,
        key_file=key_file if isinstance(key_file, Path) else None,
        account=account if isinstance(account, str) else None,
        output=_output_path(args.output),
        fund=_fund_accounts(args.fund),
    )


def _fund_accounts(given_: list[str] | None) -> tuple[str, ...]:
    """The checksummed ``--fund`` addresses, each once, in the order given."""
    parse = option("--eth-account").parse  # the same address check (and EIP-55 checksum) as the run command's
    accounts: list[str] = []
    for text in given_ or []:
        try:
            address = str(parse(text))
        except ValueError as e:
            raise ConfigError(FUND, str(e)) from None
        if address not in accounts:
            accounts.append(address)
    return tuple(accounts)


def _output_path(text: str | None) -> Path | None:
    if text is None:
        return None
    if not text.strip():
        raise ConfigError(OUTPUT, "is empty")
    path = Path(text).expanduser().absolute()
    if path.is_dir():
        raise ConfigError(OUTPUT, f"{path} is a directory")
    if not path.parent.is_dir():
        raise ConfigError(OUTPUT, f"directory {path.parent} does not exist")
    return path


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """The command: check the flags, deploy, print (and write) the deployment JSON."""
    from codex_node.logutils import configure_logging

    chosen = settings(args, env)
    configure_logging("warn")  # stderr: only warnings and the error line; stdout: only the JSON
    deployment, funded = asyncio.run(deploy_with(chosen))
    if chosen.output is not None:
        deployment.save(chosen.output)
    sys.stdout.write(deployment.to_json())
    for f in funded:
        ether = f" and {f.wei // 10**18} ether" if f.wei else ""
        sys.stderr.write(f"codex-node deploy: funded {f.account} with {f.tokens} test tokens{ether}\n")
    return 0


async def deploy_with(chosen: DeploySettings) -> tuple[Deployment, list[Funded]]:
    """Deploy with the chosen account, then fund the ``--fund`` accounts; any failure of the chain becomes a
    one-line :class:`ChainError`."""
    from codex_node.market.deployment import DEV_CONFIG, deploy, fund
    from codex_node.market.provider import account, connect, one_line
    from codex_node.utils.redact import redact_text, redact_url

    deployer = account(chosen.key_file, chosen.account)
    try:
        async with connect(chosen.provider) as w3:
            deployment = await deploy(w3, deployer, DEV_CONFIG)
            return deployment, [await fund(w3, deployment, deployer, a) for a in chosen.fund]
    except CodexError:
        raise
    except Exception as e:  # a provider failing outside a transaction (handshake, disconnect): one line, no trace
        raise ChainError(f"deploying to {redact_url(chosen.provider)} failed: {redact_text(one_line(e))}") from e
