"""Payout: the contract has ended; collect payment and collateral (``freeSlot``).

The payment and the collateral stay in the contract until the host frees its slot, and only the host can, so a
failed ``freeSlot`` is retried (:data:`RETRY_DELAYS`, on the sale's clock) rather than given up at once: giving
up leaves the money in the contract for good. Before each retry the slot's state is read again: ``Paid`` means
an earlier call was mined although its answer was lost (the money came; what it was is not known here, so the
ledger misses it and the log says so); a state that can no longer be paid out ends the sale ``Errored``. A
revert is not retried: the contract said no, and a second call would be refused the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, ContractRevertError, MarketError
from codex_node.market.types import SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.finished import Finished

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent

RETRY_DELAYS = (15, 60, 300, 900, 3600)
"""Seconds to wait before each new ``freeSlot`` after a failed one: about 1.4 hours in all."""


class Payout(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Finished", "Errored"})

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market, clock = machine.context.market, machine.context.clock
        for attempt, delay in enumerate((0, *RETRY_DELAYS)):
            if delay:
                await clock.wait_until(clock.now() + delay)
                try:
                    state = await market.slot_state(machine.slot_id)
                except CodexError as e:
                    machine.log.warning("payout: cannot read the slot's state", error=str(e), attempt=attempt)
                    continue
                if state == SlotState.PAID:
                    machine.log.warning("payout: an earlier freeSlot was mined; its amounts are not in the ledger")
                    return Finished()
                if state not in (SlotState.FILLED, SlotState.FINISHED, SlotState.CANCELLED):
                    return Errored(MarketError(f"the slot is {state.name} and can no longer be paid out"))
            try:
                payment = await market.free_slot(machine.slot_id)
            except ContractRevertError as e:
                return Errored(e)
            except CodexError as e:
                machine.log.warning("payout failed, will retry", error=str(e), attempt=attempt + 1)
                last: CodexError = e
                continue
            machine.record_payment(payment)
            machine.log.info("slot paid", payout=payment.payout, collateral=payment.collateral)
            return Finished()
        return Errored(last)
