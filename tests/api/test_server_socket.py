"""The API's listening socket: its connections get TCP_NODELAY (kept-alive requests are not held ~40 ms)."""

from __future__ import annotations

import asyncio
import socket

from fastapi import FastAPI

from codex_node.api.server import HttpServer


async def test_accepted_connections_have_tcp_nodelay() -> None:
    server = HttpServer(FastAPI(), "127.0.0.1", 0, flag="--api-port", name="test")
    server.bind()
    assert server._sock is not None
    # asyncio turns TCP_NODELAY on for accepted sockets only when the listening socket says IPPROTO_TCP.
    assert server._sock.proto == socket.IPPROTO_TCP
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def on_connection(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    listener = await asyncio.start_server(on_connection, sock=server._sock)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server._bound_port)
        assert await asyncio.wait_for(accepted, 10) == 1
        writer.close()
    finally:
        listener.close()
        await listener.wait_closed()
