"""Prometheus metrics of purchases: how many are in each state, tokens spent on requests and returned by them.

Spent is each posted request's maximum price (what ``requestStorage`` takes). Returned is the node account's
balance change across a ``withdrawFunds`` transaction: exact on a node that only buys; on a node that also sells
from the same account, a payout mined in the same moment can be counted in it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class PurchaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.by_state = Gauge("codex_purchases", "Purchases this node follows, by state", ["state"], registry=registry)
        self.spent = Counter(
            "codex_purchase_tokens_spent", "Tokens paid into storage requests (their maximum price)", registry=registry
        )
        self.returned = Counter(
            "codex_purchase_tokens_returned", "Tokens withdrawn back from ended storage requests", registry=registry
        )

    def transition(self, from_state: str | None, to_state: str) -> None:
        if from_state is not None:
            self.by_state.labels(state=from_state).dec()
        self.by_state.labels(state=to_state).inc()

    def forget(self, state: str) -> None:
        self.by_state.labels(state=state).dec()
