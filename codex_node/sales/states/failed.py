"""Failed: the request failed (too many slots lost). The contract keeps the hosts' collateral.

If this host filled the slot, ``freeSlot`` only removes it from ``mySlots``; collateral that never went on chain
still returns to the availability (nim-codex returned none, MARKETPLACE.md §5 #4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.sales.states.base import SaleState, free_slot_if_hosted

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Failed(SaleState):
    terminal: ClassVar[bool] = True
    transitions: ClassVar[frozenset[str]] = frozenset()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        await free_slot_if_hosted(machine)
        returned = await machine.end_sale()
        machine.log.warning("sale failed", returned_collateral=returned)
        return None
