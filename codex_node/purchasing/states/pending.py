from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState


class PurchasePending(PurchaseState):
    """The request is built and its slots stored: post it (the token approval included) and go to submitted."""

    api_name: ClassVar[str] = "pending"

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        from codex_node.purchasing.states.submitted import PurchaseSubmitted

        context = machine.context
        await context.market.request_storage(machine.request)
        context.metrics.spent.inc(machine.request.ask.max_price)
        return PurchaseSubmitted()
