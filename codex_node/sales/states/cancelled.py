"""Cancelled: the request expired before it started (or the client withdrew).

If this host filled the slot, it collects the payout for the time stored and its collateral (``freeSlot``);
either way the sale ends here. Failing to collect is logged, not escalated: the slot stays in ``mySlots`` and a
restart resumes it through Unknown, which lands here again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Cancelled(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        returned = await collect_from_contract(machine)
        machine.log.info("sale cancelled", returned_collateral=returned)
        await machine.end_sale(returned)
        return None


async def collect_from_contract(agent: SalesAgent) -> int:
    """Free the slot if we host it and return the collateral now back in our hands (see module docstring)."""
    market = agent.context.market
    try:
        if not await agent.hosts_slot():
            return agent.unposted_collateral()
        agent.data.collateral_posted = True
        collateral = await market.current_collateral(agent.slot_id)
        await market.free_slot(agent.slot_id)
    except CodexError as e:
        agent.log.warning("could not collect the slot's payout", error=repr(e))
        return agent.unposted_collateral()
    return collateral
