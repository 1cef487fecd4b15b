"""A small fake network for the peers tests: keys, records and a fake wire."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from codex_node.peers.identity import NodeKey
from codex_node.peers.metrics import PeerMetrics
from codex_node.peers.record import PeerRecord, make_record
from codex_node.testing.fakepeerwire import FakePeer, FakePeerWire


def key(n: int) -> NodeKey:
    return NodeKey.from_seed(bytes([n]) * 32)


def record(n: int, seq: int = 1) -> PeerRecord:
    return make_record(key(n), (f"http://127.0.0.{n}:8080/api/codex/v1",), seq)


def peer(wire: FakePeerWire, n: int, **more: object) -> FakePeer:
    return wire.add(FakePeer(record(n), **more))  # type: ignore[arg-type]


def metrics() -> PeerMetrics:
    return PeerMetrics(CollectorRegistry())


async def settle(done: Callable[[], bool], steps: int = 10_000) -> None:
    """Let the event loop run (no wall-clock wait) until ``done()``; fail after ``steps`` turns."""
    for _ in range(steps):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never came true")
