"""SlotReserving: ask the contract for one of the slot's few reservation places (``reserveSlot``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from codex_node.errors import CodexError, SlotReservationNotAllowedError
from codex_node.sales.states.base import SaleState
from codex_node.sales.states.cancelled import Cancelled
from codex_node.sales.states.downloading import Downloading
from codex_node.sales.states.errored import Errored
from codex_node.sales.states.failed import Failed
from codex_node.sales.states.ignored import Ignored

if TYPE_CHECKING:
    from codex_node.sales.agent import SalesAgent


class SlotReserving(SaleState):
    transitions: ClassVar[frozenset[str]] = frozenset({"Downloading", "Ignored", "Errored", "Cancelled", "Failed"})

    def on_cancelled(self) -> SaleState | None:
        return Cancelled()

    def on_failed(self) -> SaleState | None:
        return Failed()

    def on_slot_filled(self) -> SaleState | None:
        return Ignored(reprocess=False, reason="slot filled by another host")

    async def run(self, machine: SalesAgent) -> SaleState | None:
        market = machine.context.market
        request_id, index = machine.data.request_id, machine.data.slot_index
        try:
            if not await market.can_reserve_slot(request_id, index):
                return Ignored(reprocess=False, reason="slot reservation not allowed")
            await market.reserve_slot(request_id, index)
        except SlotReservationNotAllowedError:
            return Ignored(reprocess=False, reason="slot reservation not allowed")
        except CodexError as e:
            return Errored(e)
        return Downloading()
