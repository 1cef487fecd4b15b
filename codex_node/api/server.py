"""An HTTP server part: serves one ASGI app on uvicorn inside the node's event loop, started and stopped by the node.

The socket is bound here, before uvicorn runs (the node binds it before starting any other part), so a port that
is taken is a :class:`ConfigError` naming the flag at once (uvicorn would log and ``sys.exit``), and port 0
resolves to the port actually bound. Signals are the node's
business: uvicorn's own handlers are switched off, otherwise it would re-raise SIGTERM after its shutdown and
kill the process before the other parts stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Generator

import structlog
import uvicorn
from starlette.types import ASGIApp

from codex_node.api import cutshort
from codex_node.errors import ConfigError

log = structlog.get_logger(__name__)


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the node installs its own handlers and asks the server to stop

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


class HttpServer:
    """Serve ``app`` on ``host:port``; ``flag`` names the port flag in errors. Implements the node's ``Part``."""

    def __init__(self, app: ASGIApp, host: str, port: int, *, flag: str, name: str, graceful_timeout: int = 5) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.flag = flag
        self.name = name
        self.graceful_timeout = graceful_timeout
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port: int | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` with the port actually bound (after :meth:`start`)."""
        host = f"[{self.host}]" if ipaddress.ip_address(self.host).version == 6 else self.host
        return f"http://{host}:{self._bound_port if self._bound_port is not None else self.port}"

    def bind(self) -> None:
        """Take the address now (a taken port fails here); serving starts with :meth:`start`. Idempotent."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ipaddress.ip_address(self.host).version == 6 else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections whose socket says TCP, and without
        # it a kept-alive connection waits ~40 ms per response (Nagle holds the body behind the headers until the
        # client's delayed ACK): every request of a browser's dashboard paid that.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise ConfigError(self.flag, f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        sock.setblocking(False)
        self._bound_port = int(sock.getsockname()[1])
        self._sock = sock

    def release(self) -> None:
        """Give the address back if it was bound but never served (serving closes it on :meth:`stop`)."""
        if self._sock is not None and self._server is None:
            self._sock.close()
            self._sock = None

    async def start(self) -> None:
        cutshort.install()  # an answer ended early on purpose is not logged as a crash
        self.bind()
        sock = self._sock
        assert sock is not None
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,  # requests are logged (debug) and counted by the metrics middleware
            lifespan="off",  # the node starts and stops the parts, not the app
            timeout_graceful_shutdown=self.graceful_timeout,
            server_header=False,
        )
        server = _Uvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http:{self.name}")
        ready = asyncio.create_task(server.ready.wait())
        try:
            await asyncio.wait((task, ready), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])
            self.release()
            raise
        finally:
            ready.cancel()
        if task.done():
            self.release()
            task.result()  # raises what stopped it
            raise RuntimeError(f"{self.name} stopped while starting")
        self._server, self._task = server, task
        log.debug("http server listening", server=self.name, url=self.url)

    async def stop(self) -> None:
        """Stop accepting connections, let running requests finish (up to ``graceful_timeout``), close."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        await self._task  # uvicorn's shutdown closes the socket
        self._server = self._task = None
        self._sock = None
