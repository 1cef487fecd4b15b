"""Prometheus metrics of the sales agents, fed by the agents' transition listener.

Queue length and busy workers are exported by the slot queue itself; bytes and collateral per availability are
read from the reservations book at scrape time (:class:`ReservationsCollector`), so they can never drift from it.
Pass a fresh ``CollectorRegistry`` per ``Sales`` in tests; the node passes the process-wide default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from codex_node.utils.asyncstatemachine import Machine, State

OUTCOMES = {
    "Finished": "finished",
    "Cancelled": "cancelled",
    "Failed": "failed",
    "Errored": "errored",
    "Ignored": "ignored",
}
"""Ending state → the ``outcome`` label of ``codex_sales_ended_total``."""


class SalesMetrics:
    """Agents by state, transitions by (from, to), sales ended by outcome, and availability-mismatch races."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.agents = Gauge("codex_sales_agents", "Live sales agents by state", ["state"], registry=registry)
        self.transitions = Counter(
            "codex_sales_transitions", "Sales agent transitions", ["from_state", "to_state"], registry=registry
        )
        self.ended = Counter("codex_sales_ended", "Sales that ended, by outcome", ["outcome"], registry=registry)
        self.availability_mismatch = Counter(
            "codex_reservations_availability_mismatch",
            "Reservations refused because the availability changed after it was chosen",
            registry=registry,
        )

    def on_transition(
        self, _machine: Machine[Any], from_state: State[Any] | None, to_state: State[Any], _cause: str
    ) -> None:
        """A :class:`~codex_node.utils.asyncstatemachine.TransitionListener`."""
        source = from_state.name if from_state is not None else "none"
        if from_state is not None:
            self.agents.labels(source).dec()
        self.agents.labels(to_state.name).inc()
        self.transitions.labels(source, to_state.name).inc()
        outcome = OUTCOMES.get(to_state.name)
        if outcome is not None:
            self.ended.labels(outcome).inc()

    def agent_removed(self, state: State[Any] | None) -> None:
        if state is not None:
            self.agents.labels(state.name).dec()


class ReservationsCollector(Collector):
    """Bytes and collateral held per availability, read when Prometheus scrapes."""

    def __init__(self, snapshot: Callable[[], Iterable[tuple[str, int, int, int, int]]]) -> None:
        """``snapshot`` yields ``(availability id hex, total size, free size, total collateral, remaining)``."""
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reserved = GaugeMetricFamily(
            "codex_availability_bytes_committed",
            "Bytes of an availability that are reserved or hold slot data (totalSize - freeSize)",
            labels=["availability"],
        )
        collateral = GaugeMetricFamily(
            "codex_availability_collateral_committed",
            "Collateral of an availability committed to sales (totalCollateral - totalRemainingCollateral)",
            labels=["availability"],
        )
        for ident, total, free, total_collateral, remaining in self._snapshot():
            reserved.add_metric([ident], total - free)
            collateral.add_metric([ident], total_collateral - remaining)
        yield reserved
        yield collateral
