"""A node's monitor end to end (no marketplace, fake clock): a nearly full quota raises an alert that the route
lists, the metrics count, and ``--alert-webhook`` receives as JSON; freeing the room clears it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from prometheus_client.registry import REGISTRY

from codex_node.api.app import API_PREFIX
from codex_node.config import NodeConfig
from codex_node.node import Node
from codex_node.testing.fakeclock import FakeClock


class Receiver:
    """A one-route HTTP server on 127.0.0.1 that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook/secret-path-token"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await self.bodies.put(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_a_nearly_full_quota_is_alerted_listed_counted_and_posted(tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.start()
    clock = FakeClock()
    config = NodeConfig(
        data_dir=tmp_path / "data", api_port=0, marketplace=False, storage_quota=128_000, alert_webhook=url
    )
    try:
        async with Node(config, clock=clock) as node:
            assert "alert webhook" in node.parts
            assert node.api_url is not None
            async with httpx.AsyncClient(base_url=node.api_url + API_PREFIX) as api:
                cid = (await api.post("/data", content=b"x" * 124_000)).text
                clock.advance(30)  # the monitor's next check
                posted = await asyncio.wait_for(receiver.bodies.get(), 10)
                assert posted["alert"] == "quota_nearly_full"
                assert posted["active"] is True
                assert posted["node"] == node.node_id
                alerts = (await api.get("/alerts")).json()
                assert [a["key"] for a in alerts["active"]] == ["quota_nearly_full"]
                assert REGISTRY.get_sample_value("codex_alerts_raised_total", {"alert": "quota_nearly_full"}) == 1

                assert (await api.delete(f"/data/{cid}")).status_code == 204
                clock.advance(30)
                cleared = await asyncio.wait_for(receiver.bodies.get(), 10)
                assert (cleared["alert"], cleared["active"]) == ("quota_nearly_full", False)
                assert (await api.get("/alerts")).json()["active"] == []
                samples = (await api.get("/space/history")).json()
                assert len(samples) == 3  # at start, and at each of the two checks
    finally:
        await receiver.stop()
