"""What the block exchange and the repair see of the network: the ``Providers`` port and ``PeerInfo``.

``peers/`` implements :class:`Providers` (bootstrap, peer exchange, "who has CID X" asked with bounded fan-out,
remembering who had what, avoiding peers that misbehaved); ``blockexchange/`` only ever goes through it, so its
tests run against a fixed list of peers (``codex_node/testing/staticpeers.py``).

A peer is reached at its API base URLs (``http://host:port/api/codex/v1``); everything a peer answers is hostile
input until verified (blocks by CID, manifests by CID, records by signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from codex_node.data.cid import Cid


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A peer as the block exchange needs it: who (its peer id) and where (its API base URLs, best first)."""

    peer_id: str
    urls: tuple[str, ...]

    @property
    def url(self) -> str:
        """The URL to try first."""
        return self.urls[0]


class Providers(Protocol):
    """Which peers may hold some content, and how each peer behaved when asked for it."""

    async def find(self, cid: Cid, *, limit: int) -> list[PeerInfo]:
        """Up to ``limit`` peers believed to hold ``cid`` (a block, or a manifest whose dataset they hold), best
        first: those remembered to have served it, then those that answered "have" when asked (with a bounded
        fan-out over the known peers). Never the node itself, never a peer currently avoided. May be empty."""
        ...

    def served(self, peer: PeerInfo, cid: Cid, nbytes: int) -> None:
        """``peer`` served ``nbytes`` of verified bytes for ``cid``: remember it holds ``cid``, credit it."""
        ...

    def misbehaved(self, peer: PeerInfo, reason: str) -> None:
        """``peer`` served wrong bytes, no bytes, or an error: count it, log it, avoid it for a while."""
        ...
