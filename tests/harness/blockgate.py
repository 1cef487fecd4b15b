"""A loopback reverse proxy in front of a node's API that can hold the answers to block batches, so a test can
catch a peer mid-download: some batches landed, the others wait at the gate.

::

    async with BlockGate() as gate:                 # serves on http://127.0.0.1:<port>
        gate.upstream = "http://127.0.0.1:8080"     # the node behind it (may be set after the gate started)
        gate.hold_after(1)                          # the first POST …/blocks passes, later ones wait ...
        gate.open()                                 # ... until opened (a waiting one then goes on)
        gate.passed, gate.held                      # batch requests let through / held so far

Every other request (a manifest's ``GET …/blocks/{cid}``, ``/spr``, the API) is forwarded at once. The node behind
it announces the gate (``--api-announce-url``), so peers fetch through it. Answers are streamed through as they come.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from aiohttp import ClientSession, ClientTimeout, web

from tests.harness.loopback import serve

FORWARDED_HEADERS = ("content-type", "accept", "authorization")


class BlockGate:
    def __init__(self) -> None:
        self.upstream: str | None = None
        self.passes: int | None = None
        """Batch requests that may pass before the gate holds the next ones (``None``: open)."""
        self.passed = 0
        self.held = 0
        self._open = asyncio.Event()
        self._open.set()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold_after(self, passes: int) -> None:
        self.passes, self.passed = passes, 0
        self._open.clear()

    def open(self) -> None:
        self.passes = None
        self._open.set()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "POST" and request.path.endswith("/blocks") and self.passes is not None:
            if self.passed < self.passes:
                self.passed += 1
            else:
                self.held += 1
                await self._open.wait()
        assert self._session is not None
        assert self.upstream is not None, "no upstream behind the gate"
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED_HEADERS}
        async with self._session.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as up:
            answer = web.StreamResponse(status=up.status)
            if "content-type" in up.headers:
                answer.headers["content-type"] = up.headers["content-type"]
            try:
                await answer.prepare(request)
                async for chunk in up.content.iter_chunked(64 * 1024):
                    await answer.write(chunk)
                await answer.write_eof()
            except ConnectionResetError:
                pass  # the peer went away mid-answer (the test killed it): nobody is left to answer
            return answer

    async def __aenter__(self) -> BlockGate:
        self._session = ClientSession(timeout=ClientTimeout(total=120))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
