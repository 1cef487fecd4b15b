"""A remote chain for ``run`` and ``deploy``: the JSON-RPC connection and the account the node acts as.

:func:`connect` yields an ``AsyncWeb3`` on ``--eth-provider`` (http(s) or ws(s)) once the node has answered, so an
unreachable provider is one :class:`~codex_node.errors.ConfigError` line naming the flag (the CLI exits 2, as for
a taken port), not a failure deep inside the first real call. The URL may carry a credential (``user:password@``,
an API key in the path or query): it is registered with ``utils/redact.py`` before web3 sees it, and every message
here shows it redacted. :func:`account` turns ``--eth-private-key FILE`` / ``--eth-account ADDRESS`` into what
the transaction senders take.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codex_node.config import read_private_key
from codex_node.errors import ConfigError
from codex_node.utils.redact import redact_text, redact_url, register_url

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import AsyncWeb3


@asynccontextmanager
async def connect(url: str, *, request_timeout: float = 30.0) -> AsyncIterator[AsyncWeb3[Any]]:
    """An AsyncWeb3 on ``url`` that has answered once, disconnected on exit."""
    from web3 import AsyncWeb3, WebSocketProvider

    from codex_node.market.rpcsession import http_provider

    register_url(url)  # web3 logs the URL with each request at debug level, and aiohttp puts it in its errors
    if url.startswith(("ws://", "wss://")):
        async with AsyncExitStack() as stack:
            try:
                ws = await stack.enter_async_context(
                    AsyncWeb3(WebSocketProvider(url, request_timeout=request_timeout, max_connection_retries=2))
                )
            except Exception as e:  # the handshake: web3 wraps the OS error in its own type
                raise _unreachable(url, e) from e
            await _reachable(ws, url)
            yield ws
        return
    # Read-only requests are retried twice (0.4 s): a blip is survived, an unreachable node reported at once.
    from aiohttp import ClientError
    from web3.providers.rpc.utils import ExceptionRetryConfiguration

    retry = ExceptionRetryConfiguration(errors=(ClientError, TimeoutError), retries=2)
    http = AsyncWeb3(
        http_provider(url, request_kwargs={"timeout": request_timeout}, exception_retry_configuration=retry)
    )
    try:
        await _reachable(http, url)
        yield http
    finally:
        await http.provider.disconnect()


async def check_reachable(url: str, *, request_timeout: float = 10.0) -> None:
    """Raise :class:`ConfigError` (``--eth-provider``) unless the node at ``url`` answers a request."""
    async with connect(url, request_timeout=request_timeout):
        pass


async def _reachable(w3: AsyncWeb3[Any], url: str) -> None:
    try:
        await w3.eth.chain_id
    except Exception as e:  # web3 and aiohttp raise many unrelated types for an unreachable node
        raise _unreachable(url, e) from e


def _unreachable(url: str, e: BaseException) -> ConfigError:
    return ConfigError("--eth-provider", f"cannot reach {redact_url(url)}: {unreachable_reason(e)}")


def unreachable_reason(e: BaseException) -> str:
    """Why a connection failed, in a few words: the OS error under the library's wrappers when there is one."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) == errno.ECONNREFUSED:
            return "connection refused (is the node running, and on that port?)"
        if isinstance(seen, TimeoutError):
            return "no answer in time"
        if isinstance(seen, OSError) and seen.strerror:
            return redact_text(seen.strerror.lower())
        seen = seen.__cause__ or seen.__context__
    return redact_text(one_line(e))


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
