"""Resuming: the entry state of a sale that held a reservation but had no fill on chain when the node stopped.

Before this state a stop in SlotReserving, Downloading, InitialProving or Filling lost the sale: the start-up
deleted its reservation and the still-open request was never picked up again (nim-codex resumes filled slots
only). ``Sales`` resumes such a sale here, keeping its reservation, when the request is still open and the slot
can still be filled; the sale then takes the normal way to Filled (or to an ending that returns every byte and
token).

A fill of ours that was mined just before the stop is not resumed here: the chain lists the slot in ``mySlots``,
so the sale resumes through Unknown, keeping the same reservation.

Whether our ``reserveSlot`` reached the chain is not recorded: if the contract still lets us reserve, it did not
(or it was never sent), and the sale reserves now; if not, our reservation is most likely on chain and the sale
goes on to download. A slot whose reservations were filled by others meanwhile then fails at ``fillSlot``
(``ReservationRequired``), which ends the sale through Errored with everything returned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SaleError
from codex_node.market.types import SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.slotreserving import SlotReserving

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Resuming(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset(
        {"SlotReserving", "Downloading", "Ignored", "Errored", "Cancelled", "Failed"}
    )

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        # Our fill would have put the slot in mySlots (then the sale resumes through Unknown): another host won.
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            return await self._resume(machine)
        except CodexError as e:
            return Errored(e)

    async def _resume(self, agent: SalesAgent) -> SaleState:
        market = agent.context.market
        data = agent.data
        if data.reservation is None:
            raise SaleError("a resumed sale needs its reservation")
        await agent.load_request()
        state = await market.slot_state(agent.slot_id)
        if state not in (SlotState.FREE, SlotState.REPAIR):
            return Ignored(reprocess=False, reason=f"slot is {state.name.lower()} after the restart")
        agent.log.info("sale resumed with its reservation", reserved_bytes_left=data.reservation.size)
        if await market.can_reserve_slot(data.request_id, data.slot_index):
            return SlotReserving()
        return Downloading()
