"""A loopback JSON-RPC proxy that can be switched to failing, for the chain-outage tests.

::

    async with RpcProxy(upstream_url) as proxy:    # serves on http://127.0.0.1:<port>
        proxy.fail("error")                        # every request answered 500 ...
        proxy.fail("hang")                         # ... or held unanswered (the client times out)
        proxy.fail("error", after="eth_sendRawTransaction")   # forward that one, then fail
        proxy.recover()                            # forward again
        proxy.forwarded["eth_sendRawTransaction"]  # requests that reached the chain, by method
        proxy.refused                              # requests failed while down

It runs in the test's event loop (aiohttp), forwards each POST body unchanged and returns the upstream answer.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from types import TracebackType
from typing import Literal

from aiohttp import ClientSession, ClientTimeout, web

from tests.harness.loopback import serve

Mode = Literal["pass", "error", "hang"]


class RpcProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode: Mode = "pass"
        self._after: str | None = None
        self._after_mode: Mode = "pass"
        self.forwarded: Counter[str] = Counter()
        self.refused = 0
        self._recovered = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail(self, mode: Mode, *, after: str | None = None) -> None:
        """Fail every request from now on (or from the answer to the next ``after`` request on)."""
        self._recovered.clear()
        if after is None:
            self.mode = mode
        else:
            self._after, self._after_mode = after, mode

    def recover(self) -> None:
        self.mode, self._after = "pass", None
        self._recovered.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.mode == "error":
            self.refused += 1
            return web.Response(status=500, text="upstream unavailable")
        if self.mode == "hang":
            self.refused += 1
            await self._recovered.wait()  # the client gave up long before: its connection is gone
            return web.Response(status=503)
        method = _method(body)
        assert self._session is not None
        async with self._session.post(self.upstream, data=body, headers={"content-type": "application/json"}) as up:
            answer = await up.read()
            status = up.status
        self.forwarded[method] += 1
        if self._after is not None and method == self._after:
            self.mode, self._after = self._after_mode, None
        return web.Response(body=answer, status=status, content_type="application/json")

    async def __aenter__(self) -> RpcProxy:
        self._session = ClientSession(timeout=ClientTimeout(total=30))
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._recovered.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


def _method(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return "?"
    return str(doc.get("method", "?")) if isinstance(doc, dict) else "batch"
