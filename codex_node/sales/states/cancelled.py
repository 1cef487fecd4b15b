"""Cancelled: the request expired before it started (or the client withdrew).

If this host filled the slot, it collects the payout for the time stored and its collateral (``freeSlot``);
either way the sale ends here. Failing to collect is logged, not escalated: the slot stays in ``mySlots`` and a
restart resumes it through Unknown, which lands here again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState, free_slot_if_hosted

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Cancelled(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        await free_slot_if_hosted(machine)
        returned = await machine.end_sale()
        machine.log.info("sale cancelled", returned_collateral=returned)
        return None
