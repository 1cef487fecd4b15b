from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.purchasing.states.unknown import state_on_chain


class PurchaseStarted(PurchaseState):
    """Every slot filled: wait for the request's end (finished) or its failure (failed)."""

    api_name: ClassVar[str] = "started"

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        market = machine.context.market
        end = await market.request_end(machine.request_id)
        while True:
            state = await state_on_chain(machine)
            if not isinstance(state, PurchaseStarted):
                return state
            await machine.wait(end + 1)
