"""How close each proof landed to the end of its period: the early warning of a slash.

A proof is due within its period; one that lands with a few seconds to spare is one slow block away from a
missed proof and a slashed collateral. :func:`record_proof_margin` is called once per proof that reached the chain
(``sales/states/proving.py``) and feeds :class:`ProofMargins`: the histogram ``codex_sales_proof_margin_seconds``
and a bounded list of the latest margins, which the alerts (``monitor/alerts.py``) and the dashboard read.

This module never waits and never talks to the chain beyond the (cached) period length.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent

MARGIN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
KEEP = 512
"""Latest margins kept in memory (the dashboard's chart)."""


@dataclass(frozen=True, slots=True)
class ProofMargin:
    """One proof: when it landed, for which slot and period, and the seconds left of its period."""

    at: int
    slot_id: str
    period: int
    margin: int
    period_seconds: int

    @property
    def fraction(self) -> float:
        """The margin as a fraction of the period (1.0: landed as the period began; 0: at its very end)."""
        return self.margin / self.period_seconds if self.period_seconds > 0 else 0.0


class ProofMargins:
    """The histogram and the latest :data:`KEEP` margins."""

    def __init__(self, registry: CollectorRegistry, keep: int = KEEP) -> None:
        self.histogram = Histogram(
            "codex_sales_proof_margin_seconds",
            "Seconds left of its period when a proof landed on chain (small: close to a missed proof)",
            buckets=MARGIN_BUCKETS,
            registry=registry,
        )
        self._latest: deque[ProofMargin] = deque(maxlen=keep)

    def observe(self, margin: ProofMargin) -> None:
        self.histogram.observe(max(0, margin.margin))
        self._latest.append(margin)

    def latest(self) -> list[ProofMargin]:
        """Oldest first."""
        return list(self._latest)


def proof_margin(*, now: int, period: int, period_seconds: int) -> int:
    """Seconds from ``now`` to the end of ``period`` (negative: the period was over when the proof landed)."""
    return (period + 1) * period_seconds - now


async def record_proof_margin(agent: SalesAgent, period: int) -> None:
    """Measure the proof of ``period`` that just landed for ``agent``'s slot (no-op without a recorder)."""
    margins = agent.context.proof_margins
    if margins is None:
        return
    seconds = (await agent.context.market.periodicity()).seconds
    now = agent.context.clock.now()
    margin = proof_margin(now=now, period=period, period_seconds=seconds)
    margins.observe(
        ProofMargin(at=now, slot_id=agent.slot_id.hex(), period=period, margin=margin, period_seconds=seconds)
    )
    agent.log.debug("proof margin", period=period, margin_seconds=margin)
