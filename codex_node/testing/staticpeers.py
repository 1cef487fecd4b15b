"""A fixed list of peers standing in for the network's :class:`~codex_node.peers.port.Providers` (unit tests)."""

from __future__ import annotations

from codex_node.data.cid import Cid
from codex_node.peers.port import PeerInfo


class StaticProviders:
    """Every peer of a fixed list may hold everything; misbehaving peers are avoided from then on."""

    def __init__(self, peers: list[PeerInfo]) -> None:
        self.peers = list(peers)
        self.avoided: dict[str, str] = {}
        self.served_bytes: dict[str, int] = {}

    async def find(self, cid: Cid, *, limit: int) -> list[PeerInfo]:
        return [p for p in self.peers if p.peer_id not in self.avoided][:limit]

    def served(self, peer: PeerInfo, cid: Cid, nbytes: int) -> None:
        self.served_bytes[peer.peer_id] = self.served_bytes.get(peer.peer_id, 0) + nbytes

    def misbehaved(self, peer: PeerInfo, reason: str) -> None:
        self.avoided[peer.peer_id] = reason
