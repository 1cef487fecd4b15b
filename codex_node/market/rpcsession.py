"""web3's HTTP provider without the session lock that a cancelled request can leave taken for good.

web3.py (8.0 and earlier; its issue #3867, fix proposed in PR #3872) guards the aiohttp session cache of every
``AsyncHTTPProvider`` with one ``threading.Lock`` shared by the whole process, taken on every request by running
``lock.acquire`` in a thread pool. A request cancelled while that acquire waits (an ``asyncio.wait_for`` timing out:
the health probe's, a sale's) leaves the pool thread to take the lock after the request is gone, and nothing ever
releases it: from then on every HTTP request of the process waits forever. Under load the node met exactly that:
every RPC call hung, ``/health`` said "chain unreachable", and sales stopped (seen in the integration suite, about
one run in three with three suites in parallel; the stuck threads sat in ``lock.acquire``).

:class:`LoopSessionManager` keeps web3's session cache but finds or makes the session without any lock: it runs on
the node's one event loop and never awaits between looking the session up and storing it, so no other request can
interleave. Use :func:`http_provider` instead of ``AsyncHTTPProvider(...)``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector
from web3 import AsyncHTTPProvider
from web3._utils.http_session_manager import HTTPSessionManager

if TYPE_CHECKING:
    from eth_typing import URI


class LoopSessionManager(HTTPSessionManager):
    """web3's session manager, lock-free on one event loop (module docstring)."""

    async def async_cache_and_return_session(
        self,
        endpoint_uri: URI,
        session: ClientSession | None = None,
        request_timeout: ClientTimeout | None = None,
    ) -> ClientSession:
        key = f"{id(asyncio.get_running_loop())}:{endpoint_uri}"  # only this class reads the cache
        cached: ClientSession | None = self.session_cache.get_cache_entry(key)
        if cached is not None and not cached.closed and not cached._loop.is_closed():
            return cached
        fresh = session or ClientSession(
            raise_for_status=True, connector=TCPConnector(force_close=True, enable_cleanup_closed=True)
        )
        self.session_cache.pop(key)
        _, evicted = self.session_cache.cache(key, fresh)
        stale = [s for s in [cached, *(evicted or {}).values()] if s is not None and not s.closed]
        for old in stale:  # after the new session is in place: closing may await
            await old.close()
        return fresh


def http_provider(url: str, **kwargs: Any) -> AsyncHTTPProvider:
    """An ``AsyncHTTPProvider`` on ``url`` (``kwargs`` as web3 takes them) using :class:`LoopSessionManager`."""
    provider = AsyncHTTPProvider(url, **kwargs)
    provider._request_session_manager = LoopSessionManager()
    return provider
