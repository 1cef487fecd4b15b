"""Prometheus metrics of the peers part: peers known and avoided, "have" questions asked, misbehaviour."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge

_REASON = re.compile(r"^[a-z][a-z0-9_ -]{0,39}$")


def reason_label(reason: str) -> str:
    """A bounded label value: reasons are the block exchange's words, but a label must never grow without end."""
    return reason if _REASON.match(reason) else "other"


class PeerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.known = Gauge("codex_peers_known", "Peers in this node's table", registry=registry)
        self.avoided = Gauge("codex_peers_avoided", "Known peers avoided now for misbehaving", registry=registry)
        self.have_queries = Counter(
            "codex_peer_have_queries",
            "'Do you have CID X' questions asked of peers, by outcome (have, none, failed, bad_answer)",
            ["outcome"],
            registry=registry,
        )
        self.misbehaviour = Counter(
            "codex_peer_misbehaviour", "Peers caught misbehaving, by reason", ["reason"], registry=registry
        )
        self.exchanges = Counter(
            "codex_peer_exchanges",
            "Peer-exchange rounds with one peer, by outcome (ok, failed)",
            ["outcome"],
            registry=registry,
        )
