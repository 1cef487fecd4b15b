from __future__ import annotations

from typing import ClassVar

from codex_node.purchasing.machine import PurchaseMachine, PurchaseState
from codex_node.sales.ledger import EntryKind


class PurchasePending(PurchaseState):
    """The request is built and its slots stored: post it (the token approval included) and go to submitted."""

    api_name: ClassVar[str] = "pending"

    async def run(self, machine: PurchaseMachine) -> PurchaseState | None:
        from codex_node.purchasing.states.submitted import PurchaseSubmitted

        context = machine.context
        await context.market.request_storage(machine.request)
        paid = machine.request.ask.max_price  # requestStorage transfers the whole price up front
        context.metrics.spent.inc(paid)
        if context.money is not None:
            context.money.record_purchase(EntryKind.PURCHASE_PAYMENT, machine.request_id, paid)
        return PurchaseSubmitted()
