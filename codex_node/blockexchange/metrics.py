"""Prometheus metrics of the block exchange: what was fetched, what was served, and the peers that misbehaved.

Pass the node's registry (``Node.registry``); ``None`` registers nowhere (unit tests build many fetchers).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class FetchMetrics:
    """Blocks and bytes fetched from peers, and peer failures by reason (``corrupt``, ``stalled``, ``error``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.blocks = Counter(
            "codex_blockexchange_blocks_fetched", "Verified blocks fetched from peers", registry=registry
        )
        self.bytes = Counter(
            "codex_blockexchange_bytes_fetched", "Verified bytes fetched from peers", registry=registry
        )
        self.bad_peers = Counter(
            "codex_blockexchange_peer_failures",
            "Peer answers abandoned: wrong bytes (corrupt), no progress (stalled), or an error or malformed answer",
            ["reason"],
            registry=registry,
        )
