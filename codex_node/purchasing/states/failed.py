from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.purchasing.states.withdrawing import withdraw


class PurchaseFailed(PurchaseState):
    """Too many slots were lost: withdraw what the contract returns."""

    api_name: ClassVar[str] = "failed"
    terminal = True

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        await withdraw(machine)
        return None
