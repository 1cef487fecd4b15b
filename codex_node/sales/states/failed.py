"""Failed: the request failed (too many slots lost). The contract keeps the hosts' collateral.

If this host filled the slot, ``freeSlot`` only removes it from ``mySlots``; collateral that never went on chain
still returns to the availability (nim-codex returned none, MARKETPLACE.md §5 #4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError
from codex_node.sales.states.base import SaleState

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Failed(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            if await machine.hosts_slot():
                machine.data.collateral_posted = True
                await machine.context.market.free_slot(machine.slot_id)
        except CodexError as e:
            # Not fatal: the slot lingers in mySlots and a restart lands here again.
            machine.log.warning("could not free the failed slot", error=repr(e))
        returned = machine.unposted_collateral()
        machine.log.warning("sale failed", returned_collateral=returned)
        await machine.end_sale(returned)
        return None
