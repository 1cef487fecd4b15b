"""``codex-node deploy``: deploy TestToken + Marketplace to a remote chain and print the deployment JSON.

::

    codex-node deploy --eth-provider URL (--eth-private-key FILE | --eth-account ADDRESS) [--output FILE]

The account flags are the ``run`` command's (same parsing, same environment variables, same refusal of a key
file that group or others may read); ``--output`` also writes the JSON to a file that ``run --deployment``
reads. The marketplace gets the dev configuration (:data:`~codex_node.market.deployment.DEV_CONFIG`). A young
dev chain (Hardhat) is first mined past block 256. Bad flags raise :class:`ConfigError` (exit 2); failures of
the chain raise :class:`ChainError` (exit 1); both are one line, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codex_node.config import option, read_private_key, resolve
from codex_node.errors import ChainError, CodexError, ConfigError

if TYPE_CHECKING:
    from web3 import AsyncWeb3

    from codex_node.market.deployment import Deployment

FLAGS = ("--eth-provider", "--eth-private-key", "--eth-account")
OUTPUT = "--output"


@dataclass(frozen=True)
class DeploySettings:
    provider: str
    key_file: Path | None
    account: str | None
    output: Path | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from codex_node.cli import add_options

    add_options(parser, [option(flag) for flag in FLAGS])
    parser.add_argument(
        OUTPUT, metavar="FILE", default=None, help="also write the deployment JSON to FILE (for run --deployment)"
    )


def settings(args: argparse.Namespace, env: Mapping[str, str]) -> DeploySettings:
    """The checked flags; raises :class:`ConfigError` naming the first bad one."""
    from codex_node.cli import given

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
    )


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
    deployment = asyncio.run(deploy_with(chosen))
    if chosen.output is not None:
        deployment.save(chosen.output)
    sys.stdout.write(deployment.to_json())
    return 0


@asynccontextmanager
async def connect(url: str, *, request_timeout: float = 30.0) -> AsyncIterator[AsyncWeb3[Any]]:
    """An AsyncWeb3 on ``url`` (http(s) or ws(s)), disconnected on exit."""
    from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider

    if url.startswith(("ws://", "wss://")):
        async with AsyncWeb3(WebSocketProvider(url, request_timeout=request_timeout)) as ws:
            yield ws
        return
    # Read-only requests are retried twice (0.4 s): a blip is survived, an unreachable node reported at once.
    from aiohttp import ClientError
    from web3.providers.rpc.utils import ExceptionRetryConfiguration

    retry = ExceptionRetryConfiguration(errors=(ClientError, TimeoutError), retries=2)
    http = AsyncWeb3(
        AsyncHTTPProvider(url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=retry)
    )
    try:
        yield http
    finally:
        await http.provider.disconnect()


async def deploy_with(chosen: DeploySettings) -> Deployment:
    """Deploy with the chosen account; any failure of the chain becomes a one-line :class:`ChainError`."""
    from eth_account import Account

    from codex_node.market.deployment import DEV_CONFIG, Deployer, deploy

    deployer: Deployer
    if chosen.key_file is not None:
        try:
            deployer = Account.from_key(read_private_key(chosen.key_file))
        except (OSError, ValueError) as e:
            raise ConfigError("--eth-private-key", str(e)) from None
    else:
        assert chosen.account is not None  # settings() requires one of the two
        deployer = chosen.account
    try:
        async with connect(chosen.provider) as w3:
            try:
                await w3.eth.chain_id
            except Exception as e:  # web3 and aiohttp raise many unrelated types for an unreachable node
                raise ChainError(f"cannot reach --eth-provider {chosen.provider}: {_one_line(e)}") from e
            return await deploy(w3, deployer, DEV_CONFIG)
    except CodexError:
        raise
    except Exception as e:  # a provider failing outside a transaction (handshake, disconnect): one line, no trace
        raise ChainError(f"deploying to {chosen.provider} failed: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
