"""A remote chain for ``run`` and ``deploy``: the JSON-RPC connection and the account the node acts as.

:func:`connect` yields an ``AsyncWeb3`` on ``--eth-provider`` (http(s) or ws(s)) once the node has answered, so an
unreachable provider is one :class:`~codex_node.errors.ChainError` line naming the flag, not a failure deep inside
the first real call. :func:`account` turns ``--eth-private-key FILE`` / ``--eth-account ADDRESS`` into what
the transaction senders take.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codex_node.config import read_private_key
from codex_node.errors import ChainError, ConfigError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3


@asynccontextmanager
async def connect(url: str, *, request_timeout: float = 30.0) -> AsyncIterator[AsyncWeb3[Any]]:
    """An AsyncWeb3 on ``url`` that has answered once, disconnected on exit."""
    from web3 import AsyncHTTPProvider, AsyncWeb3, WebSocketProvider

    if url.startswith(("ws://", "wss://")):
        async with AsyncWeb3(WebSocketProvider(url, request_timeout=request_timeout)) as ws:
            await _reachable(ws, url)
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
        await _reachable(http, url)
        yield http
    finally:
        await http.provider.disconnect()


async def _reachable(w3: AsyncWeb3[Any], url: str) -> None:
    try:
        await w3.eth.chain_id
    except Exception as e:  # web3 and aiohttp raise many unrelated types for an unreachable node
        raise ChainError(f"cannot reach --eth-provider {url}: {one_line(e)}") from e


def account(key_file: Path | None, address: str | None) -> LocalAccount | str:
    """The local account of ``key_file`` (signs here) or the checksummed ``address`` of an unlocked one."""
    if key_file is not None:
        from eth_account import Account

        try:
            local: LocalAccount = Account.from_key(read_private_key(key_file))
        except (OSError, ValueError) as e:
            raise ConfigError("--eth-private-key", str(e)) from None
        return local
    if address is None:
        raise ConfigError("--eth-private-key", "a remote chain needs --eth-private-key FILE or --eth-account ADDRESS")
    from eth_utils.address import to_checksum_address

    return to_checksum_address(address)


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
