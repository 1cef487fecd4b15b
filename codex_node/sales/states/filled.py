"""Filled: the slot is ours. Release the slot-queue worker and keep the data until the contract ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SaleError
from codex_node.market.types import SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored, fill_left_the_chain
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.proving import Proving
from codex_node.sales.states.provingsimulated import ProvingSimulated

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Filled(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Proving", "ProvingSimulated", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    async def run(self, machine: SalesAgent) -> SaleState | None:
        data = machine.data
        try:
            if await machine.context.market.slot_state(machine.slot_id) == SlotState.FREE:
                return fill_left_the_chain(machine)
            if not await machine.hosts_slot():
                raise SaleError("the slot is filled by another host")
            data.stored = True
            # The worker is needed for new slots, not for the months of proving ahead.
            machine.worker_released()
            contract_end = await machine.context.market.request_end(data.request_id)
            await machine.context.data_source.raise_expiry(machine.request, data.slot_index, contract_end)
        except CodexError as e:
            return Errored(e)
        every = machine.context.simulate_proof_failures
        return ProvingSimulated(every) if every > 0 else Proving()
