"""Ignored: this host does not take the slot (no matching availability, slot taken, reservation refused).

The reservation's bytes and collateral go back; the slot-queue item is pushed again (marked seen) only when
another availability might fit it later (``reprocess``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Ignored(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, *, reprocess: bool, reason: str) -> None:
        self.reprocess = reprocess
        self.reason = reason

    async def run(self, machine: SalesAgent) -> SaleState | None:
        machine.log.info("slot ignored", reason=self.reason, reprocess=self.reprocess)
        await machine.end_sale(reprocess=self.reprocess)
        return None


AVAILABILITY_MISMATCH = "availability changed before the reservation was made"
"""The reason used when ``create_reservation`` lost a race; counted by a metric of its own."""
