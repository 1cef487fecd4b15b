"""The ending states' shared work: withdraw what the request has left for its client, once."""

from __future__ import annotations

import structlog

from codex_node.errors import ContractRevertError
from codex_node.purchasing.machine import PurchaseMachine
from codex_node.sales.ledger import EntryKind

log = structlog.get_logger(__name__)


async def withdraw(machine: PurchaseMachine) -> None:
    if machine.record.withdrawn:
        return
    context = machine.context
    try:
        returned = await context.market.withdraw_funds(machine.request_id)
    except ContractRevertError as e:
        if e.error_name != "NothingToWithdraw":
            raise
        log.info("purchase had nothing left to withdraw", request_id=machine.request_id.hex())
        machine.mark_withdrawn()
        return
    context.metrics.returned.inc(returned)
    if context.money is not None:
        context.money.record_purchase(EntryKind.PURCHASE_REFUND, machine.request_id, returned)
    machine.mark_withdrawn()
    log.info("purchase funds withdrawn", request_id=machine.request_id.hex(), tokens=returned)
