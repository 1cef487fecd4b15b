from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.purchasing.states.withdrawing import withdraw


class PurchaseFinished(PurchaseState):
    """The request ran to its end: withdraw what is left (slots filled late were charged less)."""

    api_name: ClassVar[str] = "finished"
    terminal = True

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        await withdraw(machine)
        return None
