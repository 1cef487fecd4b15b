"""Downloading: secure every block of the slot in the repo, releasing reserved bytes as blocks land.

Blocks get the request's expiry (or its end, once the request has started) so they outlive the download even
if the sale then stalls; Filled raises it to the contract end and the sale's end lowers it again. How far the
download got is recorded on the slot's history entry for this state (``SaleHistory.progress``, throttled there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SaleError
from codex_node.market.types import RequestState, SlotState
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored
from codex_node.sales.states.initialproving import InitialProving

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class Downloading(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"InitialProving", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        try:
            await self._download(machine)
        except CodexError as e:
            return Errored(e)
        return InitialProving()

    async def _download(self, agent: SalesAgent) -> None:
        market = agent.context.market
        data = agent.data
        reservation = data.reservation
        if reservation is None:
            raise SaleError("no reservation to download into")
        request_id = data.request_id
        is_repairing = await market.slot_state(agent.slot_id) == SlotState.REPAIR
        if await market.request_state(request_id) == RequestState.STARTED:
            expiry = await market.request_end(request_id)
        else:
            expiry = await market.request_expires_at(request_id)
        release = agent.context.reservations.release
        # A resumed sale's reservation holds only what was not secured before the stop, while a data source may
        # report the whole slot again: release at most what the reservation still holds.
        remaining = reservation.size
        total = agent.request.ask.slot_size
        secured = 0

        async def on_blocks(nbytes: int) -> None:
            nonlocal remaining, secured
            take = min(nbytes, remaining)
            if take > 0:
                remaining -= take
                await release(reservation.id, reservation.availability_id, take)
            secured += nbytes
            agent.record_download(min(secured, total), total)  # the slot's history shows how far it got

        # From here on some blocks may carry this sale's expiry, which the sale's end must lower again.
        data.stored = True
        await agent.context.data_source.fetch(
            agent.request, data.slot_index, expiry, on_blocks, is_repairing=is_repairing
        )
        agent.log.info("slot data stored", expiry=expiry, repairing=is_repairing)
