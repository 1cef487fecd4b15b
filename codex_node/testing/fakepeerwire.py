"""An in-memory network of peers standing in for :class:`~codex_node.peers.wire.PeerWire` (unit tests).

Each URL maps to a :class:`FakePeer`: its record, the records it shares, the CIDs it holds, and how it behaves
(``down``: unreachable; ``bad``: answers what the protocol forbids). The wire counts the questions it was asked
and the most it had in flight at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from codex_node.data.cid import Cid
from codex_node.errors import PeerAnswerError, PeerError
from codex_node.peers.record import PeerRecord


@dataclass
class FakePeer:
    record: PeerRecord
    shares: list[str] = field(default_factory=list)
    holds: set[str] = field(default_factory=set)
    down: bool = False
    bad: bool = False
    introduced: list[str] = field(default_factory=list)


class FakePeerWire:
    def __init__(self) -> None:
        self.peers: dict[str, FakePeer] = {}
        self.asked: list[tuple[str, str]] = []  # (question, url)
        self.in_flight = 0
        self.max_in_flight = 0
        self.gate: asyncio.Event | None = None  # when set, "have" answers wait for it

    def add(self, peer: FakePeer) -> FakePeer:
        for url in peer.record.urls:
            self.peers[url] = peer
        return peer

    def _peer(self, question: str, url: str) -> FakePeer:
        self.asked.append((question, url))
        peer = self.peers.get(url)
        if peer is None or peer.down:
            raise PeerError(f"{url} could not be reached: ConnectError")
        if peer.bad:
            raise PeerAnswerError(f"{url} answered garbage")
        return peer

    async def record(self, url: str) -> PeerRecord:
        return self._peer("record", url).record

    async def exchange(self, url: str, own: str | None) -> list[str]:
        peer = self._peer("exchange", url)
        if own is not None:
            peer.introduced.append(own)
        return list(peer.shares)

    async def have(self, url: str, cids: Sequence[Cid]) -> set[str]:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)  # let the other questions start: the fan-out is what is measured
            peer = self._peer("have", url)
            return {c.text for c in cids} & peer.holds
        finally:
            self.in_flight -= 1

    def count(self, question: str) -> int:
        return sum(1 for q, _ in self.asked if q == question)
