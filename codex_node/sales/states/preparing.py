"""Preparing: the first state of a new sale. Checks the slot is still open and reserves bytes and collateral.

The reservation is taken from the best-fitting availability in one atomic write; a cancellation arriving while
it is written waits for the write, so the reservation is always known to the agent that must give it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import (
    BytesOutOfBoundsError,
    CodexError,
    CollateralOutOfBoundsError,
    UntilOutOfBoundsError,
)
from codex_node.market.types import SlotState
from codex_node.sales.matching import why_not
from codex_node.sales.states.base import SaleState, complete_despite_cancel
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored, chain_unreachable
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import AVAILABILITY_MISMATCH, Ignored
from codex_node.sales.states.slotreserving import SlotReserving
from codex_node.sales.wallet import short_of_collateral, wallet_balance

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent
    from codex_node.sales.availability import Reservation


class Preparing(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"SlotReserving", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        # We have not filled anything yet, so another host took the slot.
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            return await self._prepare(machine)
        except CodexError as e:
            return Errored(e, retry=chain_unreachable(e))

    async def _prepare(self, agent: SalesAgent) -> SaleState:
        market = agent.context.market
        data = agent.data
        request = await agent.load_request()

        slot_state = await market.slot_state(agent.slot_id)
        if slot_state not in (SlotState.FREE, SlotState.REPAIR):
            return Ignored(reprocess=False, reason=f"slot is {slot_state.name.lower()}")

        ask = request.ask
        request_end = await market.request_end(data.request_id)
        reservations = agent.context.reservations
        availability = await reservations.find_availability(
            ask.slot_size, ask.duration, ask.price_per_byte_per_second, ask.collateral_per_byte, request_end
        )
        if availability is None:
            verdicts = await reservations.explain_match(
                ask.slot_size, ask.duration, ask.price_per_byte_per_second, ask.collateral_per_byte, request_end
            )
            return Ignored(reprocess=True, reason=why_not(verdicts))
        # Before anything is reserved: a fill the wallet cannot pay would fail only after the download and proof.
        collateral = await market.slot_collateral(data.request_id, data.slot_index)
        balance = await wallet_balance(market)
        if balance < collateral:
            return Ignored(reprocess=True, reason=short_of_collateral(balance, collateral))

        def keep(reservation: Reservation) -> None:
            data.reservation = reservation

        try:
            await complete_despite_cancel(
                reservations.create_reservation(
                    availability.id,
                    ask.slot_size,
                    data.request_id,
                    data.slot_index,
                    ask.collateral_per_byte,
                    request_end,
                ),
                keep,
            )
        except (BytesOutOfBoundsError, CollateralOutOfBoundsError, UntilOutOfBoundsError):
            # The availability changed between find and create (another agent took its bytes or collateral, or
            # a PATCH); another availability may fit later.
            return Ignored(reprocess=True, reason=AVAILABILITY_MISMATCH)
        agent.log.info("reservation created", availability_id=availability.id.hex())
        return SlotReserving()
