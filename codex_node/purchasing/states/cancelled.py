from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.purchasing.states.withdrawing import withdraw


class PurchaseCancelled(PurchaseState):
    """Not every slot was filled before the expiry: withdraw the whole price back."""

    api_name: ClassVar[str] = "cancelled"
    terminal = True

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        await withdraw(machine)
        return None
