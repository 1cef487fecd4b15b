"""An asyncio event loop in a daemon thread, so that synchronous tests (the integration suite) can run the async
test servers of this package (``rpcproxy.RpcProxy``, ``blockgate.BlockGate``) beside separate node processes.

::

    loop = BackgroundLoop()
    proxy = loop.run(RpcProxy(url).__aenter__())   # entered in the loop's thread
    loop.call(proxy.fail, "error")                 # every call that touches the proxy's asyncio state
    loop.close()                                   # stops the loop; the thread ends

Everything that touches a server's asyncio objects (events, the aiohttp runner) goes through :meth:`run` or
:meth:`call`: they run it in the loop's thread and wait, with a deadline, for its result.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

TIMEOUT = 30.0


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-background-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = TIMEOUT) -> T:
        """Run ``coro`` in the loop's thread; its result (or its exception) once it is done."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)`` in the loop's thread; its result."""

        async def wrapped() -> T:
            return fn(*args)

        return self.run(wrapped())

    def close(self) -> None:
        """Stop the loop and wait for its thread (idempotent)."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        self.loop.close()
