from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.purchasing.states.unknown import state_on_chain


class PurchaseSubmitted(PurchaseState):
    """Posted: wait for every slot to be filled (started) or for the expiry (cancelled)."""

    api_name: ClassVar[str] = "submitted"

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        market = machine.context.market
        expires_at = await market.request_expires_at(machine.request_id)
        while True:
            state = await state_on_chain(machine)
            if not isinstance(state, PurchaseSubmitted):
                return state
            await machine.wait(expires_at + 1)
